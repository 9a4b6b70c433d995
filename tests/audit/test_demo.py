"""The demo as a newcomer meets it: started from a folder under /tmp, on synthetic data (no
offline copy of the real data), it still runs (its ./runs is carried into the agent's view),
says where it wrote, and every place a user reads the score (run output, result.json, verify
plain and --json, review, sql, the leaderboard) says the data was synthetic."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.slow]


def test_demo_from_a_folder_under_tmp_marks_synthetic_everywhere(runs_dir: Path, tmp_path: Path) -> None:
    assert str(tmp_path).startswith("/tmp/")
    no_real_data = runs_dir / "no-shared-data"
    no_real_data.mkdir()
    env = {
        **os.environ,
        "ONEGC_SHARED_DATA": str(no_real_data),  # no offline copy: the demo falls back to synthetic data
        "ONEGC_DATA_DIR": str(runs_dir / "data"),
        "COLUMNS": "200",
    }

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "onegc.audit", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip

    demo = cli("demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    run_dir = tmp_path / "runs" / "scripted-baseline" / "t6" / "r1"
    assert f"the run is in {run_dir}" in demo.stdout
    assert "official score on SYNTHETIC data" in demo.stdout and "data: SYNTHETIC" in demo.stdout
    assert "Table 4 (SYNTHETIC data)" in demo.stdout  # the one-row leaderboard says it too

    data = json.loads((run_dir / "result.json").read_text())["data"]
    assert data["kind"] == "synthetic" and data["version"].startswith("synthetic-")

    verify = cli("verify", str(run_dir))
    assert verify.returncode == 0 and "data: SYNTHETIC" in verify.stdout, verify.stdout + verify.stderr
    as_json = json.loads(cli("verify", str(run_dir), "--json").stdout)
    assert as_json["status"] == "accepted" and as_json["data"] == data

    review = cli("review", str(run_dir))
    assert review.returncode == 0 and "data: SYNTHETIC" in review.stdout, review.stderr

    sql = cli("sql", "SELECT status, data FROM verdicts", str(tmp_path / "runs"),
              "--format", "json")
    assert [(r["status"], r["data"]) for r in json.loads(sql.stdout)] == [("accepted", "synthetic")], sql.stderr

    board = cli("aggregate", str(tmp_path / "runs"), "--format", "json")
    boards = json.loads(board.stdout)["boards"]
    assert [b["data"] for b in boards] == ["synthetic"]
    assert [(a["agent"], a["rank"]) for a in boards[0]["agents"]] == [("scripted-baseline", 1)]
