"""Task registry: the seven 1GC-7RC task folders, their data and their official evaluation.

Each folder ``tasks/tN_<what>/`` holds a ``task.toml`` (metadata), a locked ``prepare.py``,
a baseline ``train.py`` and ``program.md``. The registry is the trusted side: it prepares data
by running the task's own prepare.py, copies only agent-visible files into a workspace, and
scores checkpoints with the ORIGINAL prepare.py in a fresh folder (paper Rule 8), so a
workspace copy an agent edited can never influence its score.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from onegc.evidence.errors import OnegcError

TASKS_DIR = Path(__file__).resolve().parent
KIT = TASKS_DIR / "_kit" / "taskkit.py"
# Raw downloads (possibly GBs) are not re-hashed before each evaluation; all else is.
_UNVERIFIED_PREFIX = "source/"
EVAL_LIMIT_FACTOR = 10.0  # the evaluation may take this many times the reference evaluation
EVAL_LIMIT_FLOOR_S = 60.0
EVAL_STARTUP_S = 120.0  # outer bound's allowance for loading data and labels around the model


class UnknownTask(OnegcError):
    """Raised for a task id that names no task folder."""


class PrepareError(OnegcError):
    """A task's prepare.py failed; the message carries the tail of its output."""


@dataclass(frozen=True)
class TaskSpec:
    """Metadata of one task, read from its ``task.toml``."""

    id: str
    slug: str
    title: str
    dir: Path
    budget_s: int
    metric: str
    direction: str
    eval_split: str
    baseline_score: float
    reference_value: float | None
    reference_note: str
    locked: tuple[str, ...]
    has_heldout: bool
    # Additions to the contract: files the real source needs (offline completeness check)
    # and extra environment for the smoke run of train.py.
    source_files: tuple[str, ...] = ()
    smoke_env: tuple[tuple[str, str], ...] = field(default=())
    # How the official inputs reach the model and why no target leaks through them (14.2),
    # and the compute budget of the evaluation: the baseline model's measured evaluation.
    eval_presentation: str = ""
    eval_presentation_note: str = ""
    eval_reference_wall_s: float | None = None
    eval_reference_cpu_s: float | None = None
    eval_reference_note: str = ""
    eval_limit_factor: float = EVAL_LIMIT_FACTOR

    @property
    def eval_limit_s(self) -> float | None:
        """The evaluation's wall limit: a small multiple of the reference, never under the floor
        (interpreter and torch start-up dominate the small tasks). None: no reference."""
        if not self.eval_reference_wall_s:
            return None
        return max(self.eval_limit_factor * self.eval_reference_wall_s, EVAL_LIMIT_FLOOR_S)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings, tuples as lists)."""
        d = asdict(self)
        d["dir"] = str(self.dir)
        d["locked"] = list(self.locked)
        d["source_files"] = list(self.source_files)
        d["smoke_env"] = dict(self.smoke_env)
        return d


@dataclass
class PreparedData:
    """Where a prepared data dir keeps what; ``files`` maps relpath -> sha256."""

    task_id: str
    data_dir: Path
    agent_dir: Path
    heldout_dir: Path | None
    synthetic: bool
    files: dict[str, str]
    version: str = ""
    """``real-<hash>`` / ``synthetic-<hash>``: names the exact files (data_version)."""


def _spec(folder: Path) -> TaskSpec:
    with open(folder / "task.toml", "rb") as f:
        t = tomllib.load(f)
    ref = t.get("reference_value")
    return TaskSpec(
        id=str(t["id"]),
        slug=folder.name,
        title=str(t["title"]),
        dir=folder,
        budget_s=int(t["budget_minutes"]) * 60,
        metric=str(t["metric"]),
        direction=str(t["direction"]),
        eval_split=str(t["eval_split"]),
        baseline_score=float(t["baseline_score"]),
        reference_value=None if ref is None else float(ref),
        reference_note=str(t.get("reference_note", "")),
        locked=tuple(t.get("locked", ("prepare.py", "taskkit.py"))),
        has_heldout=bool(t.get("has_heldout", False)),
        source_files=tuple(t.get("source_files", ())),
        smoke_env=tuple(sorted((str(k), str(v)) for k, v in t.get("smoke_env", {}).items())),
        eval_presentation=str(t.get("eval_presentation", "")),
        eval_presentation_note=str(t.get("eval_presentation_note", "")),
        eval_reference_wall_s=_opt_float(t.get("eval_reference_wall_s")),
        eval_reference_cpu_s=_opt_float(t.get("eval_reference_cpu_s")),
        eval_reference_note=str(t.get("eval_reference_note", "")),
        eval_limit_factor=float(t.get("eval_limit_factor", EVAL_LIMIT_FACTOR)),
    )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def list_tasks() -> list[TaskSpec]:
    """All tasks with a task.toml, in id order (t1 ... t7)."""
    folders = [p for p in TASKS_DIR.glob("t*_*") if (p / "task.toml").is_file()]
    specs = [_spec(p) for p in folders]
    return sorted(specs, key=lambda s: (len(s.id), s.id))


def get_task(task_id: str) -> TaskSpec:
    """Look a task up by short id (``t6``) or folder name (``t6_etth1_forecast``)."""
    key = task_id.strip().lower()
    specs = list_tasks()
    for s in specs:
        if key in (s.id.lower(), s.slug.lower()):
            return s
    known = ", ".join(s.id for s in specs) or "none"
    raise UnknownTask(f"unknown task {task_id!r}; known tasks: {known}")


def offline_source(task_id: str) -> Path | None:
    """The offline copy of a task's real source files (``shared/data/tN``), if any.

    Found via env ONEGC_SHARED_DATA, else ``<repo>/../shared/data``. Returns the folder when
    it holds at least one file; it may be partial (T7 offers only the AG News test split).
    """
    spec = get_task(task_id)
    env = os.environ.get("ONEGC_SHARED_DATA")
    base = Path(env) if env else TASKS_DIR.parent.parent / "shared" / "data"
    folder = base / spec.id
    if folder.is_dir() and any(p.is_file() for p in folder.iterdir()):
        return folder
    return None


def _has_full_source(spec: TaskSpec, folder: Path | None) -> bool:
    return bool(folder and spec.source_files) and all(
        (folder / name).is_file() for name in spec.source_files
    )


def data_version(task_id: str, synthetic: bool, files: dict[str, str]) -> str:
    """A prepared data set's name: its kind and the sha256 over every file's sha256, so real
    and synthetic data, or any two different preparations, never share a version."""
    h = hashlib.sha256(json.dumps([task_id, synthetic, sorted(files.items())]).encode())
    return f"{'synthetic' if synthetic else 'real'}-{h.hexdigest()[:20]}"


def load_prepared(task_id: str, version_dir: Path) -> PreparedData:
    """A published version folder, described from its own manifest (nothing is prepared)."""
    spec = get_task(task_id)
    version_dir = Path(version_dir).resolve()
    try:
        manifest = json.loads((version_dir / "prepared.json").read_text())
    except (OSError, ValueError) as exc:
        raise PrepareError(f"{version_dir} holds no prepared {spec.id} data ({exc})") from None
    synthetic = bool(manifest["synthetic"])
    files = dict(manifest["files"])
    heldout = version_dir / "heldout"
    return PreparedData(
        task_id=spec.id,
        data_dir=version_dir,
        agent_dir=version_dir / "agent",
        heldout_dir=heldout if spec.has_heldout else None,
        synthetic=synthetic,
        files=files,
        version=data_version(spec.id, synthetic, files),
    )


def _intact(folder: Path, files: dict[str, str]) -> bool:
    """Every file present with its hash (raw downloads under source/: present)."""
    for rel, digest in files.items():
        p = folder / rel
        if not p.is_file() or (not rel.startswith(_UNVERIFIED_PREFIX) and _sha256(p) != digest):
            return False
    return True


def _freeze(folder: Path) -> None:
    """Drop every write bit: a published version is never rewritten (root aside, nobody can)."""
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            p = os.path.join(dirpath, name)
            os.chmod(p, os.stat(p).st_mode & ~0o222)
        os.chmod(dirpath, os.stat(dirpath).st_mode & ~0o222)


def prepare_data(task_id: str, data_dir: Path, synthetic: bool | None = None) -> PreparedData:
    """Prepare the task's data as an immutable, published version under ``data_dir``.

    prepare.py writes into a fresh temporary folder; its files' hashes name the version
    (``data_dir/real-<hash>`` or ``synthetic-<hash>``), published by an atomic rename under a
    lock. A published version is never rewritten: a later call reuses the latest one of
    the same kind when every file still has its hash, else prepares a new version beside it.
    ``synthetic=None`` uses the real data when an offline copy holds every source file the
    task needs, else synthetic data; ``synthetic=False`` without an offline copy downloads.
    """
    spec = get_task(task_id)
    src = offline_source(spec.id)
    if synthetic is None:
        synthetic = not _has_full_source(spec, src)
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    latest = data_dir / f".latest-{'synthetic' if synthetic else 'real'}"
    with open(data_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs (a sweep) share one data dir
        if latest.is_file():
            folder = data_dir / latest.read_text().strip()
            if folder.is_dir():
                prepared = load_prepared(spec.id, folder)
                if _intact(folder, prepared.files):
                    return prepared
        tmp = Path(tempfile.mkdtemp(prefix=".preparing-", dir=data_dir))
        try:
            cmd = [sys.executable, str(spec.dir / "prepare.py"), "--data-dir", str(tmp)]
            if synthetic:
                cmd.append("--synthetic")
            elif src is not None:
                cmd += ["--source-dir", str(src)]
            proc = subprocess.run(cmd, cwd=spec.dir, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
                raise PrepareError(f"{spec.id} prepare.py failed: " + " | ".join(tail))
            os.chmod(tmp, 0o755)
            made = load_prepared(spec.id, tmp)
            final = data_dir / made.version
            if final.is_dir():  # the same bytes were published before: keep that copy
                shutil.rmtree(tmp)
            else:
                _freeze(tmp)
                os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        pointer = latest.with_name(latest.name + ".tmp")
        pointer.write_text(made.version + "\n")
        os.replace(pointer, latest)
    return load_prepared(spec.id, final)


def populate_workspace(task: TaskSpec, workspace: Path, prepared: PreparedData) -> None:
    """Copy what the agent may see into ``workspace`` (never the held-out or eval files)."""
    workspace = Path(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    for name in ("program.md", "train.py", "prepare.py"):
        shutil.copy2(task.dir / name, workspace / name)
    shutil.copy2(KIT, workspace / "taskkit.py")
    data = workspace / "data"
    if data.exists():
        shutil.rmtree(data)
    shutil.copytree(prepared.agent_dir, data, copy_function=shutil.copyfile)
    for dirpath, _dirnames, filenames in os.walk(data):  # the copy is the agent's, not frozen
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    (workspace / "checkpoints").mkdir(exist_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DataChanged(OnegcError):
    """The prepared evaluation files are not the ones the run was pinned to: never a score."""


def _verify_eval_files(data_dir: Path, pinned: dict[str, str] | None = None) -> None:
    """Refuse to score against evaluation files that differ from what prepare.py wrote, or
    from the hashes the run pinned at its start (``pinned``: relpath -> sha256)."""
    manifest = json.loads((data_dir / "prepared.json").read_text())
    expected = dict(manifest["files"])
    for rel, digest in (pinned or {}).items():
        if expected.get(rel) != digest:
            raise DataChanged(
                f"{data_dir / rel}: the run was pinned to sha256 {digest}, the data holds "
                f"{expected.get(rel) or 'no such file'}; refusing to score"
            )
    for rel, digest in expected.items():
        if rel.startswith(_UNVERIFIED_PREFIX):
            continue
        found = _sha256(data_dir / rel) if (data_dir / rel).is_file() else "no file"
        if found != digest:
            raise DataChanged(
                f"prepared file {rel} changed since preparation: sha256 {digest} expected, {found} found; "
                "refusing to score"
            )


def evaluate(
    task_id: str,
    checkpoint: Path,
    script_dir: Path,
    data_dir: Path,
    *,
    timeout_s: float | None = None,
    sandbox: list[str] | None = None,
    pinned: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Score ``checkpoint`` with the registry's original prepare.py; return its JSON dict.

    ``timeout_s`` is the model processes' compute limit (default: the task's ``eval_limit_s``,
    a multiple of its reference evaluation; else prepare.py's own).
    ``sandbox``: the argv prefix of a view launcher; the model process then runs in a view
    holding only its staged checkpoint, sources and inputs (the harness passes its own).
    ``pinned``: the data files' hashes the run was pinned to; any difference raises
    DataChanged naming both hashes. A classified failure comes back as ``{"error": kind,
    "detail": ...}``; an evaluator that neither scores nor classifies raises RuntimeError.
    """
    spec = get_task(task_id)
    limit = timeout_s if timeout_s is not None else spec.eval_limit_s
    data_dir = Path(data_dir).resolve()
    _verify_eval_files(data_dir, pinned)
    with tempfile.TemporaryDirectory(prefix=f"onegc-{spec.id}-eval-") as tmp:
        eval_dir = Path(tmp)
        shutil.copy2(spec.dir / "prepare.py", eval_dir / "prepare.py")
        shutil.copy2(KIT, eval_dir / "taskkit.py")
        cmd = [
            sys.executable, str(eval_dir / "prepare.py"), "--eval", str(Path(checkpoint).resolve()),
            "--data-dir", str(data_dir), "--script-dir", str(Path(script_dir).resolve()), "--json",
        ]  # fmt: skip
        try:
            env = {k: v for k, v in os.environ.items() if k not in ("ONEGC_EVAL_SANDBOX", "ONEGC_EVAL_LIMIT_S")}
            if sandbox:
                env["ONEGC_EVAL_SANDBOX"] = json.dumps(sandbox)
            if limit is not None:
                env["ONEGC_EVAL_LIMIT_S"] = f"{limit:g}"
            proc = subprocess.run(
                cmd, cwd=eval_dir, capture_output=True, text=True, env=env,
                timeout=(limit or 1800) + EVAL_STARTUP_S,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"error": "timeout", "detail": f"evaluation exceeded {(limit or 1800) + EVAL_STARTUP_S:g} s",
                    "eval_limit_s": limit}  # fmt: skip
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stdout + proc.stderr).strip()[-1500:]
    raise RuntimeError(f"{spec.id} evaluation failed (exit {proc.returncode}): {tail}")
