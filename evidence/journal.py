"""Append-only, hash-chained JSONL journals: what the sensors write while the run is live.

One journal per evidence table, one JSON object per line. Each record carries the hash of
the previous one, so removing, reordering or editing a record breaks the chain. Lines are
flushed as they are written (a crash of the writer loses nothing already returned) and
fsynced about once a second (a crash of the machine loses at most that).
"""

import hashlib
import itertools
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from onegc.evidence.layout import RunLayout
from onegc.evidence.schema import TABLE_BY_NAME


def canonical(record: dict) -> bytes:
    """The bytes a record's hash covers: sorted keys, no whitespace, everything but `h`."""
    body = {k: v for k, v in record.items() if k != "h"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _printable(value: object) -> object:
    """Lone surrogates (bytes that were not UTF-8) as visible escapes such as \\xff: a JSON
    reader such as DuckDB's refuses them, and a hostile name must not silence a sensor."""
    if isinstance(value, str):
        try:
            value.encode()
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def record_hash(record: dict) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def journal_path(run_dir: Path, table: str) -> Path:
    return RunLayout(run_dir).journal(table)


class Journal:
    """Writer for one table's journal. Thread-safe; one writer process per file."""

    def __init__(self, path: Path, table: str, fsync_every_s: float = 1.0, flush_every_s: float = 0.0) -> None:
        """`flush_every_s` > 0 lets a high-rate writer (the file sensor) batch its writes;
        it must call flush() when a burst ends. Records reach the OS within that delay."""
        if table not in TABLE_BY_NAME:
            raise ValueError(f"unknown evidence table {table!r}")
        self.path = path
        self.table = table
        self._columns = set(TABLE_BY_NAME[table].json_columns)
        self._lock = threading.Lock()
        self._seq = 0
        self._prev = ""
        self._fsync_every = fsync_every_s
        self._last_sync = self._last_flush = time.monotonic()
        self._flush_every = flush_every_s
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "x", encoding="utf-8")  # never reopen or truncate evidence

    def write(self, **fields: object) -> dict:
        unknown = set(fields) - self._columns
        if unknown:
            raise ValueError(f"{self.table}: unknown fields {sorted(unknown)}")
        with self._lock:
            now_wall, now_mono = time.time(), time.monotonic()
            record: dict = {
                "seq": self._seq,
                "t": fields.pop("t", now_wall),
                "mono": fields.pop("mono", now_mono),
                **fields,
                "prev": self._prev,
            }
            try:  # serialised once: hashed, then written with its hash appended
                body = canonical(record)
            except UnicodeEncodeError:  # undecodable bytes from a hostile file name or argv
                record = _printable(record)
                body = canonical(record)
            record["h"] = hashlib.sha256(body).hexdigest()
            self._fh.write(body[:-1].decode() + f',"h":"{record["h"]}"}}\n')
            if now_mono - self._last_flush >= self._flush_every:
                self.flush()
            if now_mono - self._last_sync >= self._fsync_every:
                os.fsync(self._fh.fileno())
                self._last_sync = now_mono
            self._seq += 1
            self._prev = record["h"]
            return record

    def flush(self) -> None:
        self._fh.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()


@dataclass
class ChainCheck:
    """What reading a journal back found."""

    table: str
    records: int = 0
    head: str = ""
    problems: list[str] = field(default_factory=list)
    truncated_tail: bool = False


def read_records(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        yield from enumerate(fh, 1)


H_TAIL = len(',"h":"') + 64 + len('"}')
"""What the writer appends to a record's canonical bytes (less their closing brace)."""
CHUNK_BYTES = 32 << 20
"""A journal larger than this is checked in parallel pieces of at least this size."""


def _check_lines(path: str, start: int, end: int) -> tuple[int, bytes, int, bytes] | None:
    """(records, prev of the first, seq of the first, hash of the last) of the whole lines in
    bytes [start, end), each checked against its own hash and linked to the one before; None
    at the first disagreement or a torn line."""
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    if not data.endswith(b"\n"):
        return None
    lines = data.split(b"\n")
    lines.pop()
    first = lines[0]
    i = first.rfind(b',"prev":"') + 9  # the top-level key: nested ones sort before it, strings cannot hold it
    j = first.rfind(b'"seq":') + 6
    if i < 9 or j < 6:
        return None
    first_prev = first[i : first.find(b'"', i)]
    digits = first[j : j + 20].split(b",", 1)[0].split(b"}", 1)[0]
    if not digits.isdigit():
        return None
    seq = first_seq = int(digits)
    prev, sha = first_prev, hashlib.sha256
    for line in lines:
        if len(line) <= H_TAIL or line[-H_TAIL : -H_TAIL + 6] != b',"h":"' or line[-2:] != b'"}':
            return None
        h = line[-66:-2]
        body = line[:-H_TAIL] + b"}"
        if sha(body).hexdigest().encode() != h or b',"prev":"' + prev + b'"' not in body:
            return None
        if b'"seq":%d,' % seq not in body and b'"seq":%d}' % seq not in body:
            return None
        prev, seq = h, seq + 1
    return len(lines), first_prev, first_seq, prev


def _fast_chain(path: Path, table: str) -> ChainCheck | None:
    """The chain checked on the bytes as written, without parsing or re-serialising a record:
    each line is its record's canonical bytes with their hash appended, so the hash of those
    bytes, the ``seq`` and ``prev`` they hold and the hash they end with must agree. A large
    journal is checked in pieces on every CPU and the pieces' ends joined. None at the first
    disagreement or torn line: the record-by-record check then names it."""
    size = path.stat().st_size
    if size == 0:
        return ChainCheck(table)
    pieces = max(1, min(os.cpu_count() or 1, size // CHUNK_BYTES))
    bounds = [0]
    with open(path, "rb") as fh:
        for k in range(1, pieces):
            fh.seek(size * k // pieces)
            fh.readline()
            if bounds[-1] < fh.tell() < size:
                bounds.append(fh.tell())
    bounds.append(size)
    args = [(str(path), a, b) for a, b in itertools.pairwise(bounds)]
    if len(args) == 1:
        parts = [_check_lines(*args[0])]
    else:
        with multiprocessing.get_context("fork").Pool(len(args)) as pool:
            parts = pool.starmap(_check_lines, args)
    check, head = ChainCheck(table), b""
    for part in parts:
        if part is None or part[1] != head or part[2] != check.records:
            return None
        check.records += part[0]
        head = part[3]
    check.head = head.decode()
    return check


def check_chain(path: Path, table: str) -> ChainCheck:
    """Recompute a journal's hash chain; a torn last line (writer killed mid-write) is
    reported as `truncated_tail`, anything else wrong as a problem."""
    fast = _fast_chain(path, table)
    if fast is not None:
        return fast
    check = ChainCheck(table)
    prev = ""
    lines = list(read_records(path))
    for lineno, line in lines:
        last = lineno == len(lines)
        if not line.endswith("\n") and last:
            check.truncated_tail = True
            break
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            check.problems.append(f"{path.name}:{lineno}: not a JSON record")
            break
        if not isinstance(rec, dict) or rec.get("seq") != check.records:
            check.problems.append(f"{path.name}:{lineno}: record out of sequence (removed or reordered)")
            break
        if rec.get("prev") != prev:
            check.problems.append(f"{path.name}:{lineno}: chain broken (previous record changed or removed)")
            break
        if record_hash(rec) != rec.get("h"):
            check.problems.append(f"{path.name}:{lineno}: record content does not match its hash")
            break
        prev = rec["h"]
        check.records += 1
    check.head = prev
    return check
