"""Locked runtime shared by every task's prepare.py (do not modify).

This file is copied beside prepare.py into every agent workspace and every evaluation
directory, so it imports only the standard library, numpy and torch. It gives the tasks one
implementation of the things that must behave identically everywhere:

- ``fetch``: idempotent, checksum-verified, atomic downloads with retries, or a copy from an
  offline source directory (``source_dir`` / env ONEGC_SOURCE_DIR).
- ``save_checkpoint``: the output contract (paper Rule 7). One atomic ``torch.save`` of a
  self-describing dict, so that the evaluator can rebuild the model from the recorded script.
- ``load_model``: rebuild through ``build_model(config)`` and ``load_state_dict(strict=True)``
  with every failure classified (``EvalFailure.kind``), e.g. ``orig_mod_prefix`` for a
  torch.compile'd model saved as is (paper Appendix C).
- ``predict_isolated``: the agent's model code runs in a separate process; when root, as an
  unprivileged uid with no network, a private mount namespace that hides the workspace and
  data folders, and an address-space limit (paper Rule 8). The child only ever receives the
  evaluation inputs; the labels stay with the trusted caller, which computes the metric.
- ``report``: the autoresearch-style ``---`` / ``name: value`` summary, or one JSON line.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import math
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

CKPT_FORMAT = "onegc-ckpt-1"
ORIG_MOD_PREFIX = "_orig_mod."
EVAL_KINDS = frozenset(
    {
        "unreadable_checkpoint",
        "bad_format",
        "missing_script",
        "missing_build_model",
        "build_model_error",
        "orig_mod_prefix",
        "missing_keys",
        "unexpected_keys",
        "shape_mismatch",
        "predict_error",
        "timeout",
        "non_causal",
    }
)
EXIT_EVAL_FAILURE = 3
DEFAULT_EVAL_UID = 65534
_AGENT_MODULE = "onegc_agent_script"
_SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")


# ---------------------------------------------------------------------------
# Files and downloads
# ---------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, streamed so multi-GB archives do not need to fit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, sha256: str | None, origin: str) -> None:
    if sha256 is not None and (got := sha256_file(path)) != sha256.lower():
        raise ValueError(f"checksum mismatch for {origin}: expected {sha256}, got {got}")


def fetch(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    *,
    source_dir: str | os.PathLike[str] | None = None,
    retries: int = 3,
) -> Path:
    """Make ``dest`` hold the file at ``url`` (verified against ``sha256`` when given).

    Idempotent: a present file with the right hash is kept. Atomic: data lands in a temp
    file beside ``dest`` and is renamed, so an interrupted run never leaves a truncated
    file that a later run would trust. When ``source_dir`` (or env ONEGC_SOURCE_DIR) holds
    a file named like ``dest`` it is copied from there instead (machines without internet).
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256.lower()):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    src_dir = source_dir if source_dir is not None else os.environ.get("ONEGC_SOURCE_DIR")
    if src_dir and (Path(src_dir) / dest.name).is_file():
        src = Path(src_dir) / dest.name
        try:
            shutil.copyfile(src, tmp)
            _verify(tmp, sha256, str(src))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest
    last: Exception | None = None
    for attempt in range(max(1, retries)):
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out, 1 << 20)
            _verify(tmp, sha256, url)
            os.replace(tmp, dest)
            return dest
        except (OSError, ValueError) as exc:  # URLError is an OSError
            last = exc
            tmp.unlink(missing_ok=True)
            if attempt + 1 < retries:
                time.sleep(2**attempt)
    raise RuntimeError(f"could not fetch {url} after {retries} attempt(s): {last}")


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write bytes via temp file + rename so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def save_array(path: Path, arr: np.ndarray, *, private: bool = False) -> None:
    """Atomic ``np.save``; ``private`` files (labels, held-out data) are owner-only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, arr, allow_pickle=False)
    os.chmod(tmp, 0o600 if private else 0o644)
    os.replace(tmp, path)


def private_dir(path: Path) -> Path:
    """Create a folder only its owner (root, on the evaluation machine) can enter."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


MANIFEST = "prepared.json"


def write_manifest(data_dir: Path, task: str, synthetic: bool) -> dict[str, Any]:
    """Hash every prepared file into DIR/prepared.json, the registry's tamper check."""
    files = {
        p.relative_to(data_dir).as_posix(): sha256_file(p)
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    }
    manifest = {"task": task, "synthetic": synthetic, "files": files}
    write_atomic(data_dir / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


def manifest_valid(data_dir: Path, task: str, synthetic: bool) -> bool:
    """True when DIR was fully prepared for this task and mode and nothing changed since."""
    try:
        manifest = json.loads((data_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("task") != task or manifest.get("synthetic") != synthetic:
        return False
    files = manifest.get("files", {})
    return bool(files) and all(
        (data_dir / rel).is_file() and sha256_file(data_dir / rel) == digest
        for rel, digest in files.items()
    )


# ---------------------------------------------------------------------------
# Checkpoints (output contract, paper Rule 7)
# ---------------------------------------------------------------------------


class EvalFailure(Exception):
    """A classified reason why a checkpoint could not be scored (see ``EVAL_KINDS``)."""

    def __init__(self, kind: str, detail: str) -> None:
        if kind not in EVAL_KINDS:
            raise ValueError(f"unknown EvalFailure kind {kind!r}")
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def _sanitise(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip("._-") or "ckpt"
    return clean if clean.endswith(".pt") else clean + ".pt"


def _check_plain(value: Any, where: str = "config") -> None:
    """Reject config values that ``torch.load(weights_only=True)`` could not read back."""
    if value is None or isinstance(value, bool | int | float | str):
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise TypeError(f"{where}: keys must be str or int, got {type(k).__name__}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; the config must be built from dict/list/"
        "str/int/float/bool/None so the evaluator can read it back"
    )


def _calling_script() -> Path:
    """File of the nearest caller outside taskkit.py/prepare.py that can build the model."""
    fallback: Path | None = None
    for frame_info in inspect.stack()[1:]:
        fname = frame_info.filename
        if not fname or fname.startswith("<"):
            continue
        path = Path(fname)
        if path.name in ("taskkit.py", "prepare.py"):
            continue
        if callable(frame_info.frame.f_globals.get("build_model")):
            return path
        fallback = fallback or path
    raise ValueError(
        "save_checkpoint: no calling script defines build_model(config) at module level"
        + (f" (nearest caller: {fallback.name})" if fallback else "")
    )


def save_checkpoint(
    model: torch.nn.Module,
    config: Mapping[str, Any],
    score: float,
    *,
    task: str,
    metric: str,
    ckpt_dir: str | os.PathLike[str] = "checkpoints",
    name: str | None = None,
) -> Path:
    """Atomically save a scored checkpoint the official evaluation can rebuild.

    The state dict is saved exactly as given (moved to CPU): a torch.compile'd model saved
    as is keeps its ``_orig_mod.`` prefix and will fail strict loading, as in the paper
    (Appendix C); a warning says so at save time, while the agent can still fix it.
    """
    script = _calling_script()
    cfg = dict(config)
    _check_plain(cfg)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if any(k.startswith(ORIG_MOD_PREFIX) for k in state):
        print(
            "taskkit warning: state_dict keys start with '_orig_mod.' (torch.compile'd model);"
            " this checkpoint will fail the strict official load: save model._orig_mod",
            file=sys.stderr,
        )
    payload = {
        "format": CKPT_FORMAT,
        "task": task,
        "metric": metric,
        "state_dict": state,
        "config": cfg,
        "script": script.name,
        "self_reported_score": float(score),
        "saved_at": time.time(),
    }
    out_dir = Path(ckpt_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if name is None:
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000_000:09d}"
        name = f"{script.stem}-{stamp}"
    path = out_dir / _sanitise(name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _import_script(path: Path) -> Any:
    """Import the agent's script by path under a fixed name (never as ``__main__``)."""
    if str(path.parent) not in sys.path:
        # Appended, not prepended: the trusted prepare.py/taskkit.py already on the path win.
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(_AGENT_MODULE, path)
    if spec is None or spec.loader is None:
        raise EvalFailure("missing_script", f"cannot import {path.name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_AGENT_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise EvalFailure(
            "build_model_error", f"importing {path.name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def load_model(
    ckpt_path: str | os.PathLike[str], script_dir: str | os.PathLike[str]
) -> torch.nn.Module:
    """Rebuild the checkpoint's model via its script's ``build_model`` and load strictly.

    Every failure is raised as an ``EvalFailure`` whose kind says what went wrong, because
    the harness reports N/A per reason (a crash would hide which rule the agent broke).
    """
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EvalFailure("unreadable_checkpoint", f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise EvalFailure("bad_format", f"not a {CKPT_FORMAT} checkpoint dict")
    state, script = ckpt.get("state_dict"), ckpt.get("script")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvalFailure("bad_format", "state_dict missing or not a dict of tensors")
    if not isinstance(script, str) or not script or Path(script).name != script:
        raise EvalFailure("bad_format", f"script must be a bare file name, got {script!r}")
    script_path = Path(script_dir) / script
    if not script_path.is_file():
        raise EvalFailure("missing_script", f"{script} not found in the script directory")
    module = _import_script(script_path)
    build = getattr(module, "build_model", None)
    if not callable(build):
        raise EvalFailure("missing_build_model", f"{script} defines no build_model(config)")
    try:
        model = build(ckpt.get("config"))
    except Exception as exc:
        raise EvalFailure("build_model_error", f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise EvalFailure("build_model_error", f"build_model returned {type(model).__name__}")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if (missing or unexpected) and any(ORIG_MOD_PREFIX in k for k in unexpected):
        raise EvalFailure(
            "orig_mod_prefix",
            f"{sum(ORIG_MOD_PREFIX in k for k in unexpected)} keys carry '_orig_mod.' "
            "(torch.compile'd model saved as is); strict loading fails",
        )
    if missing:
        raise EvalFailure("missing_keys", f"{len(missing)} missing, e.g. {missing[:5]}")
    if unexpected:
        raise EvalFailure("unexpected_keys", f"{len(unexpected)} unexpected, e.g. {unexpected[:5]}")
    bad = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise EvalFailure("shape_mismatch", f"{len(bad)} tensors, e.g. {bad[:3]}")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise EvalFailure("shape_mismatch", f"{type(exc).__name__}: {exc}") from exc
    return model.eval()


def pick_device() -> torch.device:
    """The device evaluation and training use: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model: torch.nn.Module) -> torch.device:
    """Device of a model's first parameter (CPU for parameter-less models)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------
# Isolated prediction (paper Rule 8)
# ---------------------------------------------------------------------------


def _eval_ids() -> tuple[int, int]:
    uid = int(os.environ.get("ONEGC_EVAL_UID", DEFAULT_EVAL_UID))
    gid = int(os.environ.get("ONEGC_EVAL_GID", uid))
    return uid, gid


def isolation_mode() -> str:
    """What ``predict_isolated`` will do here, for the evaluation report."""
    if os.geteuid() != 0:
        return "process-only"
    uid, _ = _eval_ids()
    return f"uid={uid},netns,mountns"


def _traversable(path: Path, uid: int, gid: int) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _blocked_ancestor(path: Path, uid: int, gid: int) -> Path | None:
    """Topmost directory on the way to ``path`` that ``uid`` cannot traverse."""
    for anc in [*reversed(path.parents), path]:
        if not _traversable(anc, uid, gid):
            return anc
    return None


def _interpreter_paths() -> list[Path]:
    """Folders the child's Python needs: the venv, the base install, its site-packages."""
    import site

    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent}
    paths.update(Path(p) for p in site.getsitepackages())
    return sorted({Path(os.path.realpath(p)) for p in paths if Path(p).is_dir()})


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _mount_script(stage: Path, hide: Iterable[Path], uid: int, gid: int) -> list[str]:
    """Shell lines (run as root in a fresh mount+net namespace) that prepare the child's view.

    Interpreter folders behind a non-traversable ancestor (e.g. pyenv under /root, mode 0700)
    are re-exposed read-only on a tmpfs laid over that ancestor, which also hides the rest
    of it; every ``hide`` folder (workspace, data, registry) is covered by an empty tmpfs.
    """
    lines = ["set -e"]
    by_blocker: dict[Path, list[Path]] = {}
    for p in _interpreter_paths():
        blocker = _blocked_ancestor(p, uid, gid)
        if blocker is not None and blocker != Path("/"):
            by_blocker.setdefault(blocker, []).append(p)
    n = 0
    for blocker, needed in by_blocker.items():
        needed = [p for p in needed if not any(q != p and _under(p, q) for q in needed)]
        staged = []
        for p in needed:
            tmp = stage / "expose" / str(n)
            tmp.mkdir(parents=True)
            n += 1
            lines.append(f"mount --rbind {shlex.quote(str(p))} {shlex.quote(str(tmp))}")
            staged.append((p, tmp))
        lines.append(f"mount -t tmpfs -o mode=0755,size=64k onegc {shlex.quote(str(blocker))}")
        for p, tmp in staged:
            q = shlex.quote(str(p))
            lines += [
                f"mkdir -p {q}",
                f"mount --rbind {shlex.quote(str(tmp))} {q}",
                f"mount -o remount,bind,ro {q}",
            ]
    keep = [stage, *_interpreter_paths()]
    for h in hide:
        h = Path(os.path.realpath(h))
        if not h.is_dir() or h == Path("/") or any(_under(k, h) for k in keep):
            continue
        if any(_under(h, b) for b in by_blocker):
            continue  # already hidden by the tmpfs laid over its blocked ancestor
        lines.append(f"mount -t tmpfs -o ro,mode=0755,size=4k onegc {shlex.quote(str(h))}")
    return lines


def _confine_cmd(stage: Path, code: Path, child: list[str], uid: int, gid: int, hide: list[Path]) -> list[str]:
    """How the root evaluator starts its model process. Under the harness (ONEGC_EVAL_SANDBOX:
    the argv of its view launcher) the child gets a deny-by-default view holding the runtime
    read-only and only ``stage`` writable, with no network; run by hand, a mount namespace
    that hides ``hide`` and no network."""
    sandbox = os.environ.get("ONEGC_EVAL_SANDBOX")
    if sandbox:
        view = [*json.loads(sandbox), "--rw", str(stage), "--uid", str(uid), "--gid", str(gid)]
        return [*view, "--cwd", str(code), "--", *child]
    lines = _mount_script(stage, hide, uid, gid)
    # Shared scratch places private to this process (and IPC its own): nothing one confined
    # process leaves behind reaches the next (T1's probe and real passes).
    lines += [
        f"mount -t tmpfs -o mode=1777,size=1g onegc {d}"
        for d in _SCRATCH
        if Path(d).is_dir() and not _under(stage, Path(os.path.realpath(d)))
    ]
    drop = [
        "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
        "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--", *child,
    ]  # fmt: skip
    lines.append("exec " + shlex.join(drop))
    return ["unshare", "--net", "--mount", "--ipc", "--propagation", "private", "--", "sh", "-c", "\n".join(lines)]


def _stage_code(code: Path, script_dir: Path, prepare_py: Path) -> None:
    """Copy the agent's Python sources, then the TRUSTED prepare.py/taskkit.py over them."""
    code.mkdir(parents=True)
    for item in script_dir.iterdir():
        if item.is_file() and item.suffix == ".py":
            shutil.copy2(item, code / item.name)
        elif item.is_dir() and (item / "__init__.py").is_file():
            shutil.copytree(
                item,
                code / item.name,
                ignore=lambda d, names: [
                    n for n in names if not (n.endswith(".py") or (Path(d) / n).is_dir())
                ],
            )
    shutil.copy2(prepare_py, code / "prepare.py")
    shutil.copy2(Path(__file__).resolve(), code / "taskkit.py")


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, uid, gid)
        for n in dirnames + filenames:
            os.chown(os.path.join(dirpath, n), uid, gid, follow_symlinks=False)


class EvalUsage(dict):
    """What one confined prediction process used: ``wall_s`` (spawn to exit), ``cpu_s`` (user +
    system of the process and every child it waited for), ``gpu_s`` (synchronised wall seconds
    of its prediction calls on a GPU, None without one) and the ``limit_s`` it ran under."""


USAGE: list[EvalUsage] = []  # one entry per confined process of this evaluation, in order


def _stage_root() -> str | None:
    """Where root stages an evaluation: outside /tmp, so /tmp can be made private to it."""
    base = Path("/run/onegc-eval")
    try:
        base.mkdir(mode=0o711, exist_ok=True)
    except OSError:
        return None
    return str(base)


def _write_frame(fd: int, payload: bytes) -> None:
    data = len(payload).to_bytes(8, "little") + payload
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    import select

    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _read_frame(fd: int, deadline: float | None) -> bytes:
    return _read_exact(fd, int.from_bytes(_read_exact(fd, 8, deadline), "little"), deadline)


def _pack(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Arrays as one frame: a JSON header (name, dtype, shape) then the raw bytes. No pickle;
    cheap enough for thousands of single-item calls (an npz costs ~1 ms each)."""
    arrs = {k: np.asarray(v).copy(order="C") for k, v in arrays.items()}
    for k, v in arrs.items():
        if v.dtype.hasobject:
            raise TypeError(f"{k}: object arrays cannot be sent")
    header = json.dumps([[k, v.dtype.str, list(v.shape)] for k, v in arrs.items()]).encode()
    return len(header).to_bytes(4, "little") + header + b"".join(v.tobytes() for v in arrs.values())


def _unpack(data: bytes) -> dict[str, np.ndarray]:
    n = int.from_bytes(data[:4], "little")
    out, pos = {}, 4 + n
    for name, dtype, shape in json.loads(data[4 : 4 + n]):
        dt = np.dtype(dtype)
        if dt.hasobject:
            raise ValueError("object arrays are not accepted")
        count = int(np.prod(shape, dtype=np.int64))
        if pos + dt.itemsize * count > len(data):
            raise ValueError("truncated frame")
        out[str(name)] = np.frombuffer(data, dtype=dt, count=count, offset=pos).reshape(shape).copy()
        pos += dt.itemsize * count
    return out


def _confined(
    ckpt_path: str | os.PathLike[str],
    script_dir: str | os.PathLike[str],
    feed: Path | Iterable[Mapping[str, np.ndarray]],
    *,
    predict: str,
    timeout_s: float,
    memory_mb: int | None,
    prepare_py: Path,
    hide: Iterable[str | os.PathLike[str]],
) -> list[np.ndarray]:
    """Run the model in a confined child; ``feed`` is an inputs.npz (one call on all of it) or
    an iterable of items, each sent over a pipe only after the previous prediction came back.
    Returns one prediction per call; records an ``EvalUsage`` in ``USAGE``."""
    prepare_py, script_dir = Path(prepare_py).resolve(), Path(script_dir).resolve()
    root = os.geteuid() == 0
    uid, gid = _eval_ids()
    if root and not (shutil.which("unshare") and shutil.which("setpriv")):
        raise RuntimeError("isolated evaluation as root needs util-linux unshare and setpriv")
    stream = not isinstance(feed, str | os.PathLike)
    stage = Path(tempfile.mkdtemp(prefix="onegc-eval-", dir=_stage_root() if root else None))
    fds: list[int] = []
    usage = EvalUsage(wall_s=None, cpu_s=None, gpu_s=None, limit_s=timeout_s, calls=0)
    USAGE.append(usage)
    try:
        code, out = stage / "code", stage / "out"
        _stage_code(code, script_dir, prepare_py)
        shutil.copyfile(ckpt_path, stage / "model.pt")
        if not stream:
            shutil.copyfile(feed, stage / "inputs.npz")  # type: ignore[arg-type]
        out.mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(out),
            "LANG": "C.UTF-8",
            "ONEGC_EVAL_CHILD": "1",
        }
        pass_fds: tuple[int, ...] = ()
        if stream:
            to_child_r, to_child_w = os.pipe()
            from_child_r, from_child_w = os.pipe()
            fds += [to_child_r, to_child_w, from_child_r, from_child_w]
            pass_fds = (to_child_r, from_child_w)
            env["ONEGC_EVAL_FDS"] = f"{to_child_r},{from_child_w}"
        for key in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            if key in os.environ:
                env[key] = os.environ[key]
        child = [
            sys.executable, "-s", "-E", "-B", str(code / "taskkit.py"), "--child",
            str(stage), predict, str(memory_mb or 0),
        ]  # fmt: skip
        if root:
            os.chmod(stage, 0o700)
            _chown_tree(stage, uid, gid)
            cmd = _confine_cmd(stage, code, child, uid, gid, [script_dir, *(Path(h) for h in hide)])
        else:
            cmd = child
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        log_file = open(stage / "child.log", "w+b")  # noqa: SIM115 (read back after exit)
        proc = subprocess.Popen(
            cmd, cwd=code, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True, pass_fds=pass_fds,
        )  # fmt: skip
        preds: list[np.ndarray] = []
        broken = False
        try:
            if stream:
                for fd in pass_fds:
                    os.close(fd)
                    fds.remove(fd)
                try:
                    for item in feed:  # type: ignore[union-attr]
                        _write_frame(to_child_w, _pack(item))
                        preds.append(_unpack(_read_frame(from_child_r, deadline))["pred"])
                        usage["calls"] += 1
                except (EOFError, BrokenPipeError, ValueError, KeyError, TypeError):
                    broken = True  # the child died or sent garbage: its result.json says why
                os.close(to_child_w)
                fds.remove(to_child_w)
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except (TimeoutError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise EvalFailure("timeout", f"prediction exceeded its limit of {timeout_s:g} s") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # nothing the model started outlives it
            usage["wall_s"] = round(time.monotonic() - t0, 3)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            usage["cpu_s"] = round(cpu, 3)
        log_file.seek(0)
        tail = log_file.read()[-2000:].decode("utf-8", "replace")
        log_file.close()
        if tail.strip():  # the agent's prints, for debugging; stdout stays machine-readable
            print(f"[model process output, last 2000 chars]\n{tail}", file=sys.stderr)
        result_file = out / "result.json"
        if not result_file.is_file():
            raise EvalFailure("predict_error", f"child exited with status {proc.returncode}: {tail}")
        result = json.loads(result_file.read_text())
        usage["gpu_s"] = result.get("gpu_s")
        if not result.get("ok"):
            kind = result.get("kind")
            kind = kind if kind in EVAL_KINDS else "predict_error"
            raise EvalFailure(kind, str(result.get("detail", ""))[:4000])
        if broken:
            raise EvalFailure("predict_error", f"the model process stopped answering: {tail}")
        if not stream:
            try:
                preds.append(np.load(out / "pred.npy", allow_pickle=False))
            except Exception as exc:
                raise EvalFailure("predict_error", f"unreadable predictions: {exc}") from exc
        return preds
    finally:
        for fd in fds:
            os.close(fd)
        shutil.rmtree(stage, ignore_errors=True)


def predict_isolated(
    ckpt_path: str | os.PathLike[str],
    script_dir: str | os.PathLike[str],
    inputs_npz: str | os.PathLike[str],
    *,
    predict: str,
    timeout_s: float,
    memory_mb: int | None,
    prepare_py: str | os.PathLike[str] | None = None,
    hide: Iterable[str | os.PathLike[str]] = (),
) -> np.ndarray:
    """Run ``prepare.<predict>(load_model(ckpt), inputs)`` once on all inputs, confined.

    For tasks whose items are independent (no input holds another item's label). The child
    gets copies of the agent's sources, the trusted prepare.py/taskkit.py, the checkpoint and
    the inputs only. When root it runs as ONEGC_EVAL_UID (default 65534) with no network and
    a mount namespace where ``hide`` and ``script_dir`` are empty; the address space is capped
    at ``memory_mb`` on CPU (CUDA needs huge virtual reservations, so the cap is skipped when
    a GPU is visible). ``prepare_py`` defaults to the caller's file. Raises ``EvalFailure``
    (kinds from load_model, ``predict_error``, ``timeout``).
    """
    if prepare_py is None:
        prepare_py = inspect.stack()[1].filename
    return _confined(
        ckpt_path, script_dir, Path(inputs_npz), predict=predict, timeout_s=timeout_s,
        memory_mb=memory_mb, prepare_py=Path(prepare_py), hide=hide,
    )[0]  # fmt: skip


def predict_stream(
    ckpt_path: str | os.PathLike[str],
    script_dir: str | os.PathLike[str],
    items: Iterable[Mapping[str, np.ndarray]],
    *,
    predict: str,
    timeout_s: float,
    memory_mb: int | None,
    prepare_py: str | os.PathLike[str] | None = None,
    hide: Iterable[str | os.PathLike[str]] = (),
) -> list[np.ndarray]:
    """Like ``predict_isolated`` but one call per item, in the order given, each item sent to
    the confined process only after it answered the previous one: for test sets that are one
    sequence. The model process never holds any data later than the item it is predicting,
    so neither reading other items nor state kept across calls can reveal a target; one
    prediction per item comes back. ``timeout_s`` bounds the whole stream."""
    if prepare_py is None:
        prepare_py = inspect.stack()[1].filename
    return _confined(
        ckpt_path, script_dir, items, predict=predict, timeout_s=timeout_s,
        memory_mb=memory_mb, prepare_py=Path(prepare_py), hide=hide,
    )  # fmt: skip


def _child_main(stage: Path, predict: str, memory_mb: int) -> int:
    """Entry point of the confined child: load, predict, write predictions + result.json.

    Batch mode reads ``inputs.npz`` and writes ``pred.npy``; stream mode (ONEGC_EVAL_FDS)
    answers each item frame on the input pipe with a prediction frame until the pipe closes.
    """
    import resource

    out = stage / "out"
    gpu_s = 0.0 if torch.cuda.is_available() else None

    def finish(result: dict[str, Any]) -> int:
        result["gpu_s"] = None if gpu_s is None else round(gpu_s, 3)
        write_atomic(out / "result.json", json.dumps(result).encode())
        return 0

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb > 0 and not torch.cuda.is_available():
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        model = load_model(stage / "model.pt", stage / "code")
    except EvalFailure as exc:
        return finish({"ok": False, "kind": exc.kind, "detail": exc.detail})

    def call(inputs: dict[str, np.ndarray]) -> np.ndarray:
        nonlocal gpu_s
        t0 = time.monotonic()
        with torch.no_grad():
            pred = fn(model, inputs)
        if isinstance(pred, torch.Tensor):
            pred = pred.detach().cpu().numpy()
        if gpu_s is not None:
            torch.cuda.synchronize()
            gpu_s += time.monotonic() - t0
        pred = np.asarray(pred)
        if pred.dtype == object:
            raise TypeError("predictions must be a numeric array")
        return pred

    try:
        import prepare  # the trusted copy staged beside this file

        fn: Callable[[torch.nn.Module, dict[str, np.ndarray]], Any] = getattr(prepare, predict)
        model = model.to(pick_device())
        fds = os.environ.get("ONEGC_EVAL_FDS")
        if fds:
            fd_in, fd_out = (int(x) for x in fds.split(","))
            if not torch.cuda.is_available():
                torch.set_num_threads(1)  # one item per call: intra-op threads only spin
            while True:
                try:
                    frame = _read_frame(fd_in, None)
                except EOFError:
                    break
                _write_frame(fd_out, _pack({"pred": call(_unpack(frame))}))
        else:
            with np.load(stage / "inputs.npz", allow_pickle=False) as npz:
                inputs = {k: npz[k] for k in npz.files}
            pred = call(inputs)
            buf = out / ".pred.npy"
            np.save(buf, pred, allow_pickle=False)
            os.replace(buf, out / "pred.npy")
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}\n" + traceback.format_exc()[-1500:]
        return finish({"ok": False, "kind": "predict_error", "detail": detail})
    return finish({"ok": True})


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def report(
    metrics: Mapping[str, Any], *, as_json: bool, extra: Mapping[str, Any] | None = None
) -> None:
    """Print the official result, autoresearch style or as one JSON line.

    ``metrics`` is ``{metric_name: value, ...}`` (the first entry is the official metric) or
    ``{"error": kind, "detail": ...}``; an error exits with status 3 so scripts can tell a
    classified failure from a crash.
    """
    extra = dict(extra or {})
    if "error" in metrics:
        obj = {"error": metrics["error"], "detail": metrics.get("detail", ""), **extra}
        if as_json:
            print(json.dumps(obj, default=str), flush=True)
        else:
            print("---")
            for k, v in obj.items():
                print(f"{k}:  {_fmt(v)}")
            sys.stdout.flush()
        raise SystemExit(EXIT_EVAL_FAILURE)
    name, value = next(iter(metrics.items()))
    if as_json:
        obj = {"task": extra.pop("task", None), "metric": name, "value": value}
        obj.update({k: v for k, v in metrics.items() if k != name})
        obj.update(extra)
        print(json.dumps(obj, default=str), flush=True)
        return
    print("---")
    for k, v in {**metrics, **extra}.items():
        print(f"{k}:  {_fmt(v)}")
    sys.stdout.flush()


def official_eval(
    *,
    task: str,
    metric: str,
    split: str,
    ckpt: str | os.PathLike[str],
    script_dir: str | os.PathLike[str],
    inputs_npz: str | os.PathLike[str] | None = None,
    predict: str,
    score: Callable[[np.ndarray], float | Mapping[str, float]],
    as_json: bool,
    timeout_s: float,
    memory_mb: int | None,
    hide: Iterable[str | os.PathLike[str]] = (),
    prepare_py: str | os.PathLike[str] | None = None,
    produce: Callable[[Callable[[], float]], np.ndarray] | None = None,
) -> None:
    """The shared ``prepare.py --eval`` flow: isolated predictions, trusted scoring, report.

    Predictions come from one confined call on ``inputs_npz`` (independent items) or from
    ``produce(time_left)`` (a task that streams its items through ``predict_stream``).
    ``score`` runs in the trusted process with the labels; it returns the metric value (or a
    dict whose first entry is the metric) and raises ``EvalFailure("predict_error", ...)``
    on malformed predictions. ``timeout_s`` is the evaluation's compute limit (all confined
    processes together); the report carries what they used (``eval_wall_s``, ``eval_cpu_s``,
    ``eval_gpu_s``, ``eval_limit_s``), a failure too. Exits 3 on a classified failure.
    """
    if prepare_py is None:
        prepare_py = inspect.stack()[1].filename
    extra: dict[str, Any] = {
        "task": task,
        "split": split,
        "checkpoint": str(Path(ckpt).resolve()),
        "isolation": isolation_mode(),
    }
    t0 = time.monotonic()
    USAGE.clear()

    def time_left() -> float:
        left = t0 + timeout_s - time.monotonic()
        if left <= 0:
            raise EvalFailure("timeout", f"evaluation exceeded its limit of {timeout_s:g} s")
        return left

    def usage() -> dict[str, Any]:
        def total(key: str) -> float | None:
            vals = [u[key] for u in USAGE if u.get(key) is not None]
            return round(sum(vals), 3) if vals else None

        return {"eval_wall_s": total("wall_s"), "eval_cpu_s": total("cpu_s"),
                "eval_gpu_s": total("gpu_s"), "eval_limit_s": timeout_s}  # fmt: skip

    try:
        if produce is not None:
            pred = produce(time_left)
        else:
            if inputs_npz is None:
                raise ValueError("official_eval needs inputs_npz or produce")
            pred = predict_isolated(
                ckpt, script_dir, inputs_npz, predict=predict, timeout_s=timeout_s,
                memory_mb=memory_mb, prepare_py=prepare_py, hide=hide,
            )  # fmt: skip
        value = score(pred)
    except EvalFailure as exc:
        report({"error": exc.kind, "detail": exc.detail}, as_json=as_json, extra={**extra, **usage()})
        return
    metrics = dict(value) if isinstance(value, Mapping) else {metric: float(value)}
    first = next(iter(metrics.values()))
    if not math.isfinite(float(first)):
        report({"error": "predict_error", "detail": f"non-finite {metric}: {first}"},
               as_json=as_json, extra={**extra, **usage()})  # fmt: skip
        return
    extra["eval_seconds"] = round(time.monotonic() - t0, 3)
    report(metrics, as_json=as_json, extra={**extra, **usage()})


def eval_limit_s(default: float) -> float:
    """The evaluation's compute limit: ONEGC_EVAL_LIMIT_S (set by the registry from the task's
    reference evaluation time) when present, else the task's fallback ``default``."""
    try:
        value = float(os.environ.get("ONEGC_EVAL_LIMIT_S") or default)
    except ValueError:
        return default
    return value if value > 0 and math.isfinite(value) else default


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--child":
    import taskkit as _kit  # the module object prepare.py shares (EvalFailure identity)

    sys.exit(_kit._child_main(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
