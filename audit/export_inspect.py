"""Runs as Inspect evaluation logs: one `EvalLog` per agent x task, a sample per repetition.

Reviewers read agent evaluations in Inspect (`inspect view`, `inspect_ai.log`); this puts a
run's sealed evidence where they already look. The sample's messages are the agent's own
transcript; its events are the OS evidence that matters to a reviewer (process starts,
network attempts, writes outside the workspace, the watchdog's steps, the official
scoring), each naming the evidence row it came from; its scores are the official score and
the verdict with the rows it cites. What Inspect's model has no field for goes into
metadata under `onegc`. The files are written by `inspect_ai.log.write_eval_log`, so they
are exactly what Inspect itself writes.

Reading the evidence needs nothing but DuckDB; only building the log imports `inspect_ai`
(the optional `[inspect]` extra), so nothing else of ours depends on it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import duckdb

from onegc.audit.cmd_verify import task_direction
from onegc.audit.index import find_runs
from onegc.evidence.errors import MissingExtra, OnegcError
from onegc.evidence.seal import DB_NAME, latest_result
from onegc.rules.engine import judge

if TYPE_CHECKING:
    from inspect_ai.event import Event
    from inspect_ai.log import EvalLog, EvalSample
    from inspect_ai.model import ChatMessage

LOG_FORMATS = ("eval", "json")
# Watched roots a run may write freely; a write anywhere else is shown as an event.
OWN_ROOTS = ("workspace", "scratch")
WATCHDOG_KINDS = ("deadline", "sigterm", "sigkill", "survivor")
WRITE_EVENTS = ("create", "modify", "close_write", "moved_to", "rescan_found")
TEXT_CAP = 4000  # characters of a text field in an info event's row dump (the transcript is never cut)


class ExportError(OnegcError):
    """Nothing to export (no sealed run under the path) or the output cannot be written."""


@dataclass
class Row:
    """One evidence row as an export sees it: where it came from, when, and its fields."""

    table: str
    seq: int
    t: float | None
    fields: dict[str, Any]
    cited_by: list[str] = field(default_factory=list)

    @property
    def ref(self) -> dict[str, Any]:
        """The metadata that names the row: table and seq (its key), and its chain hash."""
        out: dict[str, Any] = {"table": self.table, "seq": self.seq, "h": self.fields.get("h")}
        if self.cited_by:
            out["cited_by"] = self.cited_by
        return out


@dataclass
class RunRecord:
    """What one sealed run contributes to a log, read once from its evidence."""

    run_dir: Path
    run: dict[str, Any]
    verdict: dict[str, Any]
    result: dict[str, Any] | None
    start: dict[str, Any]
    transcript: list[Row] = field(default_factory=list)  # messages and tool_calls, in transcript order
    events: list[Row] = field(default_factory=list)  # OS evidence shown as events, by time
    counts: dict[str, int] = field(default_factory=dict)  # every table's row count
    model: str | None = None
    model_source: str | None = None
    final_text: str | None = None

    @property
    def imported(self) -> bool:
        return bool((self.start.get("provenance") or {}).get("imported"))

    @property
    def label(self) -> str:
        return str(self.run.get("label") or "unknown")

    @property
    def task(self) -> str:
        return str(self.run.get("task") or self.verdict.get("task") or "unknown")


# -- reading the evidence -------------------------------------------------------------------------
def _rows(con: duckdb.DuckDBPyConnection, table: str, sql: str) -> list[Row]:
    rel = con.sql(sql)
    cols = rel.columns
    out = []
    for values in rel.fetchall():
        rec = dict(zip(cols, values, strict=True))
        for k, v in rec.items():
            if isinstance(v, str) and k in ("detail", "input"):
                try:
                    rec[k] = json.loads(v)
                except ValueError:
                    pass
        out.append(Row(table, rec["seq"], rec.get("t"), rec))
    return out


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def _cited(verdict: dict) -> dict[tuple[str, int], list[str]]:
    """(table, seq) -> 'R4 attempt', ... for every row a failing or attempted rule cites."""
    out: dict[tuple[str, int], list[str]] = {}
    for rule in verdict.get("rules", []):
        if rule["outcome"] in ("fail", "attempt"):
            for row in rule["rows"]:
                tag = f"{rule['id']} {rule['outcome']}"
                tags = out.setdefault((row["table_name"], row["seq"]), [])
                if tag not in tags:
                    tags.append(tag)
    return out


def _transcript_order(rows: list[Row], lines: dict[str, int]) -> list[Row]:
    """Messages and tool calls in the order the agent produced them. One source: by line.
    Codex's calls come from its rollout and its messages from the stream, two files with
    their own line numbers, so there each row is placed by its fraction of its own file
    (both files grow with time): an approximation, said so in each message's metadata."""
    sources = {r.fields.get("source") or "stream" for r in rows}
    if len(sources) <= 1:
        return sorted(rows, key=lambda r: (r.fields["line"] or 0, r.table != "messages", r.seq))

    def place(r: Row) -> float:
        total = lines.get(r.fields.get("source") or "stream") or 1
        return (r.fields["line"] or 0) / total

    return sorted(rows, key=lambda r: (place(r), r.table != "messages", r.seq))


MODEL_FLAGS = ("--model", "-m")


def _model(run: dict, agent_events: list[Row]) -> tuple[str | None, str | None]:
    """The model the agent ran, from the evidence: its command line, else its stream."""
    argv = run.get("argv") or []
    if argv and not Path(argv[0]).name.startswith("python"):  # python's -m names a module
        for i, arg in enumerate(argv[:-1]):
            if arg in MODEL_FLAGS:
                return argv[i + 1].removeprefix("onegc/"), "agent argv"  # OpenCode's provider alias
    for ev in agent_events:
        detail = ev.fields.get("detail")
        if not isinstance(detail, dict):
            continue
        if ev.fields["kind"] == "init" and isinstance(detail.get("model"), str):
            return detail["model"], f"agent stream line {ev.fields['line']} (init)"
        usage = detail.get("modelUsage")
        if ev.fields["kind"] == "result" and isinstance(usage, dict) and len(usage) == 1:
            return next(iter(usage)), f"agent stream line {ev.fields['line']} (result)"
    return None, None


# The rows of each table a sample shows as events: what a reviewer needs, not every inotify
# tick (workspace writes, PATH probes, allowed proxy connections stay in the evidence).
# Every row a rule cites is shown as well, whatever its table.
SHOWN = {
    "harness_events": "true",
    "execs": "NOT probe",
    "net_attempts": "true",
    "file_events": "root NOT IN (" + ", ".join(f"'{r}'" for r in OWN_ROOTS) + ")",
    "proxy_connections": "verdict <> 'allowed'",
    "scores": "true",
}
TRANSCRIPT = ("tool_calls", "messages")


def _select(table: str, tables: set[str]) -> str:
    """SELECT for a table's rows, with what the export joins to them: an exec's tool call,
    a tool call's first process (its start, when the stream gives none)."""
    if table == "execs" and "exec_attribution" in tables:
        return ("SELECT e.*, a.call_id, a.attribution FROM execs e "
                "LEFT JOIN exec_attribution a ON a.exec_seq = e.seq")
    if table == "execs":
        return "SELECT *, NULL AS call_id, NULL AS attribution FROM execs"
    if table == "tool_calls" and "execs" in tables:
        return ("SELECT c.*, (SELECT min(e.t) FROM execs e WHERE list_contains(c.exec_seqs, e.seq)) "
                "AS first_exec_t FROM tool_calls c")
    if table == "tool_calls":
        return "SELECT *, NULL AS first_exec_t FROM tool_calls"
    return f'SELECT * FROM "{table}"'


def read_run(run_dir: Path) -> RunRecord:
    """The verdict, the official result and the rows a log shows, from one sealed run.
    A tampered run's evidence is not evidence: only its verdict is exported."""
    verdict = judge(run_dir, direction_for=task_direction).model_dump(mode="json")
    _, result = latest_result(run_dir)
    if verdict["status"] == "tampered" or not (run_dir / DB_NAME).is_file():
        run = {"run_id": verdict.get("run_id"), "task": verdict.get("task")}
        return RunRecord(run_dir, run, verdict, result, {})
    con = duckdb.connect(str(run_dir / DB_NAME), read_only=True)
    try:
        tables = _tables(con)
        rel = con.sql("SELECT * FROM run")
        run = dict(zip(rel.columns, rel.fetchall()[0], strict=True))
        harness = _rows(con, "harness_events", "SELECT * FROM harness_events ORDER BY seq")
        start = next((r.fields["detail"] for r in harness if r.fields["kind"] == "start"), None) or {}
        rec = RunRecord(run_dir, run, verdict, result, start)
        rec.counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in sorted(tables)}
        cited = _cited(verdict)
        shown: list[Row] = []
        for table in sorted(tables | {t for t, _ in cited}):
            seqs = sorted({int(seq) for t, seq in cited if t == table})
            where = SHOWN.get(table, "false") + (f" OR seq IN ({', '.join(map(str, seqs))})" if seqs else "")
            if table in tables and table not in TRANSCRIPT and where != "false":
                shown += _rows(con, table, f"SELECT * FROM ({_select(table, tables)}) WHERE {where} ORDER BY seq")
        transcript: list[Row] = []
        for table in TRANSCRIPT:
            if table in tables:
                transcript += _rows(con, table, f"SELECT * FROM ({_select(table, tables)}) ORDER BY seq")
        agent_events = _rows(con, "agent_events", "SELECT * FROM agent_events ORDER BY seq") \
            if "agent_events" in tables else []
    finally:
        con.close()
    for row in shown + transcript:
        row.cited_by = cited.get((row.table, row.seq), [])
    rec.events = shown
    summary = next((e.fields["detail"] for e in agent_events if e.fields["kind"] == "parse_summary"), {}) or {}
    lines = {"stream": summary.get("lines") or 0, "rollout": summary.get("rollout:lines") or 0}
    rec.transcript = _transcript_order(transcript, lines)
    rec.model, rec.model_source = _model(run, agent_events)
    texts = [r for r in rec.transcript if r.table == "messages" and r.fields["role"] == "assistant"
             and r.fields["kind"] == "text"]
    rec.final_text = texts[-1].fields["text"] if texts else None
    return rec


# -- building the log -----------------------------------------------------------------------------
def _inspect() -> SimpleNamespace:
    """The inspect_ai modules, or one line saying what to install."""
    try:
        import inspect_ai.event as event
        import inspect_ai.log as log
        import inspect_ai.model as model
        import inspect_ai.scorer as scorer
        import inspect_ai.tool as tool
        import inspect_ai.viewer as viewer
    except ImportError:
        raise MissingExtra("inspect-ai", "inspect", "exporting runs as Inspect logs") from None
    return SimpleNamespace(event=event, log=log, model=model, scorer=scorer, tool=tool, viewer=viewer)


def _when(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def _iso(t: float | None) -> str | None:
    when = _when(t)
    return None if when is None else when.isoformat()


def _cap(text: Any) -> Any:
    if isinstance(text, str) and len(text) > TEXT_CAP:
        return text[:TEXT_CAP] + f"... [{len(text) - TEXT_CAP} more characters in the evidence]"
    return text


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _public(row: Row) -> dict[str, Any]:
    """The row's fields for a reader (no hash-chain plumbing), text capped."""
    return _jsonable({k: _cap(v) for k, v in row.fields.items() if k not in ("prev", "h", "mono")})


def _sentence(row: Row) -> str:
    """One line saying what the row shows, for the event's data."""
    f = row.fields
    argv = shlex.join(f["argv"]) if f.get("argv") else None
    if row.table == "harness_events":
        what = {"start": "run started", "agent_started": "agent started", "agent_exited": "agent exited",
                "deadline": "deadline reached", "sigterm": "watchdog sent SIGTERM", "sigkill": "watchdog sent SIGKILL",
                "survivor": "process survived the run", "sensor_died": "a sensor died", "end": "run ended"}
        return what.get(f["kind"], f["kind"]) + (f": {argv}" if argv and f["kind"] != "start" else "")
    if row.table == "net_attempts":
        return f"{f['syscall']} to {f['address']} port {f['port']} by pid {f['pid']}: {argv or f.get('exe')}"
    if row.table == "file_events":
        return f"{f['event']} {f['path']} (watched root {f['root']})"
    if row.table == "proxy_connections":
        return f"proxy {f['verdict']} pid {f['pid']} -> {f['target']} ({f.get('reason') or ''}): {argv or ''}"
    if row.table == "scores":
        official = f["official"] if f["official"] is not None else (f["failure"] or "not evaluated")
        return f"checkpoint {f['path']}: official {official} (selected_by {f['selected_by']})"
    if row.table == "snapshots":
        return f"snapshot {f['phase']} {f['scope']}/{f['path']} sha256 {f['sha256']}"
    if row.table == "messages":
        return f"{f['role']} {f['kind']} (line {f['line']}): {_cap(f['text'])}"
    return f"{row.table} #{row.seq}"


def _source(row: Row) -> str:
    if row.table == "harness_events":
        return "onegc watchdog" if row.fields["kind"] in WATCHDOG_KINDS else "onegc harness"
    return {"net_attempts": "onegc network", "file_events": "onegc files", "proxy_connections": "onegc proxy",
            "scores": "onegc scoring"}.get(row.table, f"onegc {row.table}")


def _uuid(*parts: Any) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:22]


def _arguments(call: dict[str, Any]) -> dict[str, Any]:
    return _jsonable(call["input"] if isinstance(call["input"], dict) else {"input": call["input"]})


def _tool_error(ins: Any, call: dict[str, Any]) -> Any:
    """A failed or refused call as Inspect's tool error (None when it completed)."""
    if call["status"] not in ("error", "denied"):
        return None
    kind = "permission" if call["status"] == "denied" else "unknown"
    return ins.tool.ToolCallError(kind, call["error"] or call["output"] or call["status"])


def _event(ins: Any, rec: RunRecord, row: Row, base: dict[str, Any]) -> Event:
    """One evidence row as an Inspect event whose metadata names the row."""
    f = row.fields
    kw = dict(base, uuid=_uuid(rec.run.get("run_id"), row.table, row.seq), metadata=row.ref)
    if row.table == "execs":
        options = {k: f[k] for k in ("pid", "ppid", "uid", "cwd", "path", "syscall", "call_id", "attribution")}
        return ins.event.SandboxEvent(action="exec", cmd=shlex.join(f["argv"] or [f["path"] or ""]),
                                      options=_jsonable(options), **kw)
    if row.table == "file_events" and f["event"] in WRITE_EVENTS + ("open",):
        action = "read_file" if f["event"] == "open" else "write_file"
        return ins.event.SandboxEvent(action=action, file=f["path"], options={"event": f["event"], "root": f["root"]},
                                      **kw)
    if row.table == "tool_calls":
        kw["metadata"] = dict(row.ref, status=f["status"], exit_code=f["exit_code"], exec_seqs=f["exec_seqs"],
                              source=f["source"], line=f["line"])
        return ins.event.ToolEvent(id=f["call_id"], function=f["tool"], arguments=_arguments(f),
                                   result=f["output"] or "", error=_tool_error(ins, f), completed=_when(f["ended_t"]),
                                   message_id=_uuid(rec.run.get("run_id"), "tool-result", row.seq), **kw)
    data = {"act": _sentence(row), **({"cited_by": row.cited_by} if row.cited_by else {}), "row": _public(row)}
    return ins.event.InfoEvent(source=_source(row), data=data, **kw)


def _violation(ins: Any, rec: RunRecord, row: Row, tag: str, base: dict[str, Any]) -> Event:
    """A marker right after a cited act, shown by Inspect's default event filter (which hides
    sandbox events): the rule, the verdict's sentence, and the row it cites."""
    rule_id = tag.split()[0]
    rule = next(r for r in rec.verdict["rules"] if r["id"] == rule_id)
    cited = next((c for c in rule["rows"] if (c["table_name"], c["seq"]) == (row.table, row.seq)), {})
    effect = "disqualifies" if rule["disqualifies"] else rule["severity"]
    text = f"{tag} ({rule['title']}; {effect}): {cited.get('sentence', '')}\ncited row: {row.table} #{row.seq}"
    return ins.event.InfoEvent(source=f"onegc verdict: {tag}", data=text,
                               uuid=_uuid(rec.run.get("run_id"), "cited", tag, row.table, row.seq),
                               metadata={"table": row.table, "seq": row.seq, "rule": rule_id,
                                         "outcome": rule["outcome"], "marker": True}, **base)


def _messages(ins: Any, rec: RunRecord) -> list[ChatMessage]:
    """The agent's transcript: what it said, and each tool call followed by its result."""
    m = ins.model
    run_id = rec.run.get("run_id")
    out: list[ChatMessage] = []
    for row in rec.transcript:
        f = row.fields
        meta = {"table": row.table, "seq": row.seq, "source": f.get("source") or "stream", "line": f["line"]}
        if row.cited_by:
            meta["cited_by"] = row.cited_by
        if row.table == "messages":
            if f["kind"] == "reasoning":
                content: Any = [m.ContentReasoning(reasoning=f["text"] or "")]
            else:
                content = f["text"] or ""
            cls = {"assistant": m.ChatMessageAssistant, "user": m.ChatMessageUser,
                   "system": m.ChatMessageSystem}[f["role"]]
            out.append(cls(id=_uuid(run_id, "msg", row.seq), content=content, metadata=meta))
            continue
        call = ins.tool.ToolCall(id=f["call_id"], function=f["tool"], arguments=_arguments(f))
        out.append(m.ChatMessageAssistant(id=_uuid(run_id, "call", row.seq), content="", tool_calls=[call],
                                          metadata=meta))
        if f["status"] == "pending":  # no result ever arrived
            continue
        out.append(m.ChatMessageTool(id=_uuid(run_id, "tool-result", row.seq), content=f["output"] or "",
                                     tool_call_id=f["call_id"], function=f["tool"], error=_tool_error(ins, f),
                                     metadata=dict(meta, status=f["status"], exit_code=f["exit_code"])))
    return out


def _rule_rows(rule: dict) -> list[dict]:
    keep = ("table_name", "seq", "t", "pid", "argv", "path", "sentence", "kind", "check")
    return [_jsonable({k: row.get(k) for k in keep}) for row in rule["rows"]]


def _scores(ins: Any, rec: RunRecord) -> dict[str, Any]:
    """The verdict (its status as the value) and the official score."""
    v = rec.verdict
    fired = [r for r in v.get("rules", []) if r["outcome"] in ("fail", "attempt")]
    # plain text: the log is marked untrusted, so the viewer shows no markdown
    lines = [f"verdict: {v['status']}"] + [f"- {reason}" for reason in v.get("reasons", [])]
    for rule in fired:
        lines.append(f"\n{rule['id']} {rule['title']}: {rule['outcome']}"
                     + (" (disqualifies)" if rule["disqualifies"] else f" ({rule['severity']})"))
        lines += [f"- {row['output']}" for row in rule["rows"]]
        if rule["rows_total"] > len(rule["rows"]):
            lines.append(f"- ... {rule['rows_total'] - len(rule['rows'])} more rows in the evidence")
    verdict = ins.scorer.Score(
        value=v["status"],
        answer=v["status"],
        explanation="\n".join(lines),
        metadata=_jsonable({
            "status": v["status"],
            "counts_for_aggregates": v["status"] == "accepted",
            "disqualified_by": v.get("disqualified_by", []),
            "warnings": v.get("warnings", []),
            "reasons": v.get("reasons", []),
            "rules_fired": [{"id": r["id"], "title": r["title"], "outcome": r["outcome"], "severity": r["severity"],
                             "disqualifies": r["disqualifies"], "summary": r["summary"], "rows_total": r["rows_total"],
                             "rows": _rule_rows(r)} for r in fired],
            "rules": {r["id"]: r["outcome"] for r in v.get("rules", [])},
            "integrity": (v.get("integrity") or {}).get("status"),
            "policy": (v.get("policy") or {}).get("name"),
            "rules_sha256": v.get("rules_sha256"),
        }),
    )
    official = _official(ins, rec)
    return {"verdict": verdict, "official": official}


def _official(ins: Any, rec: RunRecord) -> Any:
    score = rec.verdict.get("score")
    result = rec.result if isinstance(rec.result, dict) else {}
    counts = rec.verdict["status"] == "accepted"
    note = "counts for the aggregates" if counts else f"does not count: the run is {rec.verdict['status']}"
    if score:
        value, checkpoint = score["official"], score["checkpoint"]
    elif result.get("outcome") == "scored" and result.get("value") is not None:
        value, checkpoint = result["value"], result.get("checkpoint")
    else:
        reason = result.get("no_score_reason") or "the run holds no official score"
        return ins.scorer.Score.unscored(reason=str(reason), explanation=f"no official score: {reason}",
                                         metadata={"counts_for_aggregates": False})
    metric = result.get("metric") or "official"
    return ins.scorer.Score(
        value=float(value),
        answer=str(checkpoint),
        explanation=f"official {metric} = {value:.6g} from {checkpoint}, by the task's original evaluator "
                    f"in isolation; {note}",
        metadata=_jsonable({"checkpoint": checkpoint, "metric": metric, "direction": task_direction(rec.task),
                            "counts_for_aggregates": counts, "self_reported_gap": result.get("gap")}),
    )


def _input(rec: RunRecord) -> str:
    argv = rec.run.get("argv")
    if argv:
        return shlex.join(argv)
    if rec.imported:
        return f"(imported {rec.start['provenance'].get('format')} transcript: the agent's prompt is not part of it)"
    return "(no record of how the agent was started)"


def _task_spec(task: str) -> Any:
    """The task's registry entry, or None for a task it does not know (test tasks)."""
    from onegc.tasks import registry

    try:
        return registry.get_task(task)
    except OnegcError:
        return None


def _target(task: str) -> str:
    spec = _task_spec(task)
    return f"{spec.metric} ({spec.direction} is better) on the {spec.eval_split} split" if spec else ""


def _metadata(rec: RunRecord, exported: Counter) -> dict[str, Any]:
    """Everything the Inspect model has no field for."""
    run = rec.run
    start = rec.start
    return _jsonable({
        "run_dir": str(rec.run_dir),
        "run_id": run.get("run_id"),
        "agent": rec.label,
        "task": rec.task,
        "rep": run.get("rep"),
        "status": rec.verdict["status"],
        "imported": rec.imported,
        "provenance": start.get("provenance"),
        "model": rec.model,
        "model_source": rec.model_source,
        "budget_s": run.get("budget_s"),
        "grace_s": run.get("grace_s"),
        "end_reason": run.get("end_reason"),
        "agent_exit_code": run.get("agent_exit_code"),
        "agent_uid": run.get("agent_uid"),
        "complete": run.get("complete"),
        "incomplete_reasons": run.get("incomplete_reasons"),
        "sensors": start.get("sensors"),
        "locked": start.get("locked"),
        "host": start.get("host"),
        "integrity": rec.verdict.get("integrity"),
        "evidence_rows": rec.counts,
        "exported_rows": dict(exported),
        "not_exported": "the other rows (workspace and scratch file events, PATH probes, allowed proxy "
                        "connections, snapshots, resource samples, sensor health, agent stream events) stay "
                        "in evidence.duckdb: `onegc-audit sql` reads them",
    })


def build_sample(ins: Any, rec: RunRecord, sample_id: str) -> EvalSample:
    """One run as one sample."""
    run_id = rec.run.get("run_id")
    start_t = rec.run.get("started_at")
    messages = _messages(ins, rec)
    calls = [r for r in rec.transcript if r.table == "tool_calls"]
    rows = sorted(calls + rec.events, key=_event_time)  # stable: a call before the process it started
    events: list[Event] = []
    last = start_t
    for row in rows:
        t = _event_time(row)
        t = t if t is not None else last
        last = t if t is not None else last
        base: dict[str, Any] = {"working_start": max(0.0, (t or 0) - (start_t or t or 0))}
        if t is not None:
            base["timestamp"] = _when(t)
        events.append(_event(ins, rec, row, base))
        events += [_violation(ins, rec, row, tag, base) for tag in row.cited_by]
    scores = _scores(ins, rec)
    score_sources = {"verdict": "rules engine verdict (onegc-audit verify)",
                     "official": "scores table (official scoring), as the verdict or result.json reports it"}
    end_t = rec.run.get("ended_at") or last
    for name, score in scores.items():
        base = {"working_start": max(0.0, (end_t or 0) - (start_t or end_t or 0))}
        if end_t is not None:
            base["timestamp"] = _when(end_t)
        events.append(ins.event.ScoreEvent(score=score, scorer=name, uuid=_uuid(run_id, "score", name),
                                           metadata={"from": score_sources[name]},
                                           **base))
    exported = Counter(r.table for r in rows)
    final = ins.model.ChatMessageAssistant(id=_uuid(run_id, "output"), content=rec.final_text or "",
                                           model=rec.model)
    output = ins.model.ModelOutput(model=rec.model or "unknown",
                                   choices=[ins.model.ChatCompletionChoice(message=final, stop_reason="stop")])
    return ins.log.EvalSample(
        id=sample_id,
        epoch=1,
        input=_input(rec),
        target=_target(rec.task),
        messages=messages,
        output=output,
        scores=scores,
        metadata={"onegc": _metadata(rec, exported)},
        events=events,
        started_at=_iso(start_t),
        completed_at=_iso(rec.run.get("ended_at")),
        total_time=(rec.run["ended_at"] - start_t) if start_t and rec.run.get("ended_at") else None,
        uuid=_uuid(run_id, "sample", rec.run_dir),
    )


def _event_time(row: Row) -> float:
    """When the act happened: a tool call at its start, else at its first process, else at its
    end (the parser's own `t` is when the stream was read, after the agent)."""
    f = row.fields
    if row.table == "tool_calls":
        t = next((x for x in (f["started_t"], f.get("first_exec_t"), f["ended_t"]) if x is not None), None)
    elif row.table == "scores":
        t = f["observed_t"] if f["observed_t"] is not None else f["t"]
    else:
        t = row.t
    return t if t is not None else float("inf")


def _package(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _model_name(recs: list[RunRecord]) -> str:
    """Inspect's `provider/model`: the model most of the runs name, else the agent preset's."""
    from onegc.harness.agents import PRESETS

    named = Counter(r.model for r in recs if r.model)
    model = named.most_common(1)[0][0] if named else None
    preset = PRESETS.get(recs[0].label)
    if model is None and preset is not None:
        model = preset.model
    if model is None:
        return "onegc/unknown"
    if "/" in model and preset is None:
        return model
    return f"{preset.provider if preset else 'onegc'}/{model}"


def build_log(ins: Any, recs: list[RunRecord]) -> EvalLog:
    """One agent x task as one log, a sample per run (by repetition)."""
    from onegc.harness.agents import PRESETS

    first = recs[0]
    label, task = first.label, first.task
    ids = [f"r{r.run.get('rep')}" for r in recs]
    dup = {i for i, n in Counter(ids).items() if n > 1}  # same agent x task x rep under two roots
    ids = [f"{i} ({r.run_dir})" if i in dup else i for i, r in zip(ids, recs, strict=True)]
    samples = [build_sample(ins, r, i) for r, i in zip(recs, ids, strict=True)]
    starts = [r.run.get("started_at") for r in recs if r.run.get("started_at")]
    ends = [r.run.get("ended_at") for r in recs if r.run.get("ended_at")]
    created = _iso(min(starts)) if starts else datetime.now(UTC).isoformat()
    eval_id = _uuid("onegc", label, task, *sorted(str(r.run_dir) for r in recs))
    preset = PRESETS.get(label)
    statuses = Counter(r.verdict["status"] for r in recs)
    accepted = [s.scores["official"].value for s in samples if s.scores["verdict"].value == "accepted"]
    imported = any(r.imported for r in recs)
    spec_meta = {"onegc": _jsonable({
        "agent": label, "task": task, "runs": [str(r.run_dir) for r in recs], "statuses": dict(statuses),
        "imported_runs": sum(r.imported for r in recs),
        "preset": {"cli": preset.cli, "model": preset.model, "provider": preset.provider,
                   "description": preset.description} if preset else None,
    })}
    task_spec = _task_spec(task)
    spec = ins.log.EvalSpec(
        eval_id=eval_id,
        run_id=eval_id,
        created=created,
        task=task,
        task_id=_uuid("task", task),
        task_display_name=f"{task_spec.id} {task_spec.title}" if task_spec else None,
        solver=label,
        solver_args=spec_meta["onegc"]["preset"],
        tags=["onegc-audit", *(["imported"] if imported else [])],
        dataset=ins.log.EvalDataset(name=task, samples=len(samples), sample_ids=ids),
        model=_model_name(recs),
        config=ins.log.EvalConfig(epochs=1, time_limit=int(first.run["budget_s"]) if first.run.get("budget_s")
                                  else None),
        packages={k: v for k, v in (("onegc-audit", _package("onegc-audit")),
                                    ("inspect_ai", _package("inspect-ai"))) if v},
        metadata=spec_meta,
        viewer=_viewer(ins, task),
    )
    metrics = {"accepted_rate": ins.log.EvalMetric(name="accepted_rate", value=statuses["accepted"] / len(recs))}
    for status in sorted(statuses):  # how many runs of each verdict
        metrics[status] = ins.log.EvalMetric(name=status, value=statuses[status])
    official = {"mean_accepted": ins.log.EvalMetric(
        name="mean_accepted", value=sum(accepted) / len(accepted) if accepted else float("nan"))}
    results = ins.log.EvalResults(
        total_samples=len(samples),
        completed_samples=len(samples),
        scores=[ins.log.EvalScore(name="verdict", scorer="verdict", metrics=metrics, scored_samples=len(samples)),
                ins.log.EvalScore(name="official", scorer="official", metrics=official,
                                  scored_samples=len(accepted), unscored_samples=len(samples) - len(accepted))],
    )
    stats = ins.log.EvalStats(started_at=created, completed_at=_iso(max(ends)) if ends else "")
    return ins.log.EvalLog(status="success", eval=spec, results=results, stats=stats, samples=samples,
                           tags=spec.tags or [], metadata=spec_meta)


VERDICT_COLOURS = {"accepted": "good", "no_score": "muted", "disqualified": "bad", "incomplete": "warn",
                   "tampered": "bad"}


def _viewer(ins: Any, task: str) -> Any:
    """The sample list shows each run's verdict (coloured) and official score; everything the
    agent wrote is shown as plain text (the agent is an adversary: no rich rendering, no
    links, invisible characters made visible)."""
    v = ins.viewer
    direction = task_direction(task)
    palette = {"lower": "good-low", "higher": "good-high"}.get(direction or "", "neutral")
    view = v.TaskSamplesView(
        name="onegc verdicts",
        columns=[v.TaskSamplesColumn(id="sampleId"), v.TaskSamplesColumn.score("verdict"),
                 v.TaskSamplesColumn.score("official"), v.TaskSamplesColumn(id="input", visible=False),
                 v.TaskSamplesColumn(id="duration")],
        score_color_scales={"verdict": VERDICT_COLOURS, "official": palette},
    )
    return v.ViewerConfig(trust_content=False, task_samples_view=view)


def _file_name(log: EvalLog, label: str, task: str, ext: str) -> str:
    """Inspect's own naming (`<created>_<task>_<id>.eval`), the agent added to the task part."""
    stamp = re.sub(r"[:]", "-", log.eval.created.split(".")[0]).replace("+00-00", "")
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", f"{task}-{label}").strip("-")
    return f"{stamp}+00-00_{slug}_{log.eval.eval_id}.{ext}"


@dataclass
class Exported:
    path: Path
    agent: str
    task: str
    samples: int
    statuses: dict[str, int]


def export(path: Path, out: Path, log_format: str = "eval") -> list[Exported]:
    """Every sealed run under `path` as Inspect logs in `out`, one per agent x task."""
    if log_format not in LOG_FORMATS:
        raise ExportError(f"--log-format must be one of {', '.join(LOG_FORMATS)}")
    ins = _inspect()
    if not path.exists():
        raise ExportError(f"{path}: no such run or runs directory")
    runs = find_runs(path)
    if not runs:
        raise ExportError(f"{path}: no sealed run here (a run directory holds manifest.json)")
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for run_dir in runs:
        rec = read_run(run_dir)
        groups.setdefault((rec.label, rec.task), []).append(rec)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    done = []
    for (label, task), recs in sorted(groups.items()):
        recs.sort(key=lambda r: (r.run.get("rep") or 0, str(r.run_dir)))
        log = build_log(ins, recs)
        target = out / _file_name(log, label, task, log_format)
        ins.log.write_eval_log(log, str(target), format=log_format)
        done.append(Exported(target, label, task, len(recs), dict(Counter(r.verdict["status"] for r in recs))))
    return done
