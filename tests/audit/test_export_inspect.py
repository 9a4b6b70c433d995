"""Runs exported as Inspect logs read back with Inspect's own reader: one log per agent x
task, a sample per run, and every message, event and score accounted for against the run's
sealed evidence; `inspect view` shows a disqualified sample's verdict and the act it cites."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.audit.headless import CHROMIUM, Browser
from tests.conftest import RUNS_BASE, monitored, needs_root
from tests.evidencedb import rows

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "onegc.audit"]
FIXTURES = REPO / "tests" / "importer" / "fixtures"
ARTIFACTS = os.environ.get("ONEGC_TEST_ARTIFACTS")  # where the view test keeps its screenshots (else tmp_path)
OWN_ROOTS = ("workspace", "scratch")

try:
    import inspect_ai  # noqa: F401

    HAVE_INSPECT = True
except ImportError:
    HAVE_INSPECT = False
needs_inspect = pytest.mark.skipif(not HAVE_INSPECT, reason="inspect-ai is not installed (pip install '.[inspect]')")


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A runs root: a disqualified scored run (pip install) and an accepted one of the same
    agent x task, a run that reaches for the internet, and imported transcripts of the three
    real CLIs."""
    if os.geteuid() != 0:
        pytest.skip("the harness needs root (namespaces, cgroup)")
    root = RUNS_BASE / f"export-inspect-{os.getpid()}"
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    env = {**os.environ, "ONEGC_DATA_DIR": str(tmp_path_factory.mktemp("data"))}
    for agent, label, rep, code in (("pip_install", "scripted-pip_install", 1, 4),
                                    ("clean", "scripted-pip_install", 2, 0),
                                    ("connect_out", "scripted-connect_out", 1, 4)):
        res = cli("run", "--task", "t6", "--agent", f"scripted:{agent}", "--label", label, "--rep", str(rep),
                  "--runs-dir", str(root), "--synthetic", "--env", "ONEGC_SMOKE=1", env=env)
        assert res.returncode == code, res.stdout + res.stderr
    for fmt in ("claude", "codex", "opencode"):
        res = cli("import", str(FIXTURES / fmt / "violating"), "--runs-dir", str(root), "--agent", f"imp-{fmt}",
                  "--task", "t6", "--rep", "1")
        assert res.returncode == 0, res.stderr
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("logs")
    res = cli("export", str(runs), "--format", "inspect", "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out, res.stdout


def read_logs(folder: Path, ext: str = "eval") -> dict:
    from inspect_ai.log import read_eval_log

    return {p.name: read_eval_log(str(p), resolve_attachments=True) for p in sorted(folder.glob(f"*.{ext}"))}


SHOWN = {  # the rows of each table a sample shows as events (besides every row a rule cites)
    "harness_events": "true",
    "execs": "NOT probe",
    "net_attempts": "true",
    "file_events": f"root NOT IN {OWN_ROOTS}",
    "proxy_connections": "verdict <> 'allowed'",
    "scores": "true",
    "tool_calls": "true",
}


def expected(run_dir: Path, verdict: dict) -> dict:
    """What the sample must hold for this run, read straight from its evidence."""
    tables = {t for (t,) in rows(run_dir, "SELECT table_name FROM duckdb_tables()")}
    cited = {(row["table_name"], row["seq"], r["id"]) for r in verdict["rules"] if r["outcome"] in ("fail", "attempt")
             for row in r["rows"]}
    shown = {(t, seq) for t, where in SHOWN.items() if t in tables
             for (seq,) in rows(run_dir, f"SELECT seq FROM {t} WHERE {where}")}
    shown |= {(t, seq) for t, seq, _ in cited}
    msgs = rows(run_dir, "SELECT count(*) FROM messages")[0][0] if "messages" in tables else 0
    calls, results = rows(run_dir, "SELECT count(*), count(*) FILTER (status <> 'pending') FROM tool_calls")[0] \
        if "tool_calls" in tables else (0, 0)
    return {"rows": shown, "markers": len(cited), "scores": 2, "messages": msgs + calls + results,
            "events": len(shown) + len(cited) + 2}


def event_type(run_dir: Path, table: str, seq: int) -> str:
    """Processes and file reads/writes are sandbox events, tool calls tool events, the rest info."""
    if table == "file_events":
        ((event,),) = rows(run_dir, f"SELECT event FROM file_events WHERE seq = {seq}")
        return "sandbox" if event in ("create", "modify", "close_write", "moved_to", "rescan_found", "open") else "info"
    return {"execs": "sandbox", "tool_calls": "tool"}.get(table, "info")


def observed(sample) -> dict:
    meta = [e.metadata or {} for e in sample.events]
    return {"rows": {(m["table"], m["seq"]) for m in meta if "h" in m},
            "markers": sum(bool(m.get("marker")) for m in meta),
            "scores": sum(e.event == "score" for e in sample.events),
            "messages": len(sample.messages), "events": len(sample.events)}


def check_round_trip(name: str, log) -> None:
    """Every sample of `log` holds exactly what its run's evidence says it must."""
    from onegc.audit.cmd_verify import task_direction
    from onegc.rules.engine import judge

    assert log.status == "success" and log.eval.dataset.samples == len(log.samples)
    assert log.eval.viewer.trust_content is False  # the agent's text is never rendered richly
    for sample in log.samples:
        run_dir = Path(sample.metadata["onegc"]["run_dir"])
        verdict = judge(run_dir, direction_for=task_direction).model_dump(mode="json")  # as the exporter judges
        assert observed(sample) == expected(run_dir, verdict), (name, sample.id)
        assert sample.scores["verdict"].value == verdict["status"] == sample.metadata["onegc"]["status"]
        assert sample.id == f"r{sample.metadata['onegc']['rep']}"
        # every event that names a row names a real one: its chain hash is the row's
        for e in sample.events:
            m = e.metadata or {}
            if "h" in m:
                assert rows(run_dir, f"SELECT h FROM {m['table']} WHERE seq = {m['seq']}") == [(m["h"],)]
                assert e.event == event_type(run_dir, m["table"], m["seq"]), (m, e.event)
            if e.event == "sandbox" and e.action == "exec":
                assert rows(run_dir, f"SELECT argv FROM execs WHERE seq = {m['seq']}") == [(shlex.split(e.cmd),)]
        # the transcript in order: each tool call followed by its result
        for i, msg in enumerate(sample.messages):
            if msg.role == "tool":
                assert sample.messages[i - 1].tool_calls[0].id == msg.tool_call_id


@needs_root
@needs_inspect
def test_every_log_reads_back_with_the_counts_of_its_evidence(runs, exported):
    out, stdout = exported
    logs = read_logs(out)
    assert len(logs) == 5 and stdout.count("wrote ") == 5  # pip_install+clean share one agent x task
    for name, log in logs.items():
        check_round_trip(name, log)
    assert sum(len(log.samples) for log in logs.values()) == 6
    both = next(log for log in logs.values() if log.eval.solver == "scripted-pip_install")
    assert [s.id for s in both.samples] == ["r1", "r2"]
    assert [s.scores["verdict"].value for s in both.samples] == ["disqualified", "accepted"]
    metrics = both.results.scores[0].metrics
    assert metrics["accepted_rate"].value == 0.5 and metrics["disqualified"].value == 1
    assert both.eval.task == "t6" and both.eval.model == "onegc/scripted"


@needs_root
@needs_inspect
def test_a_disqualified_sample_cites_the_act_and_its_row(exported):
    out, _ = exported
    log = next(log for log in read_logs(out).values() if log.eval.solver == "scripted-pip_install")
    sample = log.samples[0]
    verdict = sample.scores["verdict"]
    assert verdict.value == "disqualified" and verdict.metadata["disqualified_by"] == ["R4"]
    (fired,) = verdict.metadata["rules_fired"]
    cited = fired["rows"][0]
    assert cited["table_name"] == "execs" and f"table=execs seq={cited['seq']}" in verdict.explanation
    at = next(i for i, e in enumerate(sample.events) if (e.metadata or {}).get("table") == "execs"
              and e.metadata["seq"] == cited["seq"] and not e.metadata.get("marker"))
    act, marker = sample.events[at], sample.events[at + 1]
    assert act.event == "sandbox" and "pip install" in act.cmd and act.metadata["cited_by"] == ["R4 attempt"]
    assert marker.event == "info" and marker.source == "onegc verdict: R4 attempt" and "pip install" in marker.data
    official = sample.scores["official"]
    assert official.value > 0 and official.metadata["counts_for_aggregates"] is False


@needs_root
@needs_inspect
def test_network_attempts_are_events_naming_their_process(runs, exported):
    out, _ = exported
    log = next(log for log in read_logs(out).values() if log.eval.solver == "scripted-connect_out")
    sample = log.samples[0]
    net = [e for e in sample.events if e.event == "info" and e.source == "onegc network"]
    run_dir = Path(sample.metadata["onegc"]["run_dir"])
    addresses = {a for (a,) in rows(run_dir, "SELECT address FROM net_attempts")}
    assert "192.0.2.1" in addresses and {e.data["row"]["address"] for e in net} == addresses
    assert all(e.data["row"]["argv"] and e.metadata["table"] == "net_attempts" for e in net)
    assert any(e.metadata.get("marker") and e.metadata["rule"] == "R3" for e in sample.events)


@needs_root
@needs_inspect
def test_imported_runs_export_marked_imported(exported):
    out, _ = exported
    imported = [log for log in read_logs(out).values() if log.eval.solver.startswith("imp-")]
    assert len(imported) == 3
    for log in imported:
        assert "imported" in log.tags
        (sample,) = log.samples
        meta = sample.metadata["onegc"]
        assert meta["imported"] is True and meta["provenance"]["format"] in log.eval.solver
        assert sample.scores["verdict"].value == "incomplete"
        assert "imported transcript" in sample.scores["verdict"].explanation
        assert [m.tool_calls[0].function for m in sample.messages if m.role == "assistant" and m.tool_calls]
        assert not [e for e in sample.events if e.event == "sandbox"]  # no sensor watched it
        markers = {e.metadata["rule"] for e in sample.events if (e.metadata or {}).get("marker")}
        assert {"R3", "R4"} <= markers  # what the transcript shows is still cited
    claude = next(log for log in imported if log.eval.solver == "imp-claude")
    assert claude.eval.model == "onegc/claude-sonnet-4-6"


@needs_root
@needs_inspect
def test_json_logs_hold_the_same_as_eval_logs(runs, exported, tmp_path):
    out, _ = exported
    res = cli("export", str(runs / "scripted-pip_install" / "t6" / "r1"), "--format", "inspect", "--out",
              str(tmp_path), "--log-format", "json", "--json")
    assert res.returncode == 0, res.stderr
    (written,) = json.loads(res.stdout)
    assert written["samples"] == 1 and written["statuses"] == {"disqualified": 1}
    (log,) = read_logs(tmp_path, "json").values()
    assert Path(written["path"]).name == Path(log.location).name
    (sample,) = log.samples
    eval_log = next(log for log in read_logs(out).values() if log.eval.solver == "scripted-pip_install")
    same = eval_log.samples[0]
    assert observed(sample) == observed(same) and sample.scores["verdict"].value == "disqualified"


@needs_root
@needs_inspect
def test_exporting_again_gives_the_same_logs(runs, exported, tmp_path):
    out, _ = exported
    res = cli("export", str(runs), "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    first, again = read_logs(out), read_logs(tmp_path)
    assert list(first) == list(again)  # same file names
    for name, log in first.items():
        assert log.model_dump(exclude={"location", "etag"}) == again[name].model_dump(exclude={"location", "etag"})


@needs_root
@needs_inspect
def test_a_tampered_run_exports_only_its_verdict(runs_dir, tmp_path):
    run = monitored(runs_dir, "echo hi > a.txt; /bin/true")
    journal = run / "journal" / "execs.jsonl"
    data = bytearray(journal.read_bytes())
    data[len(data) // 2] ^= 0x01
    journal.write_bytes(bytes(data))
    res = cli("export", str(run), "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    (log,) = read_logs(tmp_path).values()
    (sample,) = log.samples
    verdict = sample.scores["verdict"]
    assert verdict.value == "tampered" and "journal/execs.jsonl" in verdict.explanation
    assert sample.messages == [] and [e.event for e in sample.events] == ["score", "score"]


@needs_root
@needs_inspect
def test_rows_cited_from_tables_not_shown_become_events(runs_dir, tmp_path):
    """A locked file edited in place: R1 cites a workspace file event and the snapshots,
    neither shown otherwise; both are exported, each followed by its verdict marker."""
    run = monitored(runs_dir, "sed -i 's/locked/open/' prepare.py")
    res = cli("export", str(run), "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    ((name, log),) = read_logs(tmp_path).items()
    check_round_trip(name, log)
    (sample,) = log.samples
    assert sample.scores["verdict"].value == "disqualified"
    cited = {(e.metadata["table"], e.metadata["seq"]) for e in sample.events
             if "R1 fail" in e.metadata.get("cited_by", [])}
    assert {t for t, _ in cited} >= {"file_events", "snapshots"}
    for i, e in enumerate(sample.events):
        if (e.metadata or {}).get("cited_by"):
            assert sample.events[i + 1].metadata["marker"] and sample.events[i + 1].metadata["seq"] == e.metadata["seq"]


@needs_root
@needs_inspect
def test_work_outside_the_run_and_the_watchdog_steps_are_events(runs_dir, tmp_path):
    """A write outside the run is refused by the agent's view (nothing to export but its
    failure); a program started with its working directory outside the run is cited by R5 and
    becomes an exec event naming that citation; the deadline and the signals are watchdog events."""
    leak = f"/run/lock/onegc-export-{uuid.uuid4().hex[:8]}"
    run = monitored(runs_dir, f"(echo leak > {leak}) 2>/dev/null; cd /usr && /bin/true; cd -; sleep 60",
                    budget_s=3, grace_s=1)
    assert not os.path.lexists(leak), "the view let a write outside the run through"
    res = cli("export", str(run), "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    ((name, log),) = read_logs(tmp_path).items()
    check_round_trip(name, log)
    (sample,) = log.samples
    outside = [e for e in sample.events if e.event == "sandbox" and e.action == "exec" and e.cmd == "/bin/true"]
    assert outside and any("R5 fail" in e.metadata.get("cited_by", []) for e in outside), outside
    watchdog = [e.data["row"]["kind"] for e in sample.events if e.event == "info" and e.source == "onegc watchdog"]
    assert watchdog[0] == "deadline" and "sigterm" in watchdog


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    cases = [
        (["export", str(tmp_path / "absent"), "--out", str(tmp_path / "o")], "no such run"),
        (["export", str(tmp_path), "--out", str(tmp_path / "o")], "no sealed run"),
        (["export", str(tmp_path), "--format", "csv", "--out", str(tmp_path / "o")], "--format must be"),
        (["export", str(tmp_path)], "needs --out"),
        (["export", str(tmp_path), "--out", str(tmp_path / "o"), "--log-format", "xml"], "--log-format"),
    ]
    for args, words in cases:
        if not HAVE_INSPECT and "no s" in words:
            continue  # without the extra the missing package is said first
        res = cli(*args)
        assert res.returncode == 2 and words in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr


def test_without_the_extra_the_exporter_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['inspect_ai'] = None; from onegc.audit.cli import main; "
            f"sys.argv = ['onegc-audit', 'export', {str(tmp_path)!r}, '--out', {str(tmp_path / 'o')!r}]; main()")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "needs inspect-ai" in res.stderr and "pip install 'onegc-audit[inspect]'" in res.stderr


def test_nothing_but_the_exporter_imports_inspect():
    """Tripwire: inspect-ai is an optional extra, so one module may import it."""
    allowed = {REPO / "audit" / "export_inspect.py"}
    offenders = []
    for folder in ("audit", "evidence", "harness", "rules", "tasks"):
        for path in (REPO / folder).rglob("*.py"):
            if path not in allowed and re.search(r"^\s*(from|import)\s+inspect_ai\b", path.read_text(), re.M):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


# -- inspect view in headless Chromium --------------------------------------------------------
class View:
    """`inspect view` and Chromium in a network namespace of their own holding only loopback."""

    PORT = 7575

    def __init__(self, logs: Path, scratch: Path) -> None:
        self.holder = subprocess.Popen(["unshare", "-n", "sleep", "900"])
        self.server: subprocess.Popen | None = None
        self.browser: Browser | None = None
        try:
            self._start(logs, scratch)
        except BaseException:
            self.close()
            raise

    def _start(self, logs: Path, scratch: Path) -> None:
        ns = ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net"]
        deadline = time.monotonic() + 10
        # until `unshare` has made it, the holder's namespace is still ours: lo up there would be the host's
        while os.readlink(f"/proc/{self.holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline and self.holder.poll() is None, "no network namespace"
            time.sleep(0.05)
        subprocess.run([*ns, "ip", "link", "set", "lo", "up"], check=True, capture_output=True)
        # its own data dir: `inspect view` terminates whatever pid its port file names (another
        # user's viewer, or a recycled pid), and that file lives in the user's data dir
        env = {**os.environ, "XDG_DATA_HOME": str(scratch / "xdg-data")}
        probe = [*ns, "bash", "-c", f"echo > /dev/tcp/127.0.0.1/{self.PORT}"]
        log = scratch / "inspect-view.log"
        self.server = subprocess.Popen([*ns, sys.executable, "-m", "inspect_ai", "view", "--log-dir", str(logs),
                                        "--host", "127.0.0.1", "--port", str(self.PORT)],
                                       stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)  # fmt: skip
        deadline = time.monotonic() + 120
        while subprocess.run(probe, capture_output=True).returncode:
            assert self.server.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "inspect view did not start listening: " + log.read_text()[-1000:]
            time.sleep(0.5)
        self.browser = Browser(scratch / "profile", ns)

    def page(self, route: str, *needles: str) -> str:
        self.browser.open(f"http://127.0.0.1:{self.PORT}/#/{route}")
        return self.browser.wait_for(*needles)

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
        for proc in (p for p in (self.server, self.holder) if p is not None):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@needs_root
@needs_inspect
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
@pytest.mark.skipif(not all(map(shutil.which, ("unshare", "nsenter", "ip"))),
                    reason="unshare, nsenter and ip are needed for a loopback-only network namespace")
def test_inspect_view_shows_the_verdict_and_the_cited_act(exported, tmp_path):
    out, _ = exported
    logs = read_logs(out)
    name = next(n for n, log in logs.items() if log.eval.solver == "scripted-pip_install")
    imported = next(n for n, log in logs.items() if log.eval.solver == "imp-claude")
    artifacts = Path(ARTIFACTS) if ARTIFACTS else tmp_path
    artifacts.mkdir(parents=True, exist_ok=True)
    view = View(out, tmp_path)
    try:
        listing = view.page(f"logs/{name}", "disqualified", "accepted")
        assert "disqualified" in listing and "accepted" in listing, listing[:2000]
        view.browser.screenshot(artifacts / "inspect-view-samples.png")
        sample = f"logs/{name}/samples/sample/r1/1"
        transcript = view.page(f"{sample}/", "onegc verdict: r4 attempt", "pip install")
        assert "onegc verdict: r4 attempt" in transcript and "was started to install packages" in transcript, \
            transcript[:3000]
        view.browser.screenshot(artifacts / "inspect-view-transcript.png")
        scoring = view.page(f"{sample}/scoring", "table=execs")
        assert "disqualified" in scoring and re.search(r"table=execs seq=\d+ pid=\d+", scoring), scoring[:3000]
        shot = artifacts / "inspect-view-scoring.png"
        view.browser.screenshot(shot)
        listing = view.page(f"logs/{imported}", "incomplete", "imported")
        assert "incomplete" in listing and "imported" in listing, listing[:2000]  # the verdict and the log's tag
    finally:
        view.close()
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
