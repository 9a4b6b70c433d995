"""The agents x tasks x repetitions matrix: planned, run cell by cell, resumable.

A cell is one `onegc-audit run` in a subprocess of its own (a crash never takes the sweep
down). Sealed cells are skipped; incomplete ones are reported and retried only when asked,
after their directory is moved to RUNS/.attic (evidence is never deleted). A cell is
claimed with an flock on RUNS/.locks/CELL.lock, which the kernel releases when its holder
dies, so two sweeps never run the same cell and a dead node leaves no stuck lock.
"""

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from onegc.evidence.errors import MissingExtra, OnegcError
from onegc.evidence.integrity import BadRunDir, verify_run
from onegc.evidence.layout import RunLayout
from onegc.harness.agents import resolve_agent
from onegc.harness.runfs import RunFs
from onegc.tasks import registry

PLAN_FILE = ".sweep.json"
LOCK_DIR = ".locks"
ATTIC_DIR = ".attic"


@dataclass(frozen=True)
class Cell:
    agent: str
    label: str
    task: str
    rep: int

    @property
    def key(self) -> str:
        return f"{self.label}__{self.task}__r{self.rep}"

    def run_dir(self, runs_dir: Path) -> Path:
        return runs_dir / self.label / self.task / f"r{self.rep}"


def plan(agents: list[str], tasks: list[str], reps: int) -> list[Cell]:
    task_ids = [t.id for t in registry.list_tasks()] if tasks in (["all"], []) else tasks
    for t in task_ids:
        registry.get_task(t)  # one-line error for an unknown task
    if reps < 1:
        raise OnegcError("--reps must be >= 1")
    cells = []
    for agent in agents:
        label = resolve_agent(agent, ["true"]).label
        cells += [Cell(agent, label, t, r) for t in task_ids for r in range(1, reps + 1)]
    return cells


def save_plan(runs_dir: Path, cells: list[Cell]) -> None:
    runs_dir.mkdir(parents=True, exist_ok=True)
    known = {c.key: c for c in load_plan(runs_dir)}
    known.update({c.key: c for c in cells})
    (runs_dir / PLAN_FILE).write_text(json.dumps([asdict(c) for c in known.values()], indent=1))


def load_plan(runs_dir: Path) -> list[Cell]:
    path = runs_dir / PLAN_FILE
    if not path.exists():
        return []
    try:
        return [Cell(**c) for c in json.loads(path.read_text())]
    except (ValueError, TypeError) as exc:
        raise OnegcError(f"{path}: unreadable sweep plan ({exc})") from None


@contextmanager
def claim(runs_dir: Path, cell: Cell) -> Iterator[bool]:
    """Yield True when this process holds the cell's lock, False when another does."""
    locks = runs_dir / LOCK_DIR
    locks.mkdir(parents=True, exist_ok=True)
    fh = open(locks / f"{cell.key}.lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}))
        fh.flush()
        yield True
    finally:
        fh.close()


def is_locked(runs_dir: Path, cell: Cell) -> bool:
    path = runs_dir / LOCK_DIR / f"{cell.key}.lock"
    if not path.exists():
        return False
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def state(runs_dir: Path, cell: Cell) -> str:
    """todo, running, done (sealed and intact or judged), incomplete, tampered."""
    if is_locked(runs_dir, cell):
        return "running"
    run_dir = cell.run_dir(runs_dir)
    if not run_dir.exists():
        return "todo"
    try:
        status = verify_run(run_dir).status
    except BadRunDir:
        return "incomplete"
    return "done" if status == "intact" else status


def _recover_files(run_dir: Path) -> None:
    """A run whose harness died may still hold its own filesystems (harness/runfs.py): copy
    them back into plain folders before the run goes to the attic, as `seal --recover` does.
    Where that cannot be done here (another machine's mount, no root), the run moves as it is."""
    layout = RunLayout(run_dir)
    if layout.fs_dir.exists():
        try:
            RunFs.recover(layout)
        except OSError:
            pass


def run_cell(runs_dir: Path, cell: Cell, extra: list[str], gpu: str | None, retry_incomplete: bool) -> str:
    """Run one cell if it is ours to run; returns what happened."""
    with claim(runs_dir, cell) as mine:
        if not mine:
            return "running elsewhere"
        run_dir = cell.run_dir(runs_dir)
        if run_dir.exists():
            try:
                current = verify_run(run_dir).status
            except BadRunDir:
                current = "incomplete"
            if current == "intact":
                return "skipped (sealed)"
            if not retry_incomplete:
                return f"skipped ({current}; retry with --retry-incomplete)"
            attic = runs_dir / ATTIC_DIR / f"{cell.key}.{time.strftime('%Y%m%dT%H%M%S')}"
            attic.parent.mkdir(parents=True, exist_ok=True)
            _recover_files(run_dir)
            shutil.move(run_dir, attic)
        env = dict(os.environ)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        argv = [sys.executable, "-m", "onegc.audit", "run", "--task", cell.task, "--agent", cell.agent,
                "--label", cell.label, "--rep", str(cell.rep), "--runs-dir", str(runs_dir), *extra]
        log = runs_dir / LOCK_DIR / f"{cell.key}.log"
        with open(log, "w") as out:
            code = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        return f"ran (exit {code})"


def gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def run_local(runs_dir: Path, cells: list[Cell], extra: list[str], retry_incomplete: bool,
              report: Callable[[Cell, str], None], starting: Callable[[Cell], None] | None = None,
              jobs: int | None = None) -> dict[str, str]:
    """Cells at once: one per GPU where there are GPUs (at most ``jobs``), else ``jobs`` on the
    CPUs (default 1); starting(cell) as each begins. Each run's own view, uid and namespaces
    keep concurrent runs apart."""
    devices = gpus()
    slots: list[str | None] = list(devices[: jobs or len(devices)]) if devices else [None] * max(1, jobs or 1)
    free = list(slots)
    results: dict[str, str] = {}

    def work(cell: Cell) -> None:
        gpu = free.pop()
        if starting:
            starting(cell)
        try:
            results[cell.key] = run_cell(runs_dir, cell, extra, gpu, retry_incomplete)
            report(cell, results[cell.key])
        finally:
            free.append(gpu)

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        list(pool.map(work, cells))
    return results


def run_slurm(runs_dir: Path, cells: list[Cell], extra: list[str], retry_incomplete: bool, *,
              partition: str | None, gpus_per_run: int, timeout_min: int) -> list[str]:
    """One Slurm job per cell (a job array), each running the same `onegc-audit run`."""
    try:
        import submitit
    except ImportError:
        raise MissingExtra("submitit", "slurm", "the Slurm executor") from None
    executor = submitit.AutoExecutor(folder=str(runs_dir / ".slurm" / "%j"), cluster="slurm")
    params: dict = {"timeout_min": timeout_min, "slurm_array_parallelism": len(cells)}
    if gpus_per_run:
        params["gpus_per_node"] = gpus_per_run
    if partition:
        params["slurm_partition"] = partition
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [
            executor.submit(run_cell, runs_dir.resolve(), c, extra, None, retry_incomplete) for c in cells
        ]
    return [j.job_id for j in jobs]
