"""A file storm through a real ``onegc-audit run``: does the file sensor lose anything, and how
long does ``verify`` take on the record?

    python bench/file_storm.py [--dirs 250] [--files-per-dir 1000] [--sensor fanotify|inotify]
                               [--runs-dir /var/lib/onegc-audit/bench-storm] [--keep]   (as root)

The agent (``--agent command`` on T6, synthetic data) creates, writes, closes and deletes
DIRS x FILES_PER_DIR files in DIRS new folders (issue 13.8: 250 x 1000, about 1,000,000
events). Printed: the agent's own storm time and the same storm's unmonitored (same
interpreter, a plain folder beside the runs), the run's wall time, events recorded, what is
missing (a file of the storm without its create, close_write or delete, or one without the
writer's pid), overflows, attribution counts, and the wall time of ``onegc-audit verify``.
Targets: nothing lost, verify <= 10 s.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from onegc.harness.steps.sandbox import agent_path

STORM = r"""
import json, os, sys, time
dirs, per = int(sys.argv[1]), int(sys.argv[2])
t = time.perf_counter()
for d in range(dirs):
    os.makedirs(f"storm/d{d}")
    for i in range(per):
        with open(f"storm/d{d}/f{i}", "wb") as fh:
            fh.write(b"x" * 64)
    for i in range(per):
        os.unlink(f"storm/d{d}/f{i}")
print(json.dumps({"storm_s": time.perf_counter() - t}))
time.sleep(1)
"""


def cli() -> list[str]:
    return [sys.executable, "-m", "onegc.audit"]


def unmonitored(runs_dir: Path, dirs: int, per: int) -> float:
    """The same storm with the same interpreter in a plain folder beside the runs."""
    folder = runs_dir / "unmonitored"
    folder.mkdir()
    env = {**os.environ, "PATH": agent_path()}
    out = subprocess.run(["python3", "-c", STORM, str(dirs), str(per)], cwd=folder, env=env,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    shutil.rmtree(folder)
    return json.loads(out.strip().splitlines()[-1])["storm_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dirs", type=int, default=250)
    ap.add_argument("--files-per-dir", type=int, default=1000)
    ap.add_argument("--sensor", default="fanotify", choices=["fanotify", "inotify"])
    ap.add_argument("--runs-dir", type=Path, default=Path("/var/lib/onegc-audit/bench-storm"))
    ap.add_argument("--keep", action="store_true", help="keep the run folder")
    a = ap.parse_args()
    shutil.rmtree(a.runs_dir, ignore_errors=True)
    a.runs_dir.mkdir(parents=True)
    env = {**os.environ, "ONEGC_FILE_SENSOR": a.sensor}
    argv = [*cli(), "run", "--task", "t6", "--agent", "command", "--synthetic", "--runs-dir", str(a.runs_dir),
            "--budget-s", "900", "--grace-s", "5", "--label", "storm", "--json",
            "--", "python3", "-c", STORM, str(a.dirs), str(a.files_per_dir)]  # fmt: skip
    plain_s = unmonitored(a.runs_dir, a.dirs, a.files_per_dir)
    t0 = time.monotonic()
    run = subprocess.run(argv, env=env, capture_output=True, text=True)
    run_wall = time.monotonic() - t0
    run_dir = a.runs_dir / "storm" / "t6" / "r1"
    if not (run_dir / "evidence.duckdb").exists():
        sys.exit(f"the run left no evidence (exit {run.returncode}): {run.stderr.strip()[-400:]}")
    agent = json.loads((run_dir / "agent" / "stdout.log").read_text().strip().splitlines()[-1])
    t0 = time.monotonic()
    ver = subprocess.run([*cli(), "verify", "--json", str(run_dir)], capture_output=True, text=True)
    verify_s = time.monotonic() - t0
    status = json.loads(ver.stdout).get("status") if ver.stdout.strip().startswith("{") else ver.stdout[-200:]
    con = duckdb.connect(str(run_dir / "evidence.duckdb"), read_only=True)
    storm_files = "regexp_matches(path, '/storm/d[0-9]+/f[0-9]+$')"
    # the writer's pid as the host sees it (the agent's own os.getpid() is its pid namespace's)
    writer = con.execute("SELECT pid FROM execs WHERE NOT probe AND argv[2] = '-c' ORDER BY seq LIMIT 1").fetchone()[0]
    per_event = dict(
        con.execute(
            f"SELECT event, count(DISTINCT path) FROM file_events WHERE {storm_files} GROUP BY event"
        ).fetchall()
    )
    with_pid = dict(
        con.execute(
            f"SELECT event, count(DISTINCT path) FROM file_events WHERE {storm_files} AND pid = ? GROUP BY event",
            [writer],
        ).fetchall()
    )
    attribution = dict(
        con.execute("SELECT coalesce(attribution, 'n/a'), count(*) FROM file_events GROUP BY 1").fetchall()
    )
    health = dict(con.execute("SELECT counter, value FROM sensor_health WHERE sensor = 'fswatch'").fetchall())
    total = con.execute("SELECT count(*) FROM file_events").fetchone()[0]
    con.close()
    n = a.dirs * a.files_per_dir
    need = ("create", "close_write", "delete")
    lost = {ev: n - per_event.get(ev, 0) for ev in need}
    no_pid = {ev: n - with_pid.get(ev, 0) for ev in need} if a.sensor == "fanotify" else "n/a (inotify names none)"
    out = {
        "sensor": a.sensor,
        "files": n,
        "storm_s": round(agent["storm_s"], 2),
        "unmonitored_storm_s": round(plain_s, 2),
        "ratio": round(agent["storm_s"] / plain_s, 3),
        "run_wall_s": round(run_wall, 2),
        "file_events_rows": total,
        "lost": lost,
        "without_writer_pid": no_pid,
        "overflows": health.get("overflows"),
        "attribution": attribution,
        "verify_s": round(verify_s, 2),
        "verify_status": status,
    }
    print(
        f"{a.sensor}: {n} files, storm {out['storm_s']} s (unmonitored {out['unmonitored_storm_s']} s, "
        f"{out['ratio']}x), run wall {out['run_wall_s']} s, rows {total}, "
        f"lost {lost}, without writer pid {no_pid}, overflows {out['overflows']}, verify {out['verify_s']} s "
        f"({status})"
    )
    print(json.dumps(out))
    if not a.keep:
        shutil.rmtree(a.runs_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
