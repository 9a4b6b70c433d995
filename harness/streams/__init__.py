"""Parsers for the agent CLIs' structured streams, and the before-seal step that turns
agent/stdout.log into the tool_calls, messages, agent_events and exec_attribution tables."""

from onegc.harness.streams.base import StreamParser
from onegc.harness.streams.claude import ClaudeParser
from onegc.harness.streams.codex import CodexParser, RolloutParser
from onegc.harness.streams.model import AgentEvent, Message, Parsed, ToolCall
from onegc.harness.streams.opencode import OpencodeParser

PARSERS: dict[str, type[StreamParser]] = {
    "claude": ClaudeParser,
    "codex": CodexParser,
    "opencode": OpencodeParser,
}


def parse_lines(fmt: str, lines: list[bytes]) -> Parsed:
    """Parse one stream; `fmt` names the CLI (claude, codex, opencode)."""
    return PARSERS[fmt]().feed_lines(lines)


__all__ = [
    "PARSERS",
    "AgentEvent",
    "ClaudeParser",
    "CodexParser",
    "Message",
    "OpencodeParser",
    "Parsed",
    "RolloutParser",
    "ToolCall",
    "parse_lines",
]
