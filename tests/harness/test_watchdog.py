"""The watchdog and the failure modes of the harness itself."""

import os
import signal
import subprocess
import sys
import time
import uuid

import psutil

from onegc.evidence.integrity import verify_run
from tests.conftest import monitored, needs_root
from tests.evidencedb import rows

pytestmark = needs_root


def _alive_with(command: str) -> list[psutil.Process]:
    """Processes whose command line is exactly `command`."""
    return [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or []) == command.split()]


def _harness_script(runs_dir, script: str, budget_s: float) -> str:
    """Python source that runs one monitored run in a harness process we can kill."""
    return (
        f"import sys; from pathlib import Path; sys.path.insert(0, {os.getcwd()!r})\n"
        "from tests.conftest import monitored\n"
        f"monitored(Path({str(runs_dir)!r}), {script!r}, budget_s={budget_s})\n"
    )


def test_setsid_escapee_is_killed_at_the_budget_and_recorded(runs_dir):
    marker = f"{1000 + uuid.uuid4().int % 8000}"  # a unique sleep length identifies our processes
    run = monitored(
        runs_dir, f"nohup setsid sleep {marker} >/dev/null 2>&1 & sleep {marker}", budget_s=2, grace_s=1
    )
    assert not _alive_with(f"sleep {marker}")
    survivors = rows(
        run, "SELECT argv, detail->>'stage', detail->>'session' FROM harness_events WHERE kind = 'survivor'"
    )
    sleeps = [r for r in survivors if r[1] == "alive_at_deadline" and r[0] == ["sleep", marker]]
    assert len(sleeps) == 2
    assert len({r[2] for r in sleeps}) == 2, "the setsid escapee runs in a session of its own"
    assert rows(run, "SELECT end_reason FROM run") == [("deadline",)]


def test_process_ignoring_sigterm_is_killed_after_the_grace(runs_dir):
    run = monitored(runs_dir, "trap '' TERM; sleep 1000 & wait; sleep 1000", budget_s=2, grace_s=1)
    stages = {r[0] for r in rows(run, "SELECT detail->>'stage' FROM harness_events WHERE kind='survivor'")}
    assert "alive_after_grace" in stages
    assert rows(run, "SELECT count(*) FROM harness_events WHERE kind = 'sigkill'") == [(1,)]


def test_killed_harness_leaves_no_process_and_an_incomplete_run(runs_dir):
    """SIGKILL the harness: nothing of the run lives on; `seal --recover` seals what the
    journals hold and copies the agent's files back from the run's own filesystems, which
    outlive the harness (a mount in its namespace), into plain folders."""
    marker = f"{1000 + uuid.uuid4().int % 8000}"
    code = _harness_script(runs_dir, f"echo kept > kept.txt; setsid sleep {marker} & sleep {marker}", 600)
    harness = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(300):
        if len(_alive_with(f"sleep {marker}")) == 2:
            break
        time.sleep(0.05)
    assert len(_alive_with(f"sleep {marker}")) == 2
    harness.send_signal(signal.SIGKILL)
    harness.wait()
    deadline = time.monotonic() + 5
    while _alive_with(f"sleep {marker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive_with(f"sleep {marker}")
    run_dir = runs_dir / "tester" / "t0" / "r1"
    report = verify_run(run_dir)
    assert report.status == "incomplete"
    assert "never sealed" in report.incomplete_reasons[0]
    recovered = subprocess.run([sys.executable, "-c", "from onegc.audit.cli import main; main()", "seal",
                                str(run_dir), "--recover"], capture_output=True, text=True, timeout=60)
    assert recovered.returncode == 5, recovered.stderr  # sealed, and still incomplete
    assert "copied back from the run's own filesystems: workspace, scratch" in recovered.stdout, recovered.stdout
    ws = run_dir / "workspace"
    assert not os.path.ismount(ws) and not os.path.ismount(run_dir / "scratch") and not (run_dir / "fs").exists()
    assert (ws / "kept.txt").read_text() == "kept\n"
    report = verify_run(run_dir)
    assert (report.status, report.sealed) == ("incomplete", True)
    sleeps = f"SELECT count(*) FROM execs WHERE NOT probe AND argv = ['sleep', '{marker}']"
    assert rows(run_dir, sleeps) == [(2,)]


def test_dead_supervisor_makes_later_execs_fail_closed(runs_dir):
    """Kill the seccomp supervisor mid-run: the agent's next exec must fail (ENOSYS), not
    hang and not run unrecorded; the run is incomplete."""
    run_dir = runs_dir / "tester" / "t0" / "r1"
    code = _harness_script(
        runs_dir, "touch started; while [ ! -e go ]; do :; done; /bin/true; echo $? > rc", 60
    )
    harness = subprocess.Popen([sys.executable, "-c", code])
    ws = run_dir / "workspace"
    for _ in range(600):
        if (ws / "started").exists():
            break
        time.sleep(0.05)
    sup = next(
        p
        for p in psutil.process_iter(["cmdline"])
        if "onegc.harness.supervisor" in (p.info["cmdline"] or []) and str(run_dir) in p.info["cmdline"]
    )
    sup.kill()
    sup.wait(5)
    agent = next(
        p
        for p in psutil.process_iter(["cmdline"])
        if (p.info["cmdline"] or [""])[0] == "bash" and "while [ ! -e go ]" in " ".join(p.info["cmdline"])
    )
    # through the agent's own view: its workspace is an overlay there, which a write into the
    # folder underneath would bypass (harness/fanwatch.py)
    open(f"/proc/{agent.pid}/root{ws}/go", "w").close()
    assert harness.wait(timeout=60) == 0
    assert (ws / "rc").read_text().strip() == "126"  # bash: exec failed (ENOSYS)
    assert not rows(run_dir, "SELECT * FROM execs WHERE path = '/bin/true'")
    report = verify_run(run_dir)
    assert report.status == "incomplete"
    assert any("exec_net" in r for r in report.incomplete_reasons)


def test_background_process_outliving_its_agent_is_recorded_after_the_grace(runs_dir):
    """The agent's main process dies at SIGTERM; a child that ignores SIGTERM lives on and
    must be seen alive after the grace, then killed."""
    marker = f"{1000 + uuid.uuid4().int % 8000}"
    run = monitored(runs_dir, f"(trap '' TERM; exec sleep {marker}) & sleep {marker}", budget_s=2,
                    grace_s=1)
    late = rows(run, "SELECT argv FROM harness_events WHERE kind = 'survivor' "
                     "AND detail->>'stage' = 'alive_after_grace'")
    assert late == [(["sleep", marker],)]
    assert not _alive_with(f"sleep {marker}")
