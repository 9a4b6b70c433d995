"""The deadline freeze: what is scored is what existed when the agent phase ended.

At the end of the agent phase (the deadline, or the agent's exit) the run's cgroup is frozen
(``cgroup.freeze``; a write in progress completes first), every candidate checkpoint (the
regular files under ``workspace/checkpoints``) and the run's Python sources are copied with
their hashes into ``RUN_DIR/frozen/`` (root-only, outside anything the agent can reach), and
only then is the tree thawed, with SIGTERM already pending (``thaw_after=False`` leaves the
thaw to the caller, who signals first: no instruction runs between the copy and the signal).
Scoring and rescoring read these copies only; a later change to a candidate through any
path (a hard link elsewhere, a mapping, a rename over it) shows as a frozen hash that
differs from the end state, cited under R6.
``frozen/frozen.json`` is sealed with the run, so a rescore can prove the copies intact.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from onegc.evidence.errors import OnegcError
from onegc.evidence.layout import CHECKPOINTS, FROZEN_SOURCES, RunLayout
from onegc.evidence.seal import sha256_file

FROZEN_MANIFEST = "frozen.json"  # not manifest.json: that name marks a sealed run dir
FROZEN_FORMAT = "onegc-frozen-1"
SOURCES = FROZEN_SOURCES


class FrozenMismatch(OnegcError):
    """The frozen copies of a run are missing or no longer match their sealed hashes."""


def _wait_frozen(cgroup: Path, timeout_s: float) -> bool:
    """Poll ``cgroup.events`` (POLLPRI on change) until it reads ``frozen 1``."""
    events = cgroup / "cgroup.events"
    end = time.monotonic() + timeout_s
    with open(events, "rb", buffering=0) as fh:
        poller = select.poll()
        poller.register(fh, select.POLLPRI | select.POLLERR)
        while True:
            fh.seek(0)
            if b"frozen 1" in fh.read():
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            poller.poll(min(left, 0.05) * 1000)


def _set_frozen(cgroup: Path, on: bool) -> None:
    (cgroup / "cgroup.freeze").write_text("1" if on else "0")


def _copy_regular(src: Path, dst: Path) -> dict[str, Any] | None:
    """Copy a regular file without following links; its hash is the copy's. None: not a
    regular file (a symlink, a fifo, gone)."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        dst.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.dup(fd), "rb") as inp, open(dst, "wb") as out:
            shutil.copyfileobj(inp, out, 1 << 20)
        return {"sha256": sha256_file(dst), "size": dst.stat().st_size, "nlink": st.st_nlink, "inode": st.st_ino}
    finally:
        os.close(fd)


def _walk(root: Path, keep: Any) -> list[Path]:
    """Regular-looking entries under ``root`` (relative), not following symlinked dirs,
    skipping hidden names; ``keep(rel)`` filters files."""
    out: list[Path] = []
    if not root.is_dir() or root.is_symlink():
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            rel = Path(dirpath, name).relative_to(root)
            if not name.startswith(".") and keep(rel):
                out.append(rel)
    return out


def source_files(workspace: Path) -> list[Path]:
    """The run's sources as the evaluator stages them: top-level ``*.py`` and the ``*.py`` of
    top-level packages (folders with ``__init__.py``)."""
    files = [Path(p.name) for p in sorted(workspace.glob("*.py")) if p.is_file() and not p.is_symlink()]
    for pkg in sorted(workspace.iterdir()) if workspace.is_dir() else []:
        if pkg.is_dir() and not pkg.is_symlink() and (pkg / "__init__.py").is_file():
            files += [pkg.name / rel for rel in _walk(pkg, lambda r: r.suffix == ".py")]
    return files


def thaw(cgroup: Path | None) -> None:
    """Let a frozen tree run again (its pending signals are delivered first)."""
    if cgroup is not None:
        try:
            _set_frozen(cgroup, False)
        except OSError:
            pass  # the cgroup is gone: nothing left to thaw


def freeze(
    run_dir: Path, workspace: Path, cgroup: Path | None, *, reason: str, timeout_s: float = 5.0, thaw_after: bool = True
) -> dict:
    """Freeze the tree (when there is a cgroup), copy candidates and sources into
    ``run_dir/frozen``, thaw unless ``thaw_after`` is False (on failure it always thaws);
    return the manifest (also written to frozen/frozen.json)."""
    t, mono = time.time(), time.monotonic()
    frozen_ok, problem = False, None
    if cgroup is not None:
        try:
            _set_frozen(cgroup, True)
            frozen_ok = _wait_frozen(cgroup, timeout_s)
            if not frozen_ok:
                problem = f"the run's cgroup did not report frozen within {timeout_s:g} s"
        except OSError as exc:
            problem = f"cgroup.freeze failed: {exc}"
    else:
        problem = "no cgroup: the copies were taken while the tree could still run"
    dest = RunLayout(run_dir).frozen
    try:
        dest.mkdir(mode=0o700)
        os.chmod(dest, 0o700)
        checkpoints: dict[str, Any] = {}
        for rel in _walk(workspace / CHECKPOINTS, lambda r: True):
            info = _copy_regular(workspace / CHECKPOINTS / rel, dest / CHECKPOINTS / rel)
            if info is not None:
                checkpoints[(Path(CHECKPOINTS) / rel).as_posix()] = info
        sources: dict[str, Any] = {}
        for rel in source_files(workspace):
            info = _copy_regular(workspace / rel, dest / SOURCES / rel)
            if info is not None:
                sources[rel.as_posix()] = info
        copied_mono = time.monotonic()
    except BaseException:
        thaw(cgroup)
        raise
    if thaw_after:
        thaw(cgroup)
    manifest = {
        "format": FROZEN_FORMAT,
        "reason": reason,
        "t": t,
        "mono": mono,
        "copied_mono": copied_mono,
        "cgroup_frozen": frozen_ok,
        "problem": problem,
        "checkpoints": checkpoints,
        "sources": sources,
    }
    tmp = dest / f".{FROZEN_MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, dest / FROZEN_MANIFEST)
    return manifest


def load_frozen(run_dir: Path, *, verify: bool = True) -> dict | None:
    """The frozen manifest of a run (None when the run has none); with ``verify`` every copy
    is re-hashed and a missing or changed one raises ``FrozenMismatch``."""
    path = RunLayout(run_dir).frozen / FROZEN_MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise FrozenMismatch(f"{path}: unreadable frozen manifest ({exc})") from None
    if verify:
        for kind, base in (("checkpoints", ""), ("sources", SOURCES)):
            for rel, info in (manifest.get(kind) or {}).items():
                copy = RunLayout(run_dir).frozen / base / rel
                if not copy.is_file() or sha256_file(copy) != info.get("sha256"):
                    raise FrozenMismatch(
                        f"{run_dir}: frozen copy {kind[:-1]} {rel} does not match its sealed hash",
                        hint="the frozen checkpoints and sources are what is scored; restore them from a backup",
                    )
    return manifest
