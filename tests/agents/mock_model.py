"""A stateless mock model on 127.0.0.1 speaking the three wire protocols the CLIs use
(agent-clis.md): Anthropic Messages SSE, OpenAI Responses SSE, Chat Completions SSE.

Each reply is decided from the conversation in the request: with k tool results so far,
it asks for shell command k of the episode; after the last, it answers "Done.". A request
without tools (title generation) gets plain text. Every request is logged.
"""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EPISODES = {
    "clean": ["cp train.py run_1.py", "python3 run_1.py"],
    "violating": [
        "python3 -m pip install --no-index onegc-not-a-package",
        "python3 -c \"import socket; socket.create_connection(('192.0.2.1', 443), timeout=2)\"",
    ],
}


def _sse(events: list[tuple[str | None, dict | str]]) -> bytes:
    out = []
    for name, data in events:
        if name:
            out.append(f"event: {name}")
        out.append("data: " + (data if isinstance(data, str) else json.dumps(data)))
        out.append("")
    return ("\n".join(out) + "\n").encode()


class MockModel:
    def __init__(self, episode: str) -> None:
        self.commands = EPISODES[episode]
        self.requests: list[dict] = []
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):  # noqa: N802
                self.do_HEAD()

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                mock.requests.append({"path": self.path, "body": body})
                if "/messages" in self.path:
                    payload = mock.anthropic(body)
                elif self.path.endswith("/responses"):
                    payload = mock.responses(body)
                elif self.path.endswith("/chat/completions"):
                    payload = mock.chat(body)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()

    def _next(self, done: int) -> str | None:
        return self.commands[done] if done < len(self.commands) else None

    # -- Anthropic Messages ------------------------------------------------------------
    def anthropic(self, body: dict) -> bytes:
        done = sum(
            1
            for m in body.get("messages", [])
            if isinstance(m.get("content"), list)
            for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "tool_result"
        )
        cmd = self._next(done) if body.get("tools") else None
        mid = f"msg_{uuid.uuid4().hex[:16]}"
        usage = {"input_tokens": 10, "output_tokens": 5}
        start = {
            "type": "message_start",
            "message": {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "mock"),
                "content": [],
                "stop_reason": None,
                "usage": usage,
            },
        }
        ev: list = [("message_start", start), ("ping", {"type": "ping"})]
        if cmd is not None:
            block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:16]}", "name": "Bash", "input": {}}
            delta = {
                "type": "input_json_delta",
                "partial_json": json.dumps({"command": cmd, "description": "run"}),
            }
            stop = "tool_use"
        else:
            block = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": "Done." if body.get("tools") else "Mock title"}
            stop = "end_turn"
        ev += [
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 5},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return _sse(ev)

    # -- OpenAI Responses ----------------------------------------------------------------
    def responses(self, body: dict) -> bytes:
        items = body.get("input") or []
        done = sum(1 for i in items if isinstance(i, dict) and str(i.get("type", "")).endswith("_output"))
        cmd = self._next(done) if body.get("tools") else None
        rid = f"resp_{uuid.uuid4().hex[:16]}"
        seq = iter(range(1000))
        if cmd is not None:
            item = {
                "type": "function_call",
                "id": f"fc_{uuid.uuid4().hex[:12]}",
                "call_id": f"call_{uuid.uuid4().hex[:12]}",
                "name": "exec_command",
                "arguments": json.dumps({"cmd": cmd}),
                "status": "completed",
            }
        else:
            item = {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex[:12]}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Done.", "annotations": []}],
            }
        resp = {
            "id": rid,
            "object": "response",
            "status": "in_progress",
            "output": [],
            "model": body.get("model"),
        }
        usage = {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        }
        ev = [
            (
                "response.created",
                {"type": "response.created", "sequence_number": next(seq), "response": resp},
            ),
            (
                "response.in_progress",
                {"type": "response.in_progress", "sequence_number": next(seq), "response": resp},
            ),
            (
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "sequence_number": next(seq),
                    "output_index": 0,
                    "item": {**item, "status": "in_progress"},
                },
            ),
            (
                "response.output_item.done",
                {
                    "type": "response.output_item.done",
                    "sequence_number": next(seq),
                    "output_index": 0,
                    "item": item,
                },
            ),
            (
                "response.completed",
                {
                    "type": "response.completed",
                    "sequence_number": next(seq),
                    "response": {**resp, "status": "completed", "output": [item], "usage": usage},
                },
            ),
        ]
        return _sse(ev)

    # -- Chat Completions ----------------------------------------------------------------
    def chat(self, body: dict) -> bytes:
        done = sum(1 for m in body.get("messages", []) if m.get("role") == "tool")
        cmd = self._next(done) if body.get("tools") else None
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body.get("model", "mock"),
        }
        if cmd is not None:
            call = {
                "index": 0,
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {"name": "bash", "arguments": ""},
            }
            chunks = [
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": None, "tool_calls": [call]},
                            "finish_reason": None,
                        }
                    ],
                },
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "function": {
                                            "arguments": json.dumps({"command": cmd, "description": "run"})
                                        },
                                    }
                                ]
                            },
                            "finish_reason": None,
                        }
                    ],
                },
                {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            ]
        else:
            text = "Done." if body.get("tools") else "Mock title"
            chunks = [
                {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}
                    ],
                },
                {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            ]
        chunks.append(
            {
                **base,
                "choices": [],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )
        return _sse([(None, c) for c in chunks] + [(None, "[DONE]")])
