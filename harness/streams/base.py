"""The line loop every parser shares: bytes in, never an exception out."""

import json
from collections.abc import Iterable
from typing import Any

from onegc.harness.streams.model import AgentEvent, Parsed


class StreamParser:
    """Subclasses handle one decoded JSON object per line (`handle`), then `finish`.

    Blank lines are counted; lines that are not JSON are kept verbatim as `malformed`;
    JSON that is not an object, or an object the CLI's schema does not explain, is kept
    verbatim as `unknown`. A handler that trips over an unexpected shape degrades the line
    to `unknown` instead of aborting the parse.
    """

    source = "stream"

    def __init__(self) -> None:
        self.out = Parsed()

    def feed_lines(self, lines: Iterable[bytes]) -> Parsed:
        for n, raw_bytes in enumerate(lines, start=1):
            self.feed(n, raw_bytes)
        self.finish()
        return self.out

    def feed(self, n: int, raw_bytes: bytes) -> None:
        raw = raw_bytes.decode("utf-8", errors="replace").rstrip("\r\n")
        if not raw.strip():
            self.out.count("blank")
            return
        self.out.count("lines")
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            self.out.count("malformed")
            self.out.events.append(AgentEvent(n, "malformed", None, raw, self.source))
            return
        if not isinstance(obj, dict):
            self.out.unknown(n, raw, "not an object", self.source)
            return
        try:
            known = self.handle(n, obj)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
            self.out.unknown(n, raw, f"unexpected shape: {type(exc).__name__}", self.source)
            return
        if not known:
            self.out.unknown(n, raw, f"unknown type {str(obj.get('type'))[:80]!r}", self.source)

    def handle(self, n: int, obj: dict[str, Any]) -> bool:
        """Record what the line says; False when this CLI's schema does not know it."""
        raise NotImplementedError

    def event(self, n: int, kind: str, detail: Any = None) -> None:
        self.out.count(kind)
        self.out.events.append(AgentEvent(n, kind, detail, None, self.source))

    def finish(self) -> None:
        """Called once after the last line."""


def pick(obj: Any, *keys: str) -> dict:
    """The named fields of a dict that are present (for event details)."""
    if not isinstance(obj, dict):
        return {}
    return {k: obj[k] for k in keys if k in obj}


def text_of(value: Any) -> str:
    return value if isinstance(value, str) else ""
