"""OpenCode `run --format json`: an envelope per line (`type`, `timestamp` ms,
`sessionID`, `part` or `error`); a `tool_use` line arrives once per call, when it has
finished, with input, output, exit code and times together."""

from typing import Any

from onegc.harness.streams.base import StreamParser, pick, text_of
from onegc.harness.streams.model import Message, ToolCall, as_text, shell_command, wall

DENIED = ("rejected permission", "permission denied", "auto-rejecting")


class OpencodeParser(StreamParser):
    def __init__(self) -> None:
        super().__init__()
        self.seen_session = False

    def handle(self, n: int, obj: dict[str, Any]) -> bool:
        kind = obj.get("type")
        if not self.seen_session and obj.get("sessionID"):
            self.seen_session = True
            self.event(n, "init", {"session_id": obj.get("sessionID")})
        part = obj.get("part")
        if kind == "error":
            self.event(n, "error", obj.get("error"))
            return True
        if not isinstance(part, dict):
            return False
        if kind == "step_start":
            self.out.count("steps")
            return True
        if kind == "step_finish":
            self.event(n, "usage", pick(part, "reason", "tokens", "cost"))
            return True
        if kind in ("text", "reasoning"):
            msg_kind = "text" if kind == "text" else "reasoning"
            self.out.messages.append(
                Message("assistant", msg_kind, text_of(part.get("text")), part.get("messageID"), n)
            )
            self.out.count("messages")
            return True
        if kind == "tool_use":
            self._tool(n, part)
            return True
        return False

    def _tool(self, n: int, part: dict[str, Any]) -> None:
        state = part.get("state") or {}
        name = str(part.get("tool"))
        call = ToolCall(str(part.get("callID") or part.get("id") or f"line{n}"), name, line=n)
        call.input = state.get("input")
        call.command = shell_command(name, call.input)
        times = state.get("time") or {}
        call.started_t, call.ended_t = wall(times.get("start")), wall(times.get("end"))
        call.output = as_text(state.get("output"))
        meta = state.get("metadata") or {}
        if isinstance(meta.get("exit"), int):
            call.exit_code = meta["exit"]
        status = state.get("status")
        if status == "error":
            call.error = as_text(state.get("error"))
            low = (call.error or "").lower()
            call.status = "denied" if any(d in low for d in DENIED) else "error"
        elif status == "completed":
            call.status = "error" if (call.exit_code or 0) != 0 else "completed"
        self.out.tool_calls.append(call)
        self.out.count("tool_calls")
