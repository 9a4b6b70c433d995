"""File events under the watched roots, and the before/after snapshots."""

import os
import signal
import threading
import time
import uuid

import psutil

from onegc.evidence.integrity import verify_run
from onegc.harness.monitor import RunSpec, create_run_dir, run_monitored
from onegc.rules.engine import judge
from tests.conftest import monitored, needs_root
from tests.evidencedb import rows

pytestmark = needs_root


def test_rename_over_a_locked_file_is_recorded_and_snapshotted(runs_dir):
    run = monitored(runs_dir, "echo 'LABELS = 1' > evil.py && mv -f evil.py prepare.py")
    ws = run / "workspace"
    assert (str(ws / "prepare.py"), "moved_to") in set(
        rows(run, "SELECT path, event FROM file_events WHERE root = 'workspace'")
    )
    before, after = (
        rows(
            run,
            f"SELECT sha256 FROM snapshots WHERE scope = 'workspace' "
            f"AND path = 'prepare.py' AND phase = '{ph}'",
        )[0][0]
        for ph in ("before", "after")
    )
    assert before != after


def test_file_in_a_just_made_subdirectory_is_recorded(runs_dir):
    run = monitored(runs_dir, "mkdir -p a/b/c && echo hi > a/b/c/new.txt")
    path = str(run / "workspace" / "a" / "b" / "c" / "new.txt")
    assert rows(run, f"SELECT count(*) FROM file_events WHERE path = '{path}'")[0][0] >= 1


def test_private_tmp_is_watched_and_leaves_no_trace_on_the_host(runs_dir):
    marker = f"onegc-{uuid.uuid4().hex[:8]}"
    run = monitored(runs_dir, f"echo x > /tmp/{marker}")
    assert not os.path.exists(f"/tmp/{marker}")
    assert (run / "scratch" / "tmp" / marker).exists()
    assert rows(run, f"SELECT root FROM file_events WHERE path LIKE '%/{marker}' LIMIT 1") == [("scratch",)]


def test_forced_inotify_overflow_makes_the_run_incomplete(runs_dir):
    """Stall the watcher (SIGSTOP) while the agent writes 12,000 files (36,000 events): the
    kernel queue (16,384 events) overflows, which must be counted and make the run incomplete."""
    run_dir = create_run_dir(runs_dir, "tester", "t0", 1)
    script = (
        "python3 -m pip install --no-index --quiet not-a-package; touch started; sleep 1; "
        "python3 -c \"[open(f'f{i}', 'w').write('x') for i in range(12000)]\"; "
        "touch done; sleep 3"
    )
    spec = RunSpec(run_dir, ["bash", "-c", script], "tester", "t0", 1, budget_s=120, grace_s=1)
    worker = threading.Thread(target=run_monitored, args=(spec,))
    worker.start()
    for _ in range(600):  # the agent runs once every sensor is ready
        if (run_dir / "workspace" / "started").exists():
            break
        time.sleep(0.05)
    watcher = next(
        p
        for p in psutil.process_iter(["cmdline"])
        if "onegc.harness.fswatch" in (p.info["cmdline"] or []) and str(run_dir) in p.info["cmdline"]
    )
    watcher.send_signal(signal.SIGSTOP)
    for _ in range(1800):
        if (run_dir / "workspace" / "done").exists():
            break
        time.sleep(0.05)
    watcher.send_signal(signal.SIGCONT)
    worker.join(timeout=120)
    overflows = rows(
        run_dir, "SELECT value FROM sensor_health WHERE sensor='fswatch' AND counter='overflows'"
    )
    assert overflows[0][0] >= 1
    report = verify_run(run_dir)
    assert report.status == "incomplete"
    assert any("overflows" in r for r in report.incomplete_reasons)
    # the pip run is proven by an intact exec row: lost file events do not excuse it
    verdict = judge(run_dir)
    assert verdict.status == "disqualified" and verdict.disqualified_by == ["R4"], verdict.reasons
    assert any(r.startswith("also incomplete: sensor fswatch: overflows") for r in verdict.reasons)


def test_undecodable_file_names_and_argv_are_recorded_not_fatal(runs_dir):
    """A hostile, non-UTF-8 name must not silence a sensor: recorded as \\xNN escapes."""
    run = monitored(runs_dir, "touch $'evil\\xff.py'; /bin/echo $'arg\\xfe' > /dev/null; true")
    assert verify_run(run).status == "intact"
    assert rows(run, "SELECT count(*) FROM file_events WHERE path LIKE '%evil\\xff.py'")[0][0] >= 1
    assert rows(run, "SELECT argv FROM execs WHERE path = '/bin/echo'") == [(["/bin/echo", "arg\\xfe"],)]
