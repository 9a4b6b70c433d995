"""The filesystem sensor: a dedicated inotify reader in a process of its own.

It never blocks on anything but inotify (no database, no hashing), so the kernel queue
does not overflow under bursts. New directories get watches at once and are rescanned,
because files created before the watch existed raise no event; an IN_Q_OVERFLOW is
counted (the run becomes incomplete) and followed by a full rescan.

Usage (by the harness): python -m onegc.harness.fswatch RUN_DIR PARENT_PID ROOTS_JSON
ROOTS_JSON: [[label, path, recursive], ...]. Prints {"ready": true} once watching and
{"counts": {...}} after SIGTERM, when the queue is drained.
"""

import errno
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from inotify_simple import INotify
from inotify_simple import flags as F

from onegc.evidence.journal import Journal, journal_path
from onegc.harness.kernel import become_sensor

MASK = F.CREATE | F.MODIFY | F.CLOSE_WRITE | F.DELETE | F.MOVED_FROM | F.MOVED_TO | F.ATTRIB | F.DELETE_SELF
NAMES = (
    (F.CREATE, "create"),
    (F.MODIFY, "modify"),
    (F.CLOSE_WRITE, "close_write"),
    (F.DELETE, "delete"),
    (F.MOVED_FROM, "moved_from"),
    (F.MOVED_TO, "moved_to"),
    (F.ATTRIB, "attrib"),
    (F.DELETE_SELF, "delete_self"),
    (F.OPEN, "open"),
)
# inotify reports no reads. Held-out data (Rule 9) is the one root where a read is the
# violation, so only there the watch also asks for IN_OPEN (files only: a directory
# listing, including this watcher's own rescans, is not a read of held-out data).
READ_WATCHED = {"heldout"}


def _ctime(entry: os.DirEntry) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_ctime
    except OSError:
        return float("inf")  # vanished or unreadable: report it rather than hide it


class Watcher:
    def __init__(self, run_dir: Path, roots: list[tuple[str, str, bool]]) -> None:
        self.ino = INotify()
        self.journal = Journal(journal_path(run_dir, "file_events"), "file_events", flush_every_s=0.2)
        self.roots = roots
        self.wds: dict[int, tuple[str, str, bool]] = {}  # wd -> (label, dir path, recursive)
        self.counts: Counter[str] = Counter()
        self.started = time.time() - 1.0  # ctime granularity and clock skew margin

    def watch_tree(self, label: str, top: str, recursive: bool, report_found: bool, since: float = 0.0) -> None:
        """Watch `top` (and below it when recursive); with report_found, journal what is
        already there (a rescan: the history of those files is unknown) and changed at or
        after `since` (ctime, which an unprivileged process cannot set back)."""
        stack = [top]
        while stack:
            d = stack.pop()
            try:
                wd = self.ino.add_watch(d, MASK | (F.OPEN if label in READ_WATCHED else 0))
            except OSError as exc:
                # A directory gone before its watch (a short-lived temp dir) hid nothing: its
                # create and delete are in its parent's events. Anything else (the watch
                # limit, permissions) leaves a blind spot.
                vanished = exc.errno in (errno.ENOENT, errno.ENOTDIR)
                self.counts["vanished_dirs" if vanished else "watch_errors"] += 1
                continue
            self.wds[wd] = (label, d, recursive)
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                is_dir = e.is_dir(follow_symlinks=False)
                if report_found and (not since or _ctime(e) >= since):
                    self.journal.write(root=label, path=e.path, event="rescan_found", is_dir=is_dir, cookie=0)
                if is_dir and recursive:
                    stack.append(e.path)

    def start(self) -> None:
        for label, path, recursive in self.roots:
            if os.path.isdir(path):
                self.watch_tree(label, path, recursive, report_found=False)

    def handle(self, events: list) -> None:
        for ev in events:
            if ev.mask & F.Q_OVERFLOW:
                self.counts["overflows"] += 1
                for label, path, recursive in self.roots:  # what changed since we started
                    if os.path.isdir(path):
                        self.watch_tree(label, path, recursive, report_found=True, since=self.started)
                continue
            if ev.wd not in self.wds:
                continue
            label, d, recursive = self.wds[ev.wd]
            if ev.mask & F.IGNORED:
                del self.wds[ev.wd]
                continue
            path = os.path.join(d, ev.name) if ev.name else d
            is_dir = bool(ev.mask & F.ISDIR)
            for bit, name in NAMES:
                if ev.mask & bit and not (bit == F.OPEN and is_dir):
                    self.journal.write(root=label, path=path, event=name, is_dir=is_dir, cookie=ev.cookie)
                    self.counts["events"] += 1
            if is_dir and recursive and ev.mask & (F.CREATE | F.MOVED_TO):
                self.watch_tree(label, path, recursive, report_found=True)


def main() -> None:
    run_dir, parent, roots = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    stopping = become_sensor(parent)
    w = Watcher(run_dir, [tuple(r) for r in roots])
    w.start()
    print(json.dumps({"ready": True, "watches": len(w.wds)}), flush=True)
    while not stopping.is_set():
        w.handle(w.ino.read(timeout=200))
        w.journal.flush()  # a burst is over (or 200 ms passed): its records reach the OS
    while events := w.ino.read(timeout=50):  # drain what the kernel still holds
        w.handle(events)
    w.journal.close()
    print(json.dumps({"counts": dict(w.counts)}), flush=True)


if __name__ == "__main__":
    main()
