"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

import json
import subprocess
import sys

from tests.conftest import needs_root

CLI = [sys.executable, "-c", "from onegc.audit.cli import main; main()"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def test_verify_missing_run_dir_is_one_line_and_exit_2(tmp_path):
    res = cli("verify", str(tmp_path / "nope"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "no such run directory" in res.stderr
    assert "Traceback" not in res.stderr


def test_verify_a_directory_that_is_not_a_run(tmp_path):
    res = cli("verify", str(tmp_path), "--json")
    assert res.returncode == 2 and "not a run directory" in res.stderr


def test_unknown_agent_and_task_are_one_line_errors(runs_dir):
    res = cli("run", "--task", "t6", "--agent", "nobody", "--runs-dir", str(runs_dir))
    assert res.returncode == 2 and "unknown agent" in res.stderr and "Traceback" not in res.stderr
    res = cli("run", "--task", "t99", "--agent", "command", "--runs-dir", str(runs_dir), "--", "true")
    assert res.returncode == 2 and "Traceback" not in res.stderr


@needs_root
def test_run_then_verify_json_then_refuse_reuse(runs_dir, tmp_path):
    args = ["run", "--task", "t6", "--agent", "command", "--label", "mybot", "--rep", "1",
            "--runs-dir", str(runs_dir), "--budget-s", "60", "--synthetic",
            "--data-dir", str(tmp_path / "data"), "--", "bash", "-c", "ls > listing.txt"]
    res = cli(*args)
    assert res.returncode == 3, res.stdout + res.stderr  # no checkpoint: verdict no_score
    assert "no_score" in res.stdout
    run_dir = runs_dir / "mybot" / "t6" / "r1"
    listing = (run_dir / "workspace" / "listing.txt").read_text().split()
    assert {"prepare.py", "train.py", "program.md"} <= set(listing)
    res = cli("verify", str(run_dir), "--json")
    assert res.returncode == 3  # no_score: the rules pass, no official score yet
    assert json.loads(res.stdout)["status"] == "no_score"
    again = cli(*args)
    assert again.returncode == 2 and "never reused" in again.stderr
    (run_dir / "manifest.json").write_text("{not json")
    res = cli("verify", str(run_dir), "--json")
    assert res.returncode == 6 and json.loads(res.stdout)["status"] == "tampered"
