"""Long work shows a live line on a terminal, and nothing extra when its output is not one
(a pipe, a file) or with --json: checked on a real pseudo-terminal with real runs."""

import fcntl
import os
import struct
import subprocess
import sys
import termios

import pytest

from tests.conftest import needs_root

CLI = [sys.executable, "-m", "onegc.audit"]
AGENT = "mkdir -p checkpoints; for i in 1 2 3 4; do ls > /dev/null; touch checkpoints/c$i.pt; sleep 1; done"


def on_pty(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run args with stdin, stdout and stderr on a fresh pseudo-terminal; what the terminal got."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=600), out.decode(errors="replace")


def run_args(runs_dir, data, rep: int, *extra: str) -> list[str]:
    return [*CLI, "run", "--task", "t6", "--agent", "command", "--label", "live", "--rep", str(rep),
            "--runs-dir", str(runs_dir), "--budget-s", "60", "--synthetic", "--data-dir", str(data), *extra,
            "--", "bash", "-c", AGENT]


@needs_root
def test_run_shows_a_live_line_on_a_terminal_only(runs_dir, tmp_path):
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "200"}
    env.pop("NO_COLOR", None)
    code, screen = on_pty(run_args(runs_dir, tmp_path / "data", 1), env)
    assert code == 3, screen  # no_score: nothing the official evaluator can load
    live = [ln for ln in screen.replace("\r", "\n").splitlines() if "file events" in ln]
    assert live, screen
    assert any("/ 1:00" in ln and "processes" in ln and "network attempts 0" in ln for ln in live), live
    assert any("checkpoints " in ln and "checkpoints 0" not in ln for ln in live), live
    piped = subprocess.run(run_args(runs_dir, tmp_path / "data", 2), capture_output=True, text=True, timeout=600)
    assert piped.returncode == 3 and "file events" not in piped.stdout + piped.stderr
    code, screen = on_pty(run_args(runs_dir, tmp_path / "data", 3, "--json"), env)
    assert code == 3 and "file events" not in screen


def test_a_tree_import_shows_its_progress_on_a_terminal_only(tmp_path):
    import shutil
    from pathlib import Path

    fixtures = Path(__file__).parents[1] / "importer" / "fixtures"
    for fmt in ("claude", "codex", "opencode"):
        shutil.copytree(fixtures / fmt / "violating", tmp_path / "tree" / fmt / "t2" / "r1")
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "200"}

    def args(runs: str) -> list[str]:
        return [*CLI, "import", str(tmp_path / "tree"), "--runs-dir", str(tmp_path / runs),
                "--agent-from-path", "{agent}/{task}/r{rep}"]

    code, screen = on_pty(args("runs1"), env)
    assert code == 0 and "importing: folder" in screen and "3 imported" in screen, screen
    piped = subprocess.run(args("runs2"), capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0 and "3 imported" in piped.stdout
    assert "importing: folder" not in piped.stdout + piped.stderr


@pytest.mark.parametrize("name", ["sql", "query"])
def test_index_refresh_progress_only_on_a_terminal(tmp_path, name):
    """The refresh line needs new runs to index: an imported transcript is one."""
    from pathlib import Path

    from onegc.audit import importer

    fixtures = Path(__file__).parents[1] / "importer" / "fixtures"
    runs = tmp_path / "runs"
    for n, fmt in enumerate(("claude", "codex", "opencode"), 1):
        importer.import_one(importer.source_of(fixtures / fmt / "violating"), runs, fmt, "t2", n)
    args = [*CLI, name, "SELECT count(*) FROM runs" if name == "sql" else "install-attempts", str(runs)]
    piped = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0 and "indexing new runs" not in piped.stdout + piped.stderr
    (runs / ".index").rename(tmp_path / "old-index")  # index afresh, now on a terminal
    code, screen = on_pty(args, {**os.environ, "TERM": "xterm", "COLUMNS": "200"})
    assert code == 0 and "indexing new runs" in screen, screen
