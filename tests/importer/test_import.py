"""Importing transcripts of the real CLIs (tests/importer/fixtures, captured by capture.py
against the loopback mock): counts match the transcript, the canned queries find the
imported runs, torn or garbled lines are reported, walks dedupe, nothing is accepted."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onegc.audit import importer
from onegc.audit.cmd_sql import named_queries, run_sql
from onegc.audit.index import find_runs
from onegc.evidence.integrity import verify_run
from tests.evidencedb import rows
from tests.importer.capture import EPISODES

FIXTURES = Path(__file__).parent / "fixtures"
FORMATS = ("claude", "codex", "opencode")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "onegc.audit", *args], capture_output=True, text=True, timeout=120
    )


def transcript_counts(fmt: str, folder: Path) -> tuple[int, int]:
    """(tool calls, assistant text messages) counted straight from the transcript's JSON."""
    lines = [json.loads(line) for line in (folder / "stdout.log").read_text().splitlines() if line.strip()]
    if fmt == "claude":
        blocks = [
            (obj["message"]["id"], b)
            for obj in lines
            if obj.get("type") == "assistant"
            for b in obj["message"]["content"]
        ]
        calls = {b["id"] for _, b in blocks if b["type"] == "tool_use"}
        texts = {mid for mid, b in blocks if b["type"] == "text"}
        return len(calls), len(texts)
    if fmt == "codex":
        (rollout,) = folder.glob("rollout-*.jsonl")
        items = [json.loads(line) for line in rollout.read_text().splitlines()]
        calls = [
            i
            for i in items
            if i.get("type") == "response_item" and i["payload"].get("type") == "function_call"
        ]
        texts = [
            o for o in lines if o.get("type") == "item.completed" and o["item"]["type"] == "agent_message"
        ]
        return len(calls), len(texts)
    return (
        sum(1 for o in lines if o.get("type") == "tool_use"),
        sum(1 for o in lines if o.get("type") == "text"),
    )


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("episode", sorted(EPISODES))
def test_real_cli_transcript_imports_with_every_call_and_message(tmp_path, fmt, episode):
    folder = FIXTURES / fmt / episode
    assert importer.sniff(folder / "stdout.log") == fmt
    done = importer.import_one(importer.source_of(folder), tmp_path, "ag", "t0", 1)
    run = done.run_dir
    assert done.dropped == []
    calls, texts = transcript_counts(fmt, folder)
    commands = [c for (c,) in rows(run, "SELECT command FROM tool_calls ORDER BY line")]
    assert commands == EPISODES[episode] and len(commands) == calls
    assert (
        rows(run, "SELECT count(*) FROM messages WHERE role = 'assistant' AND kind = 'text'")[0][0] == texts
    )
    assert rows(run, "SELECT count(*) FROM exec_attribution")[0][0] == 0
    # every cited line really is that call in the stored transcript (or rollout)
    for call_id, line, source in rows(run, "SELECT call_id, line, source FROM tool_calls"):
        name = "stdout.log" if source == "stream" else next((run / "agent").glob("rollout-*")).name
        text = (run / "agent" / name).read_text().splitlines()[line - 1]
        assert call_id.split("#")[0] in text or fmt == "codex" and source == "stream"
    (detail,) = rows(run, "SELECT detail FROM harness_events WHERE kind = 'start'")[0]
    prov = json.loads(detail)["provenance"]
    assert (
        prov["imported"] is True and prov["format"] == fmt and prov["importer"] == importer.IMPORTER_VERSION
    )
    assert set(prov["absent_sensors"]) == {"exec", "network", "files", "processes"}
    stored = {f["stored_as"]: f["sha256"] for f in prov["files"]}
    assert stored["agent/stdout.log"] == importer.sha256_file(folder / "stdout.log")
    if episode == "clean":
        assert (run / "workspace" / "run_1.py").read_text() == (folder / "run_1.py").read_text()
    report = verify_run(run)
    assert report.status == "incomplete" and report.problems == []
    assert any("no OS evidence" in r for r in report.incomplete_reasons)


def test_imported_runs_answer_sql_and_the_overrefusal_query(tmp_path):
    for fmt in FORMATS:
        for rep, episode in enumerate(sorted(EPISODES), start=1):
            importer.import_one(importer.source_of(FIXTURES / fmt / episode), tmp_path, fmt, "t2", rep)
    hits = run_sql(named_queries()["overrefusal"].read_text(), [tmp_path])
    found = sorted((r["agent"], r["rep"]) for r in hits.iter_rows(named=True))
    refusal_rep = sorted(EPISODES).index("refusal") + 1
    assert found == [(fmt, refusal_rep) for fmt in FORMATS]
    per_run = run_sql(
        "SELECT agent, count(*) AS n FROM tool_calls WHERE regexp_matches(command, 'pip install') "
        "GROUP BY agent",
        [tmp_path],
    )
    assert dict(per_run.iter_rows()) == {fmt: 1 for fmt in FORMATS}
    runs = run_sql("SELECT count(*) FROM runs WHERE NOT complete", [tmp_path]).item()
    assert runs == 3 * len(EPISODES)


def test_truncated_and_garbled_transcripts_import_what_they_can(tmp_path):
    src = (FIXTURES / "claude" / "violating" / "stdout.log").read_bytes()
    lines = src.splitlines(keepends=True)
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / "stdout.log").write_bytes(b"".join(lines[:4]) + lines[4][:50])  # cut mid-line
    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "stdout.log").write_bytes(
        lines[0] + b"\x00\xff not json at all\n" + b'{"type": "mystery"}\n' + b"".join(lines[1:])
    )
    runs = tmp_path / "runs"
    t = importer.import_one(importer.source_of(torn / "stdout.log"), runs, "ag", "t0", 1)
    assert rows(t.run_dir, "SELECT count(*) FROM tool_calls")[0][0] == 2  # the two calls before the cut
    assert any("stdout.log:5: not JSON" in d for d in t.dropped)
    assert any("cut off" in d for d in t.dropped)
    g = importer.import_one(importer.source_of(garbled / "stdout.log"), runs, "ag", "t0", 2)
    assert [d.split(":")[1] for d in g.dropped] == ["2", "3"]
    assert rows(g.run_dir, "SELECT count(*) FROM tool_calls")[0][0] == 3
    assert rows(
        g.run_dir, "SELECT kind, line FROM agent_events WHERE kind IN ('malformed', 'unknown') ORDER BY line"
    ) == [("malformed", 2), ("unknown", 3)]
    for run in (t.run_dir, g.run_dir):
        report = verify_run(run)
        assert report.status == "incomplete"
        assert any("dropped" in r for r in report.incomplete_reasons)


def test_directory_import_with_pattern_twice_makes_no_duplicates(tmp_path):
    tree = tmp_path / "artifacts"
    for fmt in FORMATS:
        for rep, episode in enumerate(sorted(EPISODES), start=1):
            shutil.copytree(FIXTURES / fmt / episode, tree / fmt / "t2" / f"r{rep}")
    (tree / "opus" / "t2" / "r1").mkdir(parents=True)
    (tree / "opus" / "t2" / "r1" / "stdout.log").write_text("garbage, not a transcript\n")
    (tree / "stray.log").write_text("{}\n")
    ckpt = tree / "claude" / "t2" / "r1" / "checkpoints"
    ckpt.mkdir()
    (ckpt / "best.pt").write_bytes(b"PK\x03\x04...model._orig_mod.conv1.weight...")
    (tree / "claude" / "t2" / "r1" / "result.json").write_text(json.dumps({"score": 0.61, "task": "t2"}))
    runs = tmp_path / "runs"
    out = cli("import", str(tree), "--runs-dir", str(runs), "--agent-from-path", "{agent}/{task}/r{rep}")
    assert out.returncode == 0, out.stderr
    n = 3 * len(EPISODES)
    assert f"{n} imported, 2 skipped, 0 duplicates" in out.stdout
    assert "opus/t2/r1/stdout.log: not a Claude Code, Codex or OpenCode transcript" in out.stdout
    again = cli("import", str(tree), "--runs-dir", str(runs), "--agent-from-path", "{agent}/{task}/r{rep}")
    assert f"0 imported, 2 skipped, {n} duplicates" in again.stdout
    single = cli(
        "import",
        str(tree / "codex" / "t2" / "r2"),
        "--runs-dir",
        str(runs),
        "--agent",
        "other",
        "--task",
        "t2",
        "--rep",
        "9",
    )
    assert "already imported as" in single.stdout and not (runs / "other").exists()
    assert len(find_runs(runs)) == n
    assert len(json.loads((runs / importer.INDEX_NAME).read_text())) == n
    # the published claim and the compiled checkpoint are recorded as claims, never official
    run = runs / "claude" / "t2" / "r1"
    scores = rows(run, "SELECT path, self_reported, official, selected_by, failure FROM scores ORDER BY path")
    assert scores == [
        ("checkpoints/best.pt", None, None, "imported_claim", "orig_mod_prefix"),
        ("result.json", 0.61, None, "imported_claim", None),
    ]
    assert not (run / "result.json").exists()  # the run's own result.json is only ever ours
    verdict = cli("verify", str(run))
    assert verdict.returncode == 5 and "incomplete" in verdict.stdout and "accepted" not in verdict.stdout


def _rollout(episode: str) -> Path:
    (path,) = (FIXTURES / "codex" / episode).glob("rollout-*.jsonl")
    return path


def test_a_lone_codex_rollout_imports_every_call_from_a_file_or_a_folder(tmp_path):
    """The session file alone (no `exec --json` stream) is a whole run: its calls and messages."""
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(_rollout("violating"), lone)
    shutil.copy(FIXTURES / "codex" / "clean" / "run_1.py", lone)
    res = cli("import", str(next(lone.glob("rollout-*"))), "--runs-dir", str(tmp_path / "runs"),
              "--agent", "cx", "--task", "t2", "--rep", "1")
    assert res.returncode == 0, res.stderr
    assert "3 tool calls, 1 messages" in res.stdout and "dropped" not in res.stdout
    run = tmp_path / "runs" / "cx" / "t2" / "r1"
    assert rows(run, "SELECT source, count(*) FROM tool_calls GROUP BY ALL") == [("rollout", 3)]
    assert not (run / "agent" / "stdout.log").exists()
    assert cli("verify", str(run), "--json").returncode == 5  # incomplete, with R1 R3 R4 shown
    # as a folder (its other files are the run's artifacts); the same rollout is the same run
    folder = importer.source_of(lone)
    assert folder.transcript is None and folder.rollout is not None and [p.name for p in folder.artifacts] == [
        "run_1.py"]
    again = importer.import_one(folder, tmp_path / "runs", "cx", "t2", 2)
    assert again.duplicate_of == run
    # a walk finds folders holding only a rollout
    tree = tmp_path / "tree" / "cx" / "t2" / "r1"
    tree.mkdir(parents=True)
    shutil.copy(_rollout("clean"), tree)
    report = importer.walk(tmp_path / "tree", tmp_path / "runs2", "{agent}/{task}/r{rep}")
    assert len(report.imported) == 1 and report.skipped == [], report.skipped


def test_codex_stream_and_rollout_read_in_one_order_the_final_message_last(tmp_path):
    """Calls and messages come from the rollout: one file's lines and times, so the final
    message follows the calls whichever way a reader orders them."""
    run = importer.import_one(importer.source_of(FIXTURES / "codex" / "violating"), tmp_path / "runs", "cx",
                              "t2", 1).run_dir
    events = rows(run, "SELECT line, t, 'call' FROM tool_calls UNION ALL "
                       "SELECT line, t, 'message' FROM messages WHERE kind = 'text' ORDER BY line")
    assert [e[2] for e in events] == ["call", "call", "call", "message"]
    assert [e[1] for e in events] == sorted(e[1] for e in events)  # by time the same order
    assert events[-1][1] < 2e9  # the transcript's own clock (2026), not the moment of the import
    md = cli("review", str(run)).stdout.split("## Transcript around each violation")[1]
    first = md.split("\n\n**")[1]
    assert first.index("sed -i") < first.index("Done.")
