"""A local sweep with the scripted agent on synthetic data: killed mid-run, resumed with no
duplicate runs, the interrupted cell reported and retried only when asked."""

import json
import os
import signal
import subprocess
import sys
import time

from onegc.audit import sweep
from tests.conftest import needs_root

pytestmark = needs_root

CLI = [sys.executable, "-m", "onegc.audit"]


def _sweep(runs_dir, data_dir, *extra: str, wait: bool = True):
    argv = [*CLI, "sweep", "run", "--agents", "scripted:baseline", "--tasks", "t6", "--reps", "2",
            "--runs-dir", str(runs_dir), "--synthetic", "--env", "ONEGC_SMOKE=1", *extra]
    env = {**os.environ, "ONEGC_DATA_DIR": str(data_dir)}
    if wait:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _status(runs_dir) -> dict:
    res = subprocess.run([*CLI, "sweep", "status", str(runs_dir), "--json"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    return row


def test_killed_sweep_resumes_without_duplicates(runs_dir, tmp_path):
    data = tmp_path / "data"
    first = _sweep(runs_dir, data, wait=False)
    r1 = runs_dir / "scripted-baseline" / "t6" / "r1"
    for _ in range(1200):
        if (r1 / "agent" / "stdout.log").exists():
            break
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the node dies: sweep, cell and harness at once
    first.wait()
    time.sleep(1)
    assert _status(runs_dir) == {"agent": "scripted-baseline", "task": "t6", "incomplete": 1, "todo": 1}

    resumed = _sweep(runs_dir, data)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "r1: skipped (incomplete" in resumed.stdout
    assert _status(runs_dir) == {"agent": "scripted-baseline", "task": "t6", "incomplete": 1, "done": 1}

    again = _sweep(runs_dir, data, "--retry-incomplete")
    assert "r2: skipped (sealed)" in again.stdout
    assert _status(runs_dir) == {"agent": "scripted-baseline", "task": "t6", "done": 2}
    (kept,) = list((runs_dir / ".attic").iterdir())  # the interrupted run is kept, not deleted
    # its own filesystems, left mounted by the dead harness, were copied back into plain folders
    assert not (kept / "fs").exists() and not os.path.ismount(kept / "workspace"), list(kept.iterdir())
    assert (kept / "workspace" / "prepare.py").is_file()


def test_a_held_cell_is_not_run_twice(runs_dir):
    cell = sweep.Cell("scripted:baseline", "scripted-baseline", "t6", 1)
    with sweep.claim(runs_dir, cell) as mine:
        assert mine
        assert sweep.state(runs_dir, cell) == "running"
        assert sweep.run_cell(runs_dir, cell, [], None, False) == "running elsewhere"
    assert sweep.state(runs_dir, cell) == "todo"
