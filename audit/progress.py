"""A live status line for long work (a run of 40 to 120 minutes, a tree import, an index refresh,
a sweep), drawn by rich on a terminal and nothing at all elsewhere: a pipe, a file, a Slurm log
or `--json` get exactly the output they got before.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from onegc.evidence.journal import journal_path
from onegc.evidence.layout import CHECKPOINTS, RunLayout
from onegc.harness.streams import PARSERS


def on_terminal(as_json: bool = False) -> bool:
    """Whether a live line may be drawn: both output streams are a terminal and no JSON is asked for."""
    return not as_json and sys.stdout.isatty() and sys.stderr.isatty()


class Status:
    """One line, redrawn in place on stderr while the work runs, erased when it ends."""

    def __init__(self, enabled: bool, follow: Callable[[], str] | None = None) -> None:
        """With follow, the line is whatever follow() returns, asked again every second."""
        self.enabled, self.follow = enabled, follow
        self._live: Live | None = None
        self._drawn = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Status:
        if self.enabled:
            self._live = Live(Text(""), console=Console(stderr=True), transient=True, refresh_per_second=4)
            self._live.start()
            if self.follow is not None:
                self._thread = threading.Thread(target=self._loop, name="onegc-progress", daemon=True)
                self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.show(self.follow())
            except Exception:  # the display never stops the work
                continue

    def show(self, line: str) -> None:
        """Draw `line` now (at most five times a second: a fast loop does not flood the terminal)."""
        if self._live is not None:
            now = time.monotonic()
            drawn = now - self._drawn >= 0.2
            self._live.update(Text(line, overflow="ellipsis", no_wrap=True), refresh=drawn)
            self._drawn = now if drawn else self._drawn

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._live is not None:
            self._live.stop()
            self._live = None


def counted(done: int, total: int, what: str, started: float, current: str = "") -> str:
    """`index 12/340 runs  0:41  runs/opus/t2/r3`: what a loop over many things shows."""
    tail = f"  {current}" if current else ""
    return f"{what} {done}/{total}  {_clock(time.monotonic() - started)}{tail}"


def _clock(seconds: float) -> str:
    m, s = divmod(int(max(seconds, 0)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _Tail:
    """New bytes of a file that grows while it is read (a journal, the agent's stream)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.lines, self._partial = path, 0, 0, b""

    def new_lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(1 << 22)
        except OSError:
            return []
        self.offset += len(data)
        *done, self._partial = (self._partial + data).split(b"\n")
        self.lines += len(done)
        return done


class RunWatcher:
    """Reads a run's journals and stream as the sensors write them, to draw the run's live line:
    elapsed of budget, processes started, file events, network attempts, checkpoints, the last
    tool call. It only reads; the record is the sensors' alone."""

    def __init__(self, run_dir: Path, budget_s: float, stream_fmt: str | None) -> None:
        self.run_dir, self.budget_s = run_dir, budget_s
        self.tails = {t: _Tail(journal_path(run_dir, t)) for t in ("execs", "file_events", "net_attempts")}
        self.stream = _Tail(RunLayout(run_dir).stdout)
        self.parser = PARSERS[stream_fmt]() if stream_fmt in PARSERS else None
        self.started = time.monotonic()

    def line(self) -> str:
        for table, tail in self.tails.items():
            fresh = tail.new_lines()
            if table == "execs":  # a failed PATH probe started nothing
                tail.lines -= sum(1 for raw in fresh if b'"probe":true' in raw)
        last = ""
        if self.parser is not None:
            for n, raw in enumerate(self.stream.new_lines(), start=self.stream.lines + 1):
                self.parser.feed(n, raw)
            if self.parser.out.tool_calls:
                call = self.parser.out.tool_calls[-1]
                last = f"  last: {call.tool} {' '.join((call.command or '').split())[:80]}".rstrip()
        ckpt = RunLayout(self.run_dir).workspace / CHECKPOINTS
        try:
            checkpoints = sum(1 for p in ckpt.iterdir() if p.is_file())
        except OSError:
            checkpoints = 0
        t = self.tails
        return (f"{_clock(time.monotonic() - self.started)} / {_clock(self.budget_s)}  "
                f"processes {t['execs'].lines}  file events {t['file_events'].lines}  "
                f"network attempts {t['net_attempts'].lines}  checkpoints {checkpoints}{last}")
