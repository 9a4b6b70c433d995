"""Parsers never crash: garbage bytes, random JSON, and real event types with random
shapes are all either understood or kept verbatim, and whatever comes out seals."""

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onegc.evidence.journal import Journal, journal_path
from onegc.evidence.seal import seal
from onegc.harness.streams import PARSERS
from onegc.harness.streams.attribution import attribute
from onegc.harness.streams.codex import RolloutParser
from tests.evidencedb import rows

TYPES = [
    "system",
    "assistant",
    "user",
    "result",
    "stream_event",
    "thread.started",
    "turn.started",
    "turn.completed",
    "turn.failed",
    "error",
    "item.started",
    "item.completed",
    "step_start",
    "step_finish",
    "text",
    "reasoning",
    "tool_use",
    "response_item",
    "session_meta",
]
KEYS = [
    "type",
    "subtype",
    "message",
    "content",
    "item",
    "part",
    "state",
    "id",
    "tool_use_id",
    "input",
    "command",
    "text",
    "payload",
    "call_id",
    "status",
    "exit_code",
    "metadata",
    "time",
    "output",
]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=25,
)
shaped = st.builds(
    lambda t, rest: json.dumps({**rest, "type": t}).encode(),
    st.sampled_from(TYPES),
    st.dictionaries(st.sampled_from(KEYS), values, max_size=6),
)
any_line = (
    st.binary(max_size=200)
    | values.map(lambda v: json.dumps(v).encode())
    | shaped
    | st.text(max_size=80).map(lambda s: s.encode("utf-8", "surrogatepass"))
)
streams = st.lists(any_line, max_size=30)


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(sorted(PARSERS)), stream=streams)
def test_no_line_crashes_a_parser_and_every_line_is_accounted_for(fmt, stream):
    lines = [line.replace(b"\n", b" ") + b"\n" for line in stream]
    parsed = PARSERS[fmt]().feed_lines(lines)
    nonblank = sum(1 for line in lines if line.decode("utf-8", "replace").strip())
    assert parsed.counts.get("lines", 0) == nonblank
    kept = [e for e in parsed.events if e.kind in ("unknown", "malformed")]
    assert len(kept) == parsed.counts.get("unknown", 0) + parsed.counts.get("malformed", 0)
    assert all(e.raw is not None for e in kept)
    for rec in [*parsed.tool_calls, *parsed.messages, *parsed.events]:
        json.dumps(rec.row())
    attribute(
        [{"seq": i, "pid": i, "ppid": 0, "argv": ["sh", "-c", "x"]} for i in range(3)], parsed.tool_calls
    )


@settings(max_examples=200, deadline=None)
@given(stream=streams)
def test_rollout_parser_survives_garbage(stream):
    RolloutParser().feed_lines([line.replace(b"\n", b" ") for line in stream])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(sorted(PARSERS)), stream=streams)
def test_garbage_records_journal_and_seal(tmp_path_factory, fmt, stream):
    run_dir: Path = tmp_path_factory.mktemp("run")
    parsed = PARSERS[fmt]().feed_lines([line.replace(b"\n", b" ") for line in stream])
    for table, recs in (
        ("tool_calls", parsed.tool_calls),
        ("messages", parsed.messages),
        ("agent_events", parsed.events),
    ):
        j = Journal(journal_path(run_dir, table), table)
        for r in recs:
            j.write(**r.row())
        j.close()
    seal(run_dir, complete=True, reasons=[])
    assert rows(run_dir, "SELECT count(*) FROM agent_events") == [(len(parsed.events),)]
    assert rows(run_dir, "SELECT count(*) FROM tool_calls") == [(len(parsed.tool_calls),)]
