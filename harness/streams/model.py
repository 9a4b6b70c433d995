"""Normalised records every CLI parser produces, whatever its stream looked like."""

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

CAP = 64 * 1024


def cap(text: str | None) -> str | None:
    """Evidence rows stay bounded: a tool that printed megabytes keeps its first 64 KiB."""
    if text is None or len(text) <= CAP:
        return text
    return text[:CAP] + f"\n[... {len(text) - CAP} characters cut]"


def as_text(value: Any) -> str | None:
    """Tool output as text: strings stay, content-block lists are joined, the rest is JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                parts.append(item["text"])
            elif isinstance(item, str):
                parts.append(item)
            else:
                parts.append(json.dumps(item, ensure_ascii=False))
        return "\n".join(parts)
    return json.dumps(value, ensure_ascii=False)


def wall(value: Any) -> float | None:
    """ISO-8601 strings, Unix seconds or Unix milliseconds to Unix seconds; None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        v = float(value)
        if v != v or v <= 0:
            return None
        return v / 1000.0 if v > 1e11 else v
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


@dataclass
class ToolCall:
    call_id: str
    tool: str
    input: Any = None
    command: str | None = None
    started_t: float | None = None
    ended_t: float | None = None
    output: str | None = None
    exit_code: int | None = None
    status: str = "pending"
    """completed, error, denied or pending (no result seen)."""
    error: str | None = None
    parent_call_id: str | None = None
    source: str = "stream"
    line: int = 0
    exec_seqs: list[int] = field(default_factory=list)
    exec_pids: list[int] = field(default_factory=list)

    def row(self) -> dict:
        return {
            "call_id": self.call_id,
            "tool": self.tool,
            "input": self.input,
            "command": self.command,
            "started_t": self.started_t,
            "ended_t": self.ended_t,
            "output": cap(self.output),
            "exit_code": self.exit_code,
            "status": self.status,
            "error": cap(self.error),
            "parent_call_id": self.parent_call_id,
            "exec_seqs": self.exec_seqs,
            "exec_pids": self.exec_pids,
            "source": self.source,
            "line": self.line,
        }


@dataclass
class Message:
    role: str
    kind: str
    """text or reasoning."""
    text: str
    msg_id: str | None = None
    line: int = 0
    t: float | None = None
    """When the transcript says the message was written (Codex rollouts do); not a column:
    an importer uses it as the row's time."""

    def row(self) -> dict:
        return {
            "role": self.role,
            "kind": self.kind,
            "text": cap(self.text),
            "msg_id": self.msg_id,
            "line": self.line,
        }


@dataclass
class AgentEvent:
    line: int
    kind: str
    detail: Any = None
    raw: str | None = None
    source: str = "stream"

    def row(self) -> dict:
        return {
            "line": self.line,
            "source": self.source,
            "kind": self.kind,
            "detail": self.detail,
            "raw": cap(self.raw),
        }


@dataclass
class Parsed:
    """One stream's worth of records, plus the counts that say how much was understood."""

    tool_calls: list[ToolCall] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    events: list[AgentEvent] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def unknown(self, line: int, raw: str, why: str, source: str = "stream") -> None:
        self.count("unknown")
        self.events.append(AgentEvent(line, "unknown", {"why": why}, raw, source))


def shell_command(tool: str, value: Any) -> str | None:
    """The command a shell tool ran, from its input, whatever the CLI called the field."""
    if not isinstance(value, dict):
        return None
    for key in ("command", "cmd"):
        cmd = value.get(key)
        if isinstance(cmd, str):
            return cmd
        if isinstance(cmd, list) and all(isinstance(c, str) for c in cmd):
            return " ".join(cmd)
    return None
