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


def test_help_loads_no_heavy_module_and_every_command_row_resolves():
    """Commands load lazily: `--help` imports neither duckdb, polars nor torch, and every row of
    the COMMANDS table names a real command (a typo fails here, not in front of a user)."""
    probe = ("import sys; from onegc.audit import cli; sys.argv = ['onegc-audit', '--help']\n"
             "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
             "print('HEAVY', sorted(m for m in ('duckdb', 'polars', 'torch', 'numpy') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in res.stdout, res.stdout + res.stderr
    from onegc.audit.cli import COMMANDS, load_command

    for name in COMMANDS:
        assert load_command(name).name == name


def test_every_command_that_prints_a_result_takes_json_and_writes_with_out():
    """One spelling: --json wherever a result is printed, --out wherever a file is written."""
    from onegc.audit.cli import COMMANDS, load_command

    leaves = []
    for name in COMMANDS:
        cmd = load_command(name)
        subs = getattr(cmd, "commands", None)
        leaves += [(f"{name} {s}", c) for s, c in subs.items()] if subs else [(name, cmd)]
    for name, cmd in leaves:
        flags = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert "--json" in flags, name
        assert not {"--output", "--out-file", "--output-file"} & flags, name
        assert "-o" not in flags or "--out" in flags, name


def test_rules_explain_lists_the_tables_the_engine_skips_a_check_for():
    """One answer to "which tables does this rule read": the engine's, through its views (W3 reads
    execs through training_launches, which no regex over FROM clauses would see)."""
    from onegc.rules.engine import load_rules, rule_tables

    for r in load_rules():
        res = cli("rules", "explain", r.id, "--json")
        assert set(json.loads(res.stdout)["evidence"]) == rule_tables(r), r.id
    assert {"execs", "harness_events"} <= rule_tables(next(r for r in load_rules() if r.id == "W3"))
