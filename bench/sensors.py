"""Sensor overhead: the same workloads unmonitored and monitored, interleaved, in one run.

    python bench/sensors.py [--reps 5] [--tmpfs] [--sensor fanotify|inotify] [--only WORKLOAD]
                                                                                    (as root)

Unmonitored, a workload runs with the same interpreter and PATH the agent gets, in a plain
folder beside the runs, on the disk that holds them (or, with --tmpfs, runs and folder on a
tmpfs); monitored, it is the agent of a real run, whose workspace is the run's own filesystem
(harness/runfs.py). Each workload times itself (the harness's set-up is not part of the ratio)
and the script prints median ratios monitored/unmonitored plus the evidence counts and
losses. Targets (issue 13.8): training-like <= 1.02x, exec-heavy <= 1.4x, file-heavy <= 1.10x,
events lost = 0.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import duckdb

from onegc.harness.monitor import run_monitored
from onegc.harness.spec import RunSpec, create_run_dir
from onegc.harness.steps.sandbox import agent_path

BASE = Path("/var/lib/onegc-audit/bench")

TRAINING = r"""
import time, numpy as np, os
t = time.perf_counter()
rng = np.random.default_rng(0)
np.save("data.npy", rng.standard_normal((2000, 512), dtype=np.float32))
w = rng.standard_normal((512, 512), dtype=np.float32) * 0.01
os.makedirs("checkpoints", exist_ok=True)
for step in range(400):
    x = np.load("data.npy", mmap_mode="r")[(step * 64) % 1900:(step * 64) % 1900 + 64]
    for _ in range(20):
        w -= 1e-4 * (x.T @ np.tanh(x @ w))
    if step % 40 == 0:
        np.save(f"checkpoints/ckpt_{step}.npy", w)
print(time.perf_counter() - t)
"""
EXEC_HEAVY = (
    "s=$EPOCHREALTIME; for i in $(seq 2000); do /bin/true; done; "
    'e=$EPOCHREALTIME; awk "BEGIN{print $e-$s}"'
)
FILE_HEAVY = r"""
import os, time
t = time.perf_counter()
for d in range(100):
    os.makedirs(f"files/d{d}")
    for i in range(200):
        with open(f"files/d{d}/f{i}", "wb") as fh:
            fh.write(b"x" * 1024)
print(time.perf_counter() - t)
"""
WORKLOADS = {
    "training-like": ["python3", "-c", TRAINING],
    "exec-heavy": ["bash", "-c", EXEC_HEAVY],
    "file-heavy": ["python3", "-c", FILE_HEAVY],
}


# One BLAS thread in both modes: on a small VM the library's own thread count swings the
# training-like time by 2x from run to run (measured 4.3 s to 10 s), which would drown the sensors.
PINNED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def plain(argv: list[str]) -> float:
    env = {**os.environ, "PATH": agent_path(), "PYTHONUNBUFFERED": "1", **PINNED}
    with tempfile.TemporaryDirectory(dir=BASE) as d:
        out = subprocess.run(argv, cwd=d, capture_output=True, text=True, check=True, env=env).stdout
    return float(out.split()[-1])


def monitored(argv: list[str], name: str, rep: int) -> tuple[float, dict]:
    runs = BASE / "runs"
    run_dir = create_run_dir(runs, "bench", name, rep)
    run_monitored(RunSpec(run_dir, argv, "bench", name, rep, budget_s=600, grace_s=1, env=dict(PINNED)))
    elapsed = float((run_dir / "agent" / "stdout.log").read_text().split()[-1])
    con = duckdb.connect(str(run_dir / "evidence.duckdb"), read_only=True)
    counts = {
        "execs": con.execute("SELECT count(*) FROM execs WHERE NOT probe").fetchone()[0],
        "file_events": con.execute("SELECT count(*) FROM file_events").fetchone()[0],
        "lost": con.execute("SELECT coalesce(sum(value), 0) FROM sensor_health WHERE lossy").fetchone()[0],
    }
    con.close()
    return elapsed, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tmpfs", action="store_true", help="runs and the unmonitored folder on a tmpfs, not the disk")
    ap.add_argument("--sensor", default="fanotify", choices=["fanotify", "inotify"], help="the file sensor")
    ap.add_argument("--only", action="append", choices=list(WORKLOADS), help="run only these workloads")
    args = ap.parse_args()
    os.environ["ONEGC_FILE_SENSOR"] = args.sensor
    if os.path.ismount(BASE):  # left by a bench that was stopped half-way
        subprocess.run(["umount", "-l", str(BASE)], check=True)
    shutil.rmtree(BASE, ignore_errors=True)
    BASE.mkdir(parents=True)
    if args.tmpfs:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(BASE)], check=True)
    results = {}
    for name, argv in WORKLOADS.items():
        if args.only and name not in args.only:
            continue
        base, mon, counts = [], [], {}
        for rep in range(1, args.reps + 1):  # interleaved, so drift hits both alike
            base.append(plain(argv))
            t, counts = monitored(argv, name, rep)
            mon.append(t)
        results[name] = {
            "unmonitored_s": round(statistics.median(base), 4),
            "monitored_s": round(statistics.median(mon), 4),
            "ratio": round(statistics.median(mon) / statistics.median(base), 3),
            **counts,
        }
        print(
            f"{name:14s} unmonitored {results[name]['unmonitored_s']:8.3f}s  monitored "
            f"{results[name]['monitored_s']:8.3f}s  ratio {results[name]['ratio']:.3f}x  "
            f"execs {counts['execs']}  file events {counts['file_events']}  lost {counts['lost']}",
            flush=True,
        )
    print(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M"), "fs": "tmpfs" if args.tmpfs else "disk",
                      "sensor": args.sensor, "results": results}))
    if args.tmpfs:
        subprocess.run(["umount", "-l", str(BASE)], check=False)
    shutil.rmtree(BASE, ignore_errors=True)


if __name__ == "__main__":
    main()
