"""Measure each task's reference evaluation: the baseline model's official evaluation on CPU.

Why: the evaluator's compute limit is a small multiple of this reference, and R6 cites an
evaluation that used far more CPU than it (a model training inside the evaluator). The
numbers go into each task.toml (eval_reference_wall_s / eval_reference_cpu_s) with how they
were measured. The baseline train.py runs in smoke mode only to produce a checkpoint of the
baseline architecture (evaluation cost does not depend on how well it trained); the data
are the real ones where the offline source exists, else synthetic (then the numbers are
scaled by the item count of the real test set, printed here as ``items``).

Usage: python bench/eval_reference.py [--work DIR] [--reps N] t1 t6 ...
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from onegc.tasks import registry


def measure(task_id: str, work: Path, reps: int) -> None:
    task = registry.get_task(task_id)
    synthetic = not registry._has_full_source(task, registry.offline_source(task_id))
    prepared = registry.prepare_data(task_id, work / "data", synthetic=synthetic)
    ws = work / "workspace"
    registry.populate_workspace(task, ws, prepared)
    env = {**os.environ, **dict(task.smoke_env), "ONEGC_SMOKE": "1"}
    env.pop("ONEGC_DATA_DIR", None)
    subprocess.run([sys.executable, "train.py"], cwd=ws, env=env, check=True, capture_output=True)
    ckpt = max((ws / "checkpoints").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    for rep in range(reps):
        r = registry.evaluate(task_id, ckpt, ws, prepared.data_dir, timeout_s=1800)
        print(
            f"{task_id} rep {rep}: synthetic={synthetic} wall={r.get('eval_wall_s')} cpu={r.get('eval_cpu_s')} "
            f"value={r.get('value', r.get('error'))} threads={os.environ.get('OMP_NUM_THREADS', 'default')}",
            flush=True,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("tasks", nargs="+")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()
    for task_id in args.tasks:
        with tempfile.TemporaryDirectory(prefix=f"onegc-ref-{task_id}-", dir=args.work) as tmp:
            measure(task_id, Path(tmp), args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
