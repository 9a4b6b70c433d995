"""Codex CLI `exec --json`, and the session rollout it writes under CODEX_HOME.

The stream is lossy for tool calls: `command_execution` items carry no tool name, call id
or raw arguments, and a call its sandbox rejected leaves no item at all. The rollout
(`sessions/YYYY/MM/DD/rollout-*-<thread_id>.jsonl`) holds the raw Responses items
(`function_call`, `custom_tool_call` and their `*_output`), so when it is at hand the calls
come from there and the stream's items only add what they know (exit code, status).
"""

import json
import re
import shlex
from pathlib import Path
from typing import Any

from onegc.harness.streams.base import StreamParser, pick, text_of
from onegc.harness.streams.model import Message, Parsed, ToolCall, as_text, shell_command, wall

EXITED_RE = re.compile(r"Process exited with code (-?\d+)")
ITEM_TOOLS = {"command_execution", "file_change", "mcp_tool_call", "web_search"}
BASH_LC = re.compile(r"^(?:/bin/|/usr/bin/)?(?:ba|z)?sh -lc (.*)$", re.S)


def unwrap(command: str) -> str:
    """`/bin/bash -lc 'echo hi'` -> `echo hi` (Codex wraps what the model asked for)."""
    if not BASH_LC.match(command):
        return command
    try:
        parts = shlex.split(command)
    except ValueError:
        return command
    return parts[2] if len(parts) == 3 and parts[1] == "-lc" else command


class CodexParser(StreamParser):
    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, ToolCall] = {}
        self.thread_id: str | None = None

    def handle(self, n: int, obj: dict[str, Any]) -> bool:
        kind = obj.get("type")
        if kind == "thread.started":
            self.thread_id = str(obj.get("thread_id"))
            self.event(n, "init", pick(obj, "thread_id"))
        elif kind == "turn.started":
            self.event(n, "turn", {})
        elif kind == "turn.completed":
            self.event(n, "usage", pick(obj, "usage"))
        elif kind == "turn.failed":
            self.event(n, "error", pick(obj, "error"))
        elif kind == "error":
            self.event(n, "error", pick(obj, "message"))
        elif kind in ("item.started", "item.updated", "item.completed"):
            return self._item(n, obj["item"], done=kind == "item.completed")
        else:
            return False
        return True

    def _item(self, n: int, item: dict[str, Any], done: bool) -> bool:
        itype = item.get("type")
        item_id = str(item.get("id"))
        if itype == "agent_message":
            if done:
                self.out.messages.append(Message("assistant", "text", text_of(item.get("text")), item_id, n))
                self.out.count("messages")
            return True
        if itype == "reasoning":
            if done:
                self.out.messages.append(
                    Message("assistant", "reasoning", text_of(item.get("text")), item_id, n)
                )
            return True
        if itype == "error":
            self.event(n, "warning", pick(item, "message"))
            return True
        if itype == "todo_list":
            self.event(n, "todo_list", pick(item, "items"))
            return True
        if itype not in ITEM_TOOLS:
            return False
        call = self.calls.get(item_id)
        if call is None or (call.status != "pending" and not done):
            key = item_id if item_id not in self.calls else f"{item_id}#{n}"
            call = ToolCall(key, str(itype), line=n)
            self.calls[item_id] = call
            self.out.tool_calls.append(call)
            self.out.count("tool_calls")
        if itype == "command_execution":
            wrapped = text_of(item.get("command"))
            call.input = {"command": wrapped}
            call.command = unwrap(wrapped)
            call.output = as_text(item.get("aggregated_output"))
            if isinstance(item.get("exit_code"), int):
                call.exit_code = item["exit_code"]
        elif itype == "file_change":
            call.input = {"changes": item.get("changes")}
        elif itype == "mcp_tool_call":
            call.tool = f"mcp:{item.get('server')}/{item.get('tool')}"
            call.input = item.get("arguments")
            call.output = as_text(item.get("result"))
            call.error = as_text(item.get("error"))
        else:
            call.input = pick(item, "query")
        status = item.get("status")
        if done or status in ("completed", "failed"):
            call.status = "error" if status == "failed" or (call.exit_code or 0) != 0 else "completed"
        return True


def find_rollout(codex_home: Path, thread_id: str | None) -> Path | None:
    """The session file of this thread (or the only one, when the stream never named it)."""
    sessions = codex_home / "sessions"
    if not sessions.is_dir():
        return None
    files = sorted(sessions.rglob("rollout-*.jsonl"))
    if thread_id:
        mine = [f for f in files if thread_id in f.name]
        if mine:
            return mine[-1]
    return files[-1] if len(files) == 1 else None


class RolloutParser(StreamParser):
    """The raw Responses items of a Codex session: every call the model made."""

    source = "rollout"

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, ToolCall] = {}

    def handle(self, n: int, obj: dict[str, Any]) -> bool:
        kind = obj.get("type")
        payload = obj.get("payload")
        if kind != "response_item":
            self.out.count(f"rollout_{str(kind)[:40]}")
            return True
        if not isinstance(payload, dict):
            return False
        ptype = str(payload.get("type"))
        t = wall(obj.get("timestamp"))
        if ptype in ("function_call", "custom_tool_call", "local_shell_call"):
            call_id = str(payload.get("call_id") or payload.get("id") or f"line{n}")
            raw_args = payload.get("arguments", payload.get("input", payload.get("action")))
            args: Any = raw_args
            if ptype == "function_call" and isinstance(raw_args, str):
                try:
                    args = json.loads(raw_args)
                except ValueError:
                    args = raw_args
            name = str(payload.get("name") or ptype)
            call = ToolCall(
                call_id, name, args, shell_command(name, args), started_t=t, source="rollout", line=n
            )
            self.calls[call_id] = call
            self.out.tool_calls.append(call)
            self.out.count("tool_calls")
            return True
        if ptype.endswith("_output"):
            call = self.calls.get(str(payload.get("call_id")))
            if call is None:
                return False
            out = payload.get("output")
            if isinstance(out, dict):
                out = out.get("content", out)
            call.output = as_text(out)
            call.ended_t = t
            m = EXITED_RE.search(call.output or "")
            if m:
                call.exit_code = int(m.group(1))
            call.status = "error" if (call.exit_code or 0) != 0 else "completed"
            return True
        if ptype == "message" and payload.get("role") == "assistant":
            text = "\n".join(str(c.get("text", "")) for c in payload.get("content") or [] if isinstance(c, dict))
            self.out.messages.append(Message("assistant", "text", text, str(payload.get("id")), n, t))
            self.out.count("messages")
            return True
        if ptype == "reasoning":
            summary = [str(c.get("text", "")) for c in payload.get("summary") or [] if isinstance(c, dict)]
            if any(summary):
                self.out.messages.append(Message("assistant", "reasoning", "\n".join(summary),
                                                 str(payload.get("id")), n, t))
            return True
        return ptype == "message"  # the prompt (developer, user): not the agent's words


def merge_rollout(stream: Parsed, rollout: Parsed) -> Parsed:
    """Calls from the rollout (complete), with stream-only facts folded in; stream items no
    rollout call explains are kept as they are. The agent's messages come from the rollout too
    when it holds them, so that calls and messages share one file's line numbers and times:
    ordered by line they read as they happened, never interleaved across two files."""
    messages = rollout.messages or stream.messages
    merged = Parsed(messages=messages, counts=dict(stream.counts))
    merged.events = stream.events + rollout.events
    for k, v in rollout.counts.items():
        merged.counts[f"rollout:{k}"] = v
    if rollout.messages:
        merged.counts["messages"] = rollout.counts.get("messages", 0)
    unmatched = list(stream.tool_calls)
    for call in rollout.tool_calls:
        for item in unmatched:
            if item.command is not None and item.command == call.command:
                if item.exit_code is not None:
                    call.exit_code = item.exit_code
                if item.status != "pending":
                    call.status = item.status
                unmatched.remove(item)
                break
        merged.tool_calls.append(call)
    merged.tool_calls += unmatched
    return merged
