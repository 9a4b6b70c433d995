"""The Slurm executor against a real single-node Slurm (tests/slurm/start_slurm.sh)."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import needs_root

pytestmark = [
    needs_root,
    pytest.mark.skipif(shutil.which("sinfo") is None, reason="no Slurm here: run tests/slurm/start_slurm.sh"),
]
CLI = [sys.executable, "-m", "onegc.audit"]


def _slurm_up() -> bool:
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
    return res.returncode == 0 and any(s in res.stdout for s in ("idle", "mixed", "allocated"))


def test_small_sweep_submitted_run_and_reported(runs_dir, tmp_path):
    pytest.importorskip("submitit")
    if not _slurm_up():
        pytest.skip("slurmctld/slurmd are not running: run tests/slurm/start_slurm.sh")
    env = {**os.environ, "ONEGC_DATA_DIR": str(tmp_path / "data")}
    res = subprocess.run(
        [*CLI, "sweep", "run", "--executor", "slurm", "--partition", "debug", "--gpus-per-run", "0",
         "--agents", "scripted:baseline", "--tasks", "t6", "--reps", "2", "--runs-dir", str(runs_dir),
         "--synthetic", "--env", "ONEGC_SMOKE=1"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "submitted 2 Slurm jobs" in res.stdout
    arrays = {j.split("_")[0] for j in res.stdout.strip().split(": ")[-1].split(", ")}
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", ",".join(arrays)], capture_output=True, text=True)
        if not queue.stdout.strip():
            break
        time.sleep(2)
    status = subprocess.run([*CLI, "sweep", "status", str(runs_dir), "--json"], capture_output=True,
                            text=True, timeout=120)
    assert json.loads(status.stdout) == [{"agent": "scripted-baseline", "task": "t6", "done": 2}]
