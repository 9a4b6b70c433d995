"""The three CLI stream parsers on streams shaped like the real CLIs' (agent-clis.md)."""

import json
from pathlib import Path

from onegc.harness.streams import parse_lines
from onegc.harness.streams.codex import RolloutParser, merge_rollout, unwrap


def lines(*objs: object) -> list[bytes]:
    return [(o if isinstance(o, str) else json.dumps(o)).encode() + b"\n" for o in objs]


CLAUDE = lines(
    {"type": "system", "subtype": "init", "session_id": "s1", "model": "claude-opus-4-7", "tools": ["Bash"]},
    {
        "type": "assistant",
        "message": {"id": "msg_1", "content": [{"type": "thinking", "thinking": "Plan: copy."}]},
    },
    {"type": "assistant", "message": {"id": "msg_1", "content": [{"type": "text", "text": "I will copy"}]}},
    {"type": "assistant", "message": {"id": "msg_1", "content": [{"type": "text", "text": "train.py."}]}},
    {
        "type": "assistant",
        "message": {
            "id": "msg_1",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_a",
                    "name": "Bash",
                    "input": {"command": "cp train.py run_1.py"},
                }
            ],
        },
    },
    {
        "type": "assistant",
        "message": {
            "id": "msg_2",
            "content": [
                {"type": "tool_use", "id": "toolu_b", "name": "Bash", "input": {"command": "ls /nope"}}
            ],
        },
    },
    {
        "type": "user",
        "timestamp": "2026-04-20T10:00:01.000Z",
        "message": {
            "role": "user",
            "content": [
                {
                    "tool_use_id": "toolu_a",
                    "type": "tool_result",
                    "content": "(Bash completed)",
                    "is_error": False,
                }
            ],
        },
        "tool_use_result": {"stdout": "", "stderr": "", "interrupted": False},
    },
    {
        "type": "user",
        "message": {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_b",
                    "content": "Exit code 2\nls: cannot access '/nope'",
                    "is_error": True,
                }
            ],
        },
        "tool_use_result": "Error: Exit code 2\nls: cannot access '/nope'",
    },
    {"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 1, "error_status": 500},
    "this is not json {",
    {"type": "brand_new_event", "x": 1},
    {"type": "result", "subtype": "success", "is_error": True, "api_error_status": 500, "num_turns": 2},
)


def test_claude_merges_blocks_by_message_id_and_joins_results():
    p = parse_lines("claude", CLAUDE)
    calls = {c.call_id: c for c in p.tool_calls}
    assert set(calls) == {"toolu_a", "toolu_b"}
    a, b = calls["toolu_a"], calls["toolu_b"]
    assert (a.tool, a.command, a.status, a.exit_code, a.line) == (
        "Bash",
        "cp train.py run_1.py",
        "completed",
        0,
        5,
    )
    assert a.ended_t == 1776679201.0
    assert (b.status, b.exit_code) == ("error", 2)
    assert "cannot access" in b.error
    texts = [(m.msg_id, m.kind, m.text) for m in p.messages]
    assert texts == [("msg_1", "reasoning", "Plan: copy."), ("msg_1", "text", "I will copy\ntrain.py.")]


def test_claude_api_failure_is_an_error_result_not_success():
    p = parse_lines("claude", CLAUDE)
    (result,) = [e for e in p.events if e.kind == "result"]
    assert result.detail["is_error"] is True and result.detail["api_error_status"] == 500
    assert [e.kind for e in p.events].count("api_retry") == 1


def test_claude_unknown_and_malformed_lines_are_kept_verbatim():
    p = parse_lines("claude", CLAUDE)
    kept = {e.kind: e.raw for e in p.events if e.raw is not None}
    assert kept == {"malformed": "this is not json {", "unknown": '{"type": "brand_new_event", "x": 1}'}
    assert p.counts["malformed"] == 1 and p.counts["unknown"] == 1


def test_claude_permission_denial_marks_the_call():
    p = parse_lines(
        "claude",
        lines(
            {
                "type": "assistant",
                "message": {
                    "id": "m",
                    "content": [{"type": "tool_use", "id": "t1", "name": "Write", "input": {}}],
                },
            },
            {"type": "result", "permission_denials": [{"tool_name": "Write", "tool_use_id": "t1"}]},
        ),
    )
    assert p.tool_calls[0].status == "denied"


CODEX = lines(
    {"type": "thread.started", "thread_id": "0199-thread"},
    {"type": "turn.started"},
    {
        "type": "item.started",
        "item": {
            "id": "item_0",
            "type": "command_execution",
            "command": "/bin/bash -lc 'echo hi > out.txt'",
            "aggregated_output": "",
            "exit_code": None,
            "status": "in_progress",
        },
    },
    {
        "type": "item.completed",
        "item": {
            "id": "item_0",
            "type": "command_execution",
            "command": "/bin/bash -lc 'echo hi > out.txt'",
            "aggregated_output": "",
            "exit_code": 0,
            "status": "completed",
        },
    },
    {
        "type": "item.completed",
        "item": {
            "id": "item_1",
            "type": "command_execution",
            "command": "/bin/bash -lc 'ls /nope'",
            "aggregated_output": "ls: no\n",
            "exit_code": 2,
            "status": "failed",
        },
    },
    {"type": "item.completed", "item": {"id": "item_2", "type": "reasoning", "text": "**Planning**"}},
    {"type": "item.completed", "item": {"id": "item_3", "type": "agent_message", "text": "Done."}},
    {"type": "turn.completed", "usage": {"input_tokens": 200, "output_tokens": 40}},
)


def test_codex_items_become_calls_with_the_wrapped_command_unwrapped():
    p = parse_lines("codex", CODEX)
    assert [(c.call_id, c.command, c.exit_code, c.status) for c in p.tool_calls] == [
        ("item_0", "echo hi > out.txt", 0, "completed"),
        ("item_1", "ls /nope", 2, "error"),
    ]
    assert [(m.kind, m.text) for m in p.messages] == [("reasoning", "**Planning**"), ("text", "Done.")]
    assert unwrap("/bin/bash -lc 'echo '\\''a'\\'''") == "echo 'a'"


ROLLOUT = lines(
    {"timestamp": "2026-04-25T10:00:00Z", "type": "session_meta", "payload": {"id": "0199-thread"}},
    {
        "timestamp": "2026-04-25T10:00:01Z",
        "type": "response_item",
        "payload": {
            "type": "function_call",
            "name": "exec_command",
            "call_id": "call_1",
            "arguments": json.dumps({"cmd": "echo hi > out.txt"}),
        },
    },
    {
        "timestamp": "2026-04-25T10:00:02Z",
        "type": "response_item",
        "payload": {
            "type": "function_call_output",
            "call_id": "call_1",
            "output": "Chunk ID: x\nProcess exited with code 0\nOutput:\n",
        },
    },
    {
        "timestamp": "2026-04-25T10:00:03Z",
        "type": "response_item",
        "payload": {
            "type": "function_call",
            "name": "exec_command",
            "call_id": "call_2",
            "arguments": json.dumps({"cmd": "touch /etc/x"}),
        },
    },
    {
        "timestamp": "2026-04-25T10:00:04Z",
        "type": "response_item",
        "payload": {
            "type": "function_call_output",
            "call_id": "call_2",
            "output": "Read-only file system\nProcess exited with code 1\n",
        },
    },
)


def test_codex_rollout_recovers_calls_the_stream_dropped():
    stream = parse_lines("codex", CODEX)
    merged = merge_rollout(stream, RolloutParser().feed_lines(ROLLOUT))
    by_id = {c.call_id: c for c in merged.tool_calls}
    assert by_id["call_1"].tool == "exec_command" and by_id["call_1"].source == "rollout"
    assert by_id["call_2"].command == "touch /etc/x" and by_id["call_2"].exit_code == 1
    assert by_id["call_2"].status == "error"
    assert "item_1" in by_id  # in the stream only: kept
    assert "item_0" not in by_id  # folded into call_1


OPENCODE = lines(
    {"type": "step_start", "timestamp": 1795770137334, "sessionID": "ses_1", "part": {"type": "step-start"}},
    {
        "type": "tool_use",
        "timestamp": 1795770137561,
        "sessionID": "ses_1",
        "part": {
            "type": "tool",
            "tool": "bash",
            "callID": "call_x",
            "state": {
                "status": "completed",
                "input": {"command": "python run_1.py"},
                "output": "val 0.5",
                "metadata": {"exit": 0},
                "time": {"start": 1795770137400, "end": 1795770137500},
            },
        },
    },
    {
        "type": "tool_use",
        "timestamp": 1795770137600,
        "sessionID": "ses_1",
        "part": {
            "type": "tool",
            "tool": "bash",
            "callID": "call_y",
            "state": {
                "status": "error",
                "input": {"command": "pip install x"},
                "error": "The user rejected permission to use this specific tool call.",
            },
        },
    },
    {
        "type": "step_finish",
        "sessionID": "ses_1",
        "part": {"type": "step-finish", "reason": "tool-calls", "tokens": {"total": 120}, "cost": 0},
    },
    {"type": "text", "sessionID": "ses_1", "part": {"type": "text", "text": "Done.", "messageID": "msg_9"}},
    {"type": "error", "sessionID": "ses_1", "error": {"name": "APIError", "data": {"statusCode": 401}}},
)


def test_opencode_tool_use_carries_input_output_exit_and_times():
    p = parse_lines("opencode", OPENCODE)
    x, y = p.tool_calls
    assert (x.call_id, x.command, x.output, x.exit_code, x.status) == (
        "call_x",
        "python run_1.py",
        "val 0.5",
        0,
        "completed",
    )
    assert x.started_t == 1795770137.4 and x.ended_t == 1795770137.5
    assert y.status == "denied"
    assert [m.text for m in p.messages] == ["Done."]
    assert {"init", "usage", "error"} <= {e.kind for e in p.events}


def test_parser_reads_a_file_of_crlf_and_invalid_utf8(tmp_path: Path):
    log = tmp_path / "stdout.log"
    log.write_bytes(b'{"type":"turn.started"}\r\n\xff\xfe garbage\n\n')
    with open(log, "rb") as fh:
        p = parse_lines("codex", list(fh))
    assert p.counts == {"lines": 2, "turn": 1, "malformed": 1, "blank": 1}
    assert p.events[-1].raw == "\ufffd\ufffd garbage"


def test_codex_unwrap_handles_double_quoted_wrapping():
    assert unwrap('/bin/bash -lc "python3 -c \\"print(1)\\""') == 'python3 -c "print(1)"'
    assert unwrap("ls -l") == "ls -l"
