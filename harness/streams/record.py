"""The before-seal step: agent/stdout.log (and Codex's rollout) into sealed tables."""

import json
from collections.abc import Callable
from pathlib import Path

from onegc.evidence.journal import journal_path
from onegc.evidence.layout import STDOUT
from onegc.harness.spec import BeforeSeal
from onegc.harness.streams import PARSERS, Parsed
from onegc.harness.streams.attribution import attribute
from onegc.harness.streams.codex import RolloutParser, find_rollout, merge_rollout


def read_journal(run_dir: Path, table: str) -> list[dict]:
    """A sensor's journal as written (the seal has not loaded it yet); a torn tail is skipped."""
    path = journal_path(run_dir, table)
    out = []
    if not path.exists():
        return out
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "seq" in rec:
                out.append(rec)
    return out


def parse_run(run_dir: Path, fmt: str, codex_home: Path | None = None) -> Parsed:
    with open(run_dir / STDOUT, "rb") as fh:
        parsed = PARSERS[fmt]().feed_lines(fh)
    if fmt == "codex" and codex_home is not None:
        thread = next((e.detail.get("thread_id") for e in parsed.events if e.kind == "init"), None)
        rollout = find_rollout(codex_home, thread)
        if rollout is not None:
            with open(rollout, "rb") as fh:
                parsed = merge_rollout(parsed, RolloutParser().feed_lines(fh))
            parsed.counts["rollout_file"] = 1
    return parsed


def write_parsed(post: BeforeSeal, parsed: Parsed) -> None:
    run_dir = post.spec.run_dir
    attributions = attribute(read_journal(run_dir, "execs"), parsed.tool_calls, read_journal(run_dir, "processes"))
    for table, records in (
        ("tool_calls", parsed.tool_calls),
        ("messages", parsed.messages),
        ("agent_events", parsed.events),
        ("exec_attribution", attributions),
    ):
        journal = post.journal(table)
        for rec in records:
            journal.write(**rec.row())
    summary = dict(parsed.counts)
    summary["unattributed_processes"] = len({a.pid for a in attributions if a.attribution == "unattributed"})
    post.journal("agent_events").write(
        line=0, source="stream", kind="parse_summary", detail=summary, raw=None
    )


def stream_step(fmt: str, codex_home: Path | None = None) -> Callable[[BeforeSeal], None]:
    """A before_seal step parsing the agent's stream as `fmt` (claude, codex, opencode)."""
    if fmt not in PARSERS:
        raise ValueError(f"no parser for stream format {fmt!r}")

    def step(post: BeforeSeal) -> None:
        run_dir = post.spec.run_dir
        if not (run_dir / STDOUT).exists():
            post.journal("agent_events").write(
                line=0, source="stream", kind="parse_summary", detail={"no_stdout": 1}, raw=None
            )
            return
        try:
            parsed = parse_run(run_dir, fmt, codex_home)
        except OSError as exc:
            post.reasons.append(f"agent stream unreadable: {exc}")
            return
        write_parsed(post, parsed)

    return step
