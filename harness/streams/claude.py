"""Claude Code `-p --output-format stream-json --verbose`.

One `assistant` line per content block (text, thinking, tool_use), the blocks of one
message sharing `message.id`; tool results come back in `user` lines, joined on
`tool_use_id`; the run ends with a `result` line whose `subtype` is "success" even when
the API failed (`is_error`, `api_error_status` say so). The scripted agents speak it too.
"""

import re
from typing import Any

from onegc.harness.streams.base import StreamParser, pick, text_of
from onegc.harness.streams.model import Message, ToolCall, as_text, shell_command, wall

EXIT_RE = re.compile(r"^(?:Error: )?Exit code (-?\d+)\b")
INIT_FIELDS = ("session_id", "model", "cwd", "tools", "permissionMode", "claude_code_version", "apiKeySource")
RESULT_FIELDS = (
    "subtype",
    "is_error",
    "api_error_status",
    "num_turns",
    "duration_ms",
    "duration_api_ms",
    "stop_reason",
    "total_cost_usd",
    "usage",
    "modelUsage",
    "permission_denials",
    "terminal_reason",
    "result",
)


class ClaudeParser(StreamParser):
    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, ToolCall] = {}
        self.msgs: dict[tuple[str, str], Message] = {}

    def handle(self, n: int, obj: dict[str, Any]) -> bool:
        kind = obj.get("type")
        if kind == "system":
            sub = str(obj.get("subtype"))
            if sub == "init":
                self.event(n, "init", pick(obj, *INIT_FIELDS))
            elif sub == "api_retry":
                self.event(n, "api_retry", pick(obj, "attempt", "max_retries", "error_status", "error"))
            else:
                self.event(n, f"system:{sub[:40]}", {k: v for k, v in obj.items() if k != "type"})
            return True
        if kind == "assistant":
            self._assistant(n, obj)
            return True
        if kind == "user":
            self._user(n, obj)
            return True
        if kind == "result":
            detail = pick(obj, *RESULT_FIELDS)
            self.event(n, "result", detail)
            for denial in obj.get("permission_denials") or []:
                if isinstance(denial, dict) and denial.get("tool_use_id") in self.calls:
                    call = self.calls[denial["tool_use_id"]]
                    call.status = "denied"
            return True
        if kind == "stream_event":
            self.out.count("stream_event")
            return True
        return False

    def _assistant(self, n: int, obj: dict[str, Any]) -> None:
        msg = obj["message"]
        msg_id = str(msg.get("id") or f"line{n}")
        parent = obj.get("parent_tool_use_id")
        if obj.get("error") or msg.get("model") == "<synthetic>":
            self.event(n, "api_error", {"error": obj.get("error"), "model": msg.get("model")})
        for block in msg.get("content") or []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text":
                self._say(n, msg_id, "text", text_of(block.get("text")))
            elif btype in ("thinking", "redacted_thinking"):
                self._say(n, msg_id, "reasoning", text_of(block.get("thinking")))
            elif btype in ("tool_use", "server_tool_use"):
                call_id = str(block.get("id") or f"line{n}")
                name = str(block.get("name"))
                call = self.calls.get(call_id)
                if call is None:
                    call = ToolCall(call_id, name, line=n, parent_call_id=parent)
                    self.calls[call_id] = call
                    self.out.tool_calls.append(call)
                    self.out.count("tool_calls")
                call.input = block.get("input")
                call.command = shell_command(name, call.input)

    def _say(self, n: int, msg_id: str, kind: str, text: str) -> None:
        key = (msg_id, kind)
        if key in self.msgs:
            self.msgs[key].text += "\n" + text
            return
        m = Message("assistant", kind, text, msg_id, n)
        self.msgs[key] = m
        self.out.messages.append(m)
        self.out.count("messages")

    def _user(self, n: int, obj: dict[str, Any]) -> None:
        msg = obj["message"]
        content = msg.get("content")
        if isinstance(content, str):
            self.out.messages.append(Message("user", "text", content, None, n))
            return
        ended = wall(obj.get("timestamp"))
        structured = obj.get("tool_use_result")
        for block in content or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                self.out.messages.append(Message("user", "text", text_of(block.get("text")), None, n))
                continue
            if block.get("type") != "tool_result":
                continue
            call_id = str(block.get("tool_use_id"))
            call = self.calls.get(call_id)
            if call is None:  # a result without its call: keep it, say so
                call = ToolCall(call_id, "?", line=n)
                self.calls[call_id] = call
                self.out.tool_calls.append(call)
                self.out.count("orphan_results")
            call.output = as_text(block.get("content"))
            call.ended_t = ended
            if block.get("is_error"):
                call.status = "error"
                call.error = call.output
                m = EXIT_RE.match(call.output or "")
                if m:
                    call.exit_code = int(m.group(1))
                elif isinstance(structured, str) and EXIT_RE.match(structured):
                    call.exit_code = int(EXIT_RE.match(structured).group(1))
            else:
                call.status = "completed"
                if call.command is not None:
                    call.exit_code = 0
            if isinstance(structured, dict) and structured.get("interrupted"):
                call.error = (call.error or "") + "[interrupted]"
