"""Every command of the README's table, given a typical mistake, in a subprocess: one line on
stderr, no traceback, and the exit code the README documents (2: bad input). Only bugs exit 1.

``mistakes`` is shared with the fresh-install test (tests/test_fresh_install.py), which runs
the same list against a brand-new virtualenv; where that test runs (CI), the list is not run
a second time here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def make_inputs(tmp: Path) -> Path:
    """The files the mistakes point at, in ``tmp``."""
    (tmp / "not-a-run").mkdir(exist_ok=True)
    (tmp / "runs").mkdir(exist_ok=True)
    (tmp / "notes.txt").write_text("hello, these are notes and no transcript\n")
    (tmp / "results.csv").write_text("agent,task,rep,status,score\nA,t1,1,won,1\n")
    return tmp


def mistakes(tmp: Path) -> list[tuple[str, list[str], int, str]]:
    """(name, argv after `onegc-audit`, exit code, a word the one line must hold), for the
    inputs ``make_inputs(tmp)`` wrote."""
    not_a_run, runs, data = tmp / "not-a-run", tmp / "runs", str(tmp / "data")
    return [
        ("unknown command", ["frob"], 2, "frob"),
        ("unknown option", ["verify", str(not_a_run), "--frob"], 2, "--frob"),
        ("demo unknown option", ["demo", "--budget", "5", "--data-dir", data], 2, "--budget"),
        ("run missing --agent", ["run", "--task", "t6"], 2, "--agent"),
        ("run unknown task", ["run", "--task", "t99", "--agent", "command", "--data-dir", data, "--", "true"], 2,
         "t99"),
        ("run unknown agent", ["run", "--task", "t6", "--agent", "nosuch", "--data-dir", data], 2, "nosuch"),
        ("run bad --rep", ["run", "--task", "t6", "--agent", "command", "--rep", "x", "--", "true"], 2, "--rep"),
        ("run bad --env", ["run", "--task", "t6", "--agent", "command", "--env", "NOEQUALS", "--data-dir", data,
                           "--", "true"], 2, "NOEQUALS"),
        ("run zero budget", ["run", "--task", "t6", "--agent", "command", "--budget-s", "0", "--data-dir", data,
                             "--runs-dir", str(runs), "--", "true"], 2, "budget"),
        ("verify missing dir", ["verify", str(tmp / "nonexistent")], 2, "nonexistent"),
        ("verify not a run", ["verify", str(not_a_run)], 2, "not-a-run"),
        ("verify missing policy", ["verify", str(not_a_run), "--policy", str(tmp / "nopolicy.toml")], 2,
         "nopolicy"),
        ("verify missing argument", ["verify"], 2, "RUN_DIR"),
        ("rules explain unknown", ["rules", "explain", "R99"], 2, "R99"),
        ("review missing dir", ["review", str(tmp / "nonexistent")], 2, "nonexistent"),
        ("review bad format", ["review", str(not_a_run), "--format", "pdf"], 2, "pdf"),
        ("score without --why", ["score", str(not_a_run)], 2, "--why"),
        ("score not a run", ["score", str(not_a_run), "--why", "test"], 2, "not-a-run"),
        ("aggregate missing dir", ["aggregate", str(tmp / "nonexistent")], 2, "nonexistent"),
        ("aggregate bad format", ["aggregate", str(runs), "--format", "xml"], 2, "xml"),
        ("aggregate bad results", ["aggregate", "--results", str(tmp / "results.csv")], 2, "won"),
        ("aggregate nothing", ["aggregate"], 2, "--results"),
        ("sql refused", ["sql", "DROP TABLE runs", str(runs)], 2, "SELECT"),
        ("sql missing dir", ["sql", "SELECT 1", str(tmp / "nonexistent")], 2, "nonexistent"),
        ("query unknown", ["query", "nosuchquery", str(runs)], 2, "nosuchquery"),
        ("import missing path", ["import", str(tmp / "nonexistent"), "--runs-dir", str(runs)], 2, "nonexistent"),
        ("import not a transcript", ["import", str(tmp / "notes.txt"), "--runs-dir", str(runs), "--agent", "a",
                                     "--task", "t6", "--rep", "1"], 2, "notes.txt"),
        ("sweep plan unknown agent", ["sweep", "plan", "--agents", "nosuch", "--runs-dir", str(runs)], 2, "nosuch"),
        ("sweep plan unknown task", ["sweep", "plan", "--agents", "command", "--tasks", "t99", "--runs-dir",
                                     str(runs)], 2, "t99"),
        ("agents unknown subcommand", ["agents", "frob"], 2, "frob"),
        ("tasks prepare unknown", ["tasks", "prepare", "t99", "--data-dir", data], 2, "t99"),
        ("seal missing dir", ["seal", str(tmp / "nonexistent"), "--recover"], 2, "nonexistent"),
    ]


def check(proc: subprocess.CompletedProcess, code: int, word: str) -> None:
    """One line on stderr that names what was wrong, no traceback, the documented code."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith("onegc-audit: ") and "internal error" not in lines[0], lines[0]
    assert word.lower() in lines[0].lower(), lines[0]


def cli(
    python: str | Path, argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "onegc.audit", *argv], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})}, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("mistakes"))


@pytest.mark.skipif(
    bool(os.environ.get("ONEGC_TEST_WHEELHOUSE")) and os.geteuid() == 0,
    reason="tests/test_fresh_install.py runs every mistake against a brand-new install (CI)",
)
@pytest.mark.parametrize("name", [m[0] for m in mistakes(Path("/unused"))])
def test_typical_mistake_is_one_line_and_its_exit_code(name: str, folder: Path) -> None:
    _, argv, code, word = next(m for m in mistakes(folder) if m[0] == name)
    check(cli(sys.executable, argv, folder), code, word)


def test_a_bad_argument_leaves_the_data_cache_untouched(folder: Path) -> None:
    data, runs = folder / "untouched-data", folder / "untouched-runs"
    for argv, word in (
        (["--agent", "nosuch"], "nosuch"),
        (["--agent", "command", "--label", "bad/label", "--", "true"], "bad/label"),
        (["--agent", "command", "--rep", "0", "--", "true"], "rep"),
    ):
        proc = cli(sys.executable, ["run", "--task", "t6", "--data-dir", str(data), "--runs-dir", str(runs), *argv],
                   folder)  # fmt: skip
        check(proc, 2, word)
        assert not data.exists() and not runs.exists()


def test_a_bug_is_exit_1_with_the_debug_hint(folder: Path) -> None:
    """A crash inside a command (a planted command that raises) is a bug: one line saying so,
    the hint to rerun with ONEGC_DEBUG=1, which shows the traceback."""
    code = (
        "import sys, types; from onegc.audit import cli\n"
        "planted = types.ModuleType('onegc.audit.planted_bug')\n"
        "def boom() -> None:\n    raise RuntimeError('planted bug')\n"
        "planted.boom = boom; sys.modules[planted.__name__] = planted\n"
        "cli.COMMANDS['boom'] = ('planted_bug:boom', 'a command with a bug')\n"
        "sys.argv = ['onegc-audit', 'boom']; cli.main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=folder)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert re.search(r"internal error: .*planted bug.*ONEGC_DEBUG=1", proc.stderr), proc.stderr
    debug = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=folder,
                           env={**os.environ, "ONEGC_DEBUG": "1"})  # fmt: skip
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "planted bug" in debug.stderr
