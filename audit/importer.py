"""Runs recorded elsewhere into run directories: an agent transcript (Claude Code
stream-json, Codex `exec --json` plus its session rollout, OpenCode `run --format json`)
and the artifacts beside it, written with the layout and evidence schema of a monitored
run and sealed incomplete.

Why incomplete: a transcript is the agent's own account. Without the OS sensors (execs,
network, file events, process tree) nothing proves what it left out, so an imported run
can be judged on what it shows but never accepted. The record says so itself: the
`start` event carries the provenance (imported, source files and their sha256, format,
importer version) and names the sensors and tables it lacks.

Dedupe: an import is keyed by the sha256 of its transcript (plus the Codex rollout, when
one is used); RUNS/.imports.json maps keys to run directories, rebuilt from the runs'
own start events when missing, so the same files imported twice make one run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onegc.evidence.errors import OnegcError
from onegc.evidence.journal import Journal, journal_path
from onegc.evidence.layout import CHECKPOINTS, RESULT_NAME, STDOUT, RunLayout
from onegc.evidence.seal import seal, sha256_file
from onegc.harness.spec import HarnessError
from onegc.harness.spec import create_run_dir as create_monitored_run_dir
from onegc.harness.streams import PARSERS, Parsed
from onegc.harness.streams.codex import RolloutParser, merge_rollout

IMPORTER_VERSION = "onegc-import-1"
INDEX_NAME = ".imports.json"
FORMATS = tuple(PARSERS)  # claude, codex, opencode
ABSENT_SENSORS = ("exec", "network", "files", "processes")
# Tables only the OS sensors (or the harness around a live agent) can fill: empty in an
# imported run because nothing watched, not because nothing happened.
ABSENT_TABLES = (
    "execs",
    "net_attempts",
    "file_events",
    "snapshots",
    "resource_samples",
    "sensor_health",
    "exec_attribution",
    "proxy_connections",
    "processes",
    "file_ops",
)
DETECT_LINES = 200
MAX_DETECT_BYTES = 256 * 1024
ROLLOUT_TYPES = {"session_meta", "response_item", "event_msg", "turn_context", "compacted"}
CLAUDE_TYPES = {"system", "assistant", "user", "result", "stream_event"}
CODEX_TYPES = {"thread.started", "turn.started", "turn.completed", "turn.failed"}
ORIG_MOD = b"_orig_mod."
SCORE_KEYS = ("official", "score", "value", "test_score", "val_score", "final_score", "metric_value")


class ImportSourceError(OnegcError):
    """The source cannot be imported (unreadable, no transcript, run exists); one line."""


# -- what a file is ------------------------------------------------------------------------
def _line_kind(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    kind = obj.get("type")
    if kind in ROLLOUT_TYPES and "payload" in obj:
        return "rollout"
    if "sessionID" in obj and ("part" in obj or kind == "error"):
        return "opencode"
    if kind in CODEX_TYPES or (isinstance(kind, str) and kind.startswith("item.") and "item" in obj):
        return "codex"
    if kind in CLAUDE_TYPES and ("session_id" in obj or "message" in obj or "subtype" in obj):
        return "claude"
    return None


def sniff(path: Path) -> str | None:
    """claude, codex, opencode, rollout (a Codex session file), or None: the kind most of
    the first lines speak. Reads at most 256 KiB; garbage lines simply do not vote."""
    votes: dict[str, int] = {}
    try:
        with open(path, "rb") as fh:
            head = fh.read(MAX_DETECT_BYTES)
    except OSError:
        return None
    for raw in head.splitlines()[:DETECT_LINES]:
        try:
            kind = _line_kind(json.loads(raw))
        except (ValueError, RecursionError):
            continue
        if kind:
            votes[kind] = votes.get(kind, 0) + 1
    return max(votes, key=lambda k: votes[k]) if votes else None


# -- one run's sources --------------------------------------------------------------------
@dataclass
class Source:
    """One run as found on disk: its transcript, the rollout and artifacts beside it."""

    transcript: Path | None  # None: a Codex rollout alone (the session file holds the whole run)
    fmt: str
    base: Path | None  # the folder whose other files are this run's artifacts
    rollout: Path | None = None
    artifacts: list[Path] = field(default_factory=list)

    @property
    def result(self) -> Path | None:
        return next((p for p in self.artifacts if p.name == RESULT_NAME and p.parent == self.base), None)


def _transcripts(folder: Path) -> list[tuple[Path, str]]:
    found = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.is_symlink() and p.name != RESULT_NAME and not p.name.startswith("."):
            kind = sniff(p)
            if kind in FORMATS:
                found.append((p, kind))
    return found


def _rollouts(folder: Path) -> list[Path]:
    cands = [p for p in folder.glob("rollout-*.jsonl") if p.is_file()]
    if (folder / "sessions").is_dir():
        cands += [p for p in (folder / "sessions").rglob("rollout-*.jsonl") if p.is_file()]
    return sorted(p for p in cands if sniff(p) == "rollout")


def source_of(path: Path, fmt: str | None = None) -> Source:
    """The run at `path`: a transcript file (artifacts = its folder's other files) or a
    folder holding exactly one transcript."""
    if not path.exists():
        raise ImportSourceError(f"{path}: no such file or directory")
    if path.is_file() and sniff(path) == "rollout" and fmt in (None, "codex"):
        return Source(None, "codex", None, rollout=path)  # a lone session file: no folder of artifacts
    if path.is_file():
        kind = fmt or sniff(path)
        if kind not in FORMATS:
            raise ImportSourceError(f"{path}: not a Claude Code, Codex or OpenCode transcript (use --format)")
        folder = path.parent
        others = [t for t, _ in _transcripts(folder) if t != path]
        src = Source(path, kind, None if others else folder)
    else:
        found = _transcripts(path)
        if fmt:
            found = [(p, fmt) for p, k in found if k == fmt] or [(p, fmt) for p in _named_logs(path)]
        if not found and fmt in (None, "codex") and _rollouts(path):
            rollouts = _rollouts(path)
            if len(rollouts) > 1:
                names = ", ".join(p.name for p in rollouts)
                raise ImportSourceError(f"{path}: several Codex rollouts ({names}); name one file")
            found = [(rollouts[0], "rollout")]
        if not found:
            raise ImportSourceError(f"{path}: no agent transcript in this folder")
        if len(found) > 1:
            names = ", ".join(p.name for p, _ in found)
            raise ImportSourceError(f"{path}: several transcripts ({names}); name one file")
        if found[0][1] == "rollout":
            src = Source(None, "codex", path, rollout=found[0][0])
        else:
            src = Source(found[0][0], found[0][1], path)
    if src.base is not None:
        rollouts = _rollouts(src.base) if src.fmt == "codex" else []
        if src.transcript is not None:
            src.rollout = _pick_rollout(src.transcript, rollouts)
        skip = {src.transcript, src.rollout, *rollouts}
        src.artifacts = sorted(
            p
            for p in src.base.rglob("*")
            if p.is_file()
            and not p.is_symlink()
            and p not in skip
            and not any(part.startswith(".") for part in p.relative_to(src.base).parts)
            and "sessions" not in p.relative_to(src.base).parts[:1]
        )
    return src


def _named_logs(folder: Path) -> list[Path]:
    return [p for p in (folder / "stdout.log", folder / "stdout.jsonl") if p.is_file()]


def _pick_rollout(transcript: Path, rollouts: list[Path]) -> Path | None:
    """The session file of the transcript's thread (or the only one there is)."""
    if not rollouts:
        return None
    thread = None
    try:
        with open(transcript, "rb") as fh:
            for raw in fh:
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("type") == "thread.started":
                    thread = str(obj.get("thread_id"))
                    break
    except OSError:
        return None
    if thread:
        mine = [r for r in rollouts if thread in r.name]
        if mine:
            return mine[-1]
    return rollouts[0] if len(rollouts) == 1 else None


# -- the dedupe index ---------------------------------------------------------------------
def import_key(src: Source) -> str:
    """sha256 over the transcript's (and the rollout's) bytes: the identity of an import."""
    h = hashlib.sha256(sha256_file(src.transcript).encode() if src.transcript is not None else b"rollout only")
    if src.rollout is not None:
        h.update(b"\0" + sha256_file(src.rollout).encode())
    return h.hexdigest()


def _rebuild_index(runs_dir: Path) -> dict[str, str]:
    """Keys from the start events of the imported runs already under runs_dir."""
    index: dict[str, str] = {}
    for path in runs_dir.glob("*/*/r*/journal/harness_events.jsonl"):
        try:
            with open(path, encoding="utf-8") as fh:
                first = json.loads(fh.readline())
        except (OSError, ValueError):
            continue
        prov = (first.get("detail") or {}).get("provenance") if isinstance(first, dict) else None
        if isinstance(prov, dict) and prov.get("imported") and prov.get("key"):
            index[prov["key"]] = str(path.parent.parent.relative_to(runs_dir))
    return index


@contextmanager
def locked_index(runs_dir: Path) -> Iterator[dict[str, str]]:
    """RUNS/.imports.json under an exclusive lock, written back on exit."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / INDEX_NAME
    with open(runs_dir / ".imports.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            index = json.loads(path.read_text()) if path.exists() else _rebuild_index(runs_dir)
        except ValueError:
            index = _rebuild_index(runs_dir)
        index = {k: v for k, v in index.items() if (runs_dir / v).is_dir()}
        yield index
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
        tmp.replace(path)


# -- writing the run ----------------------------------------------------------------------
@dataclass
class Imported:
    run_dir: Path
    fmt: str
    counts: dict[str, int]
    dropped: list[str]
    duplicate_of: Path | None = None


def _parse(src: Source, stdout: Path | None, rollout: Path | None) -> Parsed:
    if stdout is None:  # a rollout alone
        with open(rollout, "rb") as fh:
            parsed = RolloutParser().feed_lines(fh)
        parsed.counts["rollout_file"] = 1
        return parsed
    with open(stdout, "rb") as fh:
        parsed = PARSERS[src.fmt]().feed_lines(fh)
    if rollout is not None:
        with open(rollout, "rb") as fh:
            parsed = merge_rollout(parsed, RolloutParser().feed_lines(fh))
        parsed.counts["rollout_file"] = 1
    return parsed


def _dropped(parsed: Parsed, stdout: Path | None, rollout: Path | None = None) -> list[str]:
    """One line per transcript line the parser could not use (what the record lacks)."""
    out = []
    for e in parsed.events:
        if e.kind in ("malformed", "unknown"):
            why = "not JSON (torn or garbled)" if e.kind == "malformed" else (e.detail or {}).get("why", "")
            name = stdout.name if e.source == "stream" and stdout is not None else "rollout"
            out.append(f"{name}:{e.line}: {why}")
    for f in (stdout, rollout):
        raw = f.read_bytes() if f is not None else b""
        if raw and not raw.endswith(b"\n"):
            out.append(f"{f.name}: last line has no newline (the transcript was cut off)")
    return out


def _claimed_score(result: Any) -> float | None:
    if not isinstance(result, dict):
        return None
    for key in SCORE_KEYS:
        v = result.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    for v in result.values():
        if isinstance(v, dict):
            found = _claimed_score(v)
            if found is not None:
                return found
    return None


def _has_orig_mod(path: Path) -> bool:
    tail = b""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            if ORIG_MOD in tail + block:
                return True
            tail = block[-len(ORIG_MOD) :]
    return False


def _write_scores(run_dir: Path, result_path: Path | None) -> int:
    """Claims, never official scores: the published result.json and each checkpoint's
    `_orig_mod.` keys, with `official` NULL and `selected_by = 'imported_claim'`."""
    ws = RunLayout(run_dir).workspace
    ck_dir = ws / CHECKPOINTS
    ckpts = sorted(p for p in ck_dir.rglob("*") if p.is_file()) if ck_dir.is_dir() else []
    if result_path is None and not ckpts:
        return 0
    journal = Journal(journal_path(run_dir, "scores"), "scores")
    rows = 0
    try:
        if result_path is not None:
            text = result_path.read_text(errors="replace")
            try:
                result = json.loads(text)
            except ValueError:
                result = None
            orig = "_orig_mod" in text or "orig_mod_prefix" in text
            journal.write(
                path=str(result_path.relative_to(ws)),
                observed_t=None,
                observed_mono=None,
                after_deadline=None,
                sha256=sha256_file(result_path),
                self_reported=_claimed_score(result),
                selected_by="imported_claim",
                window=None,
                official=None,
                failure="orig_mod_prefix" if orig else (None if result is not None else "unreadable_result"),
                detail="published result.json, as claimed (not evaluated by onegc-audit): " + text[:2000],
                eval_seconds=None,
                gap=None,
            )
            rows += 1
        for ck in ckpts:
            orig = _has_orig_mod(ck)
            journal.write(
                path=str(ck.relative_to(ws)),
                observed_t=None,
                observed_mono=None,
                after_deadline=None,
                sha256=sha256_file(ck),
                self_reported=None,
                selected_by="imported_claim",
                window=None,
                official=None,
                failure="orig_mod_prefix" if orig else None,
                detail="imported checkpoint, not evaluated by onegc-audit"
                + ("; its bytes hold _orig_mod. keys (saved from a torch.compile'd model)" if orig else ""),
                eval_seconds=None,
                gap=None,
            )
            rows += 1
    finally:
        journal.close()
    return rows


def _locked_files(task: str) -> list[str]:
    try:
        from onegc.tasks import registry

        return list(registry.get_task(task).locked)
    except Exception:  # a task this registry does not know: the paper's locked evaluator
        return ["prepare.py"]


def _times(parsed: Parsed) -> tuple[float | None, float | None]:
    ts = [t for c in parsed.tool_calls for t in (c.started_t, c.ended_t) if t is not None]
    ts += [m.t for m in parsed.messages if m.t is not None]
    return (min(ts), max(ts)) if ts else (None, None)


def create_run_dir(runs_dir: Path, agent: str, task: str, rep: int) -> Path:
    """RUNS/AGENT/TASK/rREP, new, with the names a monitored run allows."""
    try:
        return create_monitored_run_dir(runs_dir, agent, task, rep)
    except HarnessError as exc:
        raise ImportSourceError(str(exc)) from None


def write_run(src: Source, runs_dir: Path, agent: str, task: str, rep: int, key: str) -> Imported:
    """Create RUNS/AGENT/TASK/rREP from `src` and seal it incomplete."""
    run_dir = create_run_dir(runs_dir, agent, task, rep)
    try:
        return _fill(src, run_dir, agent, task, rep, key)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # never leave a half-written run behind
        raise


def _fill(src: Source, run_dir: Path, agent: str, task: str, rep: int, key: str) -> Imported:
    layout = RunLayout(run_dir)
    ws = layout.workspace
    layout.agent_dir.mkdir()
    stdout = None
    if src.transcript is not None:
        stdout = layout.stdout
        shutil.copyfile(src.transcript, stdout)
    rollout = None
    if src.rollout is not None:
        rollout = layout.agent_dir / src.rollout.name
        shutil.copyfile(src.rollout, rollout)
    files = [
        {
            "role": "transcript",
            "path": str(src.transcript.resolve()),
            "sha256": sha256_file(stdout),
            "stored_as": STDOUT,
        }
    ] if stdout is not None else []
    if rollout is not None:
        files.append(
            {
                "role": "rollout",
                "path": str(src.rollout.resolve()),
                "sha256": sha256_file(rollout),
                "stored_as": f"agent/{rollout.name}",
            }
        )
    for art in src.artifacts:
        rel = art.relative_to(src.base)
        dest = ws / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(art, dest)
        role = "checkpoint" if rel.parts[0] == CHECKPOINTS else "artifact"
        role = "result" if art == src.result else role
        files.append(
            {
                "role": role,
                "path": str(art.resolve()),
                "sha256": sha256_file(dest),
                "stored_as": f"workspace/{rel}",
            }
        )
    parsed = _parse(src, stdout, rollout)
    dropped = _dropped(parsed, stdout, rollout)
    first_t, last_t = _times(parsed)
    provenance = {
        "imported": True,
        "importer": IMPORTER_VERSION,
        "format": src.fmt,
        "key": key,
        "files": files,
        "absent_sensors": list(ABSENT_SENSORS),
        "absent_tables": list(ABSENT_TABLES),
        "clock": "transcript" if first_t is not None else "none",
    }
    harness = Journal(journal_path(run_dir, "harness_events"), "harness_events")
    harness.write(
        kind="start",
        t=first_t,
        mono=None,
        detail={
            "run_id": f"{agent}/{task}/r{rep}",
            "label": agent,
            "task": task,
            "rep": rep,
            "argv": None,
            "budget_s": None,
            "grace_s": None,
            "deadline_mono": None,
            "workspace": str(ws),
            "locked": _locked_files(task),
            "sensors": {s: "absent (imported transcript)" for s in ABSENT_SENSORS},
            "provenance": provenance,
        },
    )
    tables: dict[str, Journal] = {}
    for table, records in (
        ("tool_calls", parsed.tool_calls),
        ("messages", parsed.messages),
        ("agent_events", parsed.events),
    ):
        tables[table] = Journal(journal_path(run_dir, table), table)
        for rec in records:  # the transcript's own time, where it gives one: the timeline orders by it
            when = getattr(rec, "started_t", None) or getattr(rec, "t", None)
            tables[table].write(**rec.row(), **({"t": when} if when is not None else {}))
    summary = dict(parsed.counts)
    summary["dropped_lines"] = len(dropped)
    tables["agent_events"].write(line=0, source="stream", kind="parse_summary", detail=summary, raw=None)
    for j in tables.values():
        j.close()
    scores = _write_scores(run_dir, ws / RESULT_NAME if src.result is not None else None)
    harness.write(kind="end", t=last_t, mono=None, detail={"reason": "imported", "scores_claimed": scores})
    harness.close()
    reasons = [
        "imported transcript: no OS evidence (sensors absent: "
        + ", ".join(ABSENT_SENSORS)
        + "); only what the agent's own stream shows can be judged"
    ]
    if dropped:
        reasons.append(
            f"transcript: {len(dropped)} line(s) dropped: "
            + "; ".join(dropped[:5])
            + (" ..." if len(dropped) > 5 else "")
        )
    seal(run_dir, complete=False, reasons=reasons)
    return Imported(run_dir, src.fmt, dict(parsed.counts), dropped)


def import_one(src: Source, runs_dir: Path, agent: str, task: str, rep: int) -> Imported:
    """Import one run unless its transcript was imported before (then: the existing run)."""
    key = import_key(src)
    with locked_index(runs_dir) as index:
        if key in index:
            return Imported(runs_dir / index[key], src.fmt, {}, [], duplicate_of=runs_dir / index[key])
        result = write_run(src, runs_dir, agent, task, rep, key)
        index[key] = str(result.run_dir.relative_to(runs_dir.resolve()))
    return result


# -- directory walks --------------------------------------------------------------------------
def pattern_regex(pattern: str) -> re.Pattern[str]:
    """'{agent}/{task}/r{rep}' -> a regex with named groups agent, task, rep."""
    fields = {"agent": r"(?P<agent>[^/]+?)", "task": r"(?P<task>[^/]+?)", "rep": r"(?P<rep>\d+)"}
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)\}", pattern):
        name = m.group(1)
        if name not in fields:
            raise OnegcError(f"pattern field {{{name}}} is not one of {{agent}}, {{task}}, {{rep}}")
        out += re.escape(pattern[pos : m.start()]) + fields[name]
        pos = m.end()
    out += re.escape(pattern[pos:])
    missing = {"agent", "task", "rep"} - set(re.findall(r"\{(\w+)\}", pattern))
    if missing:
        raise OnegcError(f"pattern {pattern!r} lacks {', '.join('{' + f + '}' for f in sorted(missing))}")
    return re.compile(out)


def map_path(rel: str, rx: re.Pattern[str]) -> tuple[str, str, int] | None:
    """agent, task, rep of a relative path: the pattern matches the whole path, or (for a
    transcript file) the path without its suffix, or a leading part of it."""
    for cand in (rel, re.sub(r"\.[^./]+$", "", rel)):
        m = rx.fullmatch(cand)
        if m:
            return m["agent"], m["task"], int(m["rep"])
    parts = rel.split("/")
    for n in range(len(parts) - 1, 0, -1):
        m = rx.fullmatch("/".join(parts[:n]))
        if m:
            return m["agent"], m["task"], int(m["rep"])
    return None


def _unrecognised(folder: Path, root: Path, transcripts: set[Path]) -> list[str]:
    """Log-like files that are no transcript this importer reads: said, not silently passed."""
    out = []
    for p in sorted(folder.iterdir()):
        looks_like_log = p.suffix in (".log", ".jsonl", ".ndjson") or p.name.startswith("stdout")
        if p.is_file() and looks_like_log and p not in transcripts and not p.name.startswith("rollout-"):
            out.append(f"{p.relative_to(root)}: not a Claude Code, Codex or OpenCode transcript")
    return out


@dataclass
class WalkReport:
    imported: list[Imported] = field(default_factory=list)
    duplicates: list[Imported] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def walk(root: Path, runs_dir: Path, pattern: str, fmt: str | None = None,
         progress: Callable[[int, int, Path], None] | None = None) -> WalkReport:
    """Import every transcript below root whose path the pattern maps; one reason per skip
    (progress(folders done, folders, folder) is called as the walk goes)."""
    rx = pattern_regex(pattern)
    report = WalkReport()
    runs = runs_dir.resolve()
    folders = sorted([root, *(p for p in root.rglob("*") if p.is_dir())])
    for n, folder in enumerate(folders):
        if progress:
            progress(n, len(folders), folder)
        if (
            folder == runs
            or runs in folder.parents
            or any(part.startswith(".") or part == "sessions" for part in folder.relative_to(root).parts)
        ):
            continue
        try:
            found = _transcripts(folder)
        except OSError as exc:
            report.skipped.append(f"{folder}: unreadable ({exc.strerror})")
            continue
        if fmt:
            found = [(p, k) for p, k in found if k == fmt]
        if not found and fmt in (None, "codex"):  # Codex session files without their stream
            found = [(p, "rollout") for p in _rollouts(folder) if p.parent == folder]
        report.skipped += _unrecognised(folder, root, {p for p, _ in found})
        for transcript, _ in found:
            rel = transcript.relative_to(root)
            mapped = map_path(str(rel), rx)
            if mapped is None:
                report.skipped.append(f"{rel}: path does not match {pattern!r}")
                continue
            try:
                lone = len(found) == 1 and found[0][1] == "rollout"  # its folder's files are its artifacts
                src = source_of(folder if lone else transcript, fmt)
                done = import_one(src, runs_dir, *mapped)
            except Exception as exc:  # one bad source never stops the walk
                report.skipped.append(f"{rel}: {exc}")
                continue
            (report.duplicates if done.duplicate_of else report.imported).append(done)
    return report
