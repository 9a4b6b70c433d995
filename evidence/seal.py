"""Closing the record: journals -> evidence.duckdb, and a manifest that hashes everything.

Journals are bulk-loaded with DuckDB's `read_json` (row inserts are ~1000x slower). The
manifest holds the sha256 of every sealed artifact and every journal's chain head, and a
digest over itself; `evidence.duckdb` holds the same heads, so editing either alone shows.
"""

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import duckdb

from onegc.evidence.errors import OnegcError
from onegc.evidence.journal import ChainCheck, check_chain, journal_path
from onegc.evidence.layout import DB_NAME, JOURNAL_DIR, MANIFEST_NAME, RESCORE_DIR, RESULT_NAME, STDERR, STDOUT
from onegc.evidence.schema import TABLES

MANIFEST_FORMAT = "onegc-manifest-1"
# Artifacts sealed beside the journals when present (the agent's raw output streams, the
# official result written by the scoring step, the deadline freeze's manifest).
# official result written by the scoring step, the deadline freeze's manifest).
SEALED_LOGS = (STDOUT, STDERR, RESULT_NAME, "frozen/frozen.json")
# Later additions to a sealed run (e.g. rescore/<stamp>/): each folder seals itself.
ADDENDA_DIRS = (RESCORE_DIR,)
ADDENDUM_FORMAT = "onegc-addendum-1"

RUN_COLUMNS = (
    ("run_id", "VARCHAR"),
    ("label", "VARCHAR"),
    ("task", "VARCHAR"),
    ("rep", "INTEGER"),
    ("argv", "VARCHAR[]"),
    ("budget_s", "DOUBLE"),
    ("grace_s", "DOUBLE"),
    ("started_at", "DOUBLE"),
    ("deadline_mono", "DOUBLE"),
    ("started_mono", "DOUBLE"),
    ("ended_at", "DOUBLE"),
    ("end_reason", "VARCHAR"),
    ("agent_exit_code", "INTEGER"),
    ("agent_uid", "BIGINT"),
    ("sensors", "JSON"),
    ("workspace", "VARCHAR"),
    ("complete", "BOOLEAN"),
    ("incomplete_reasons", "VARCHAR[]"),
)


class SealError(OnegcError):
    """The run cannot be sealed (already sealed, no journals)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _load_journal(con: duckdb.DuckDBPyConnection, table, path: Path, check: ChainCheck) -> None:
    if check.records == 0:
        return
    source = path
    tmp = None
    if check.truncated_tail or check.problems:
        # Load only the verified prefix; the journal itself is never rewritten.
        tmp = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8")
        with open(path, encoding="utf-8", errors="replace") as fh:
            for _, line in zip(range(check.records), fh, strict=False):
                tmp.write(line)
        tmp.close()
        source = Path(tmp.name)
    try:
        cols = ", ".join(f'"{c}"' for c in table.json_columns)
        con.execute(
            f"INSERT INTO {table.name} SELECT {cols} FROM read_json(?, format='newline_delimited', "
            f"columns=?, maximum_object_size=67108864)",
            [str(source), table.json_columns],
        )
    finally:
        if tmp is not None:
            os.unlink(tmp.name)


def _run_row(con: duckdb.DuckDBPyConnection, complete: bool, reasons: list[str]) -> None:
    con.execute("CREATE TABLE run (" + ", ".join(f'"{n}" {t}' for n, t in RUN_COLUMNS) + ")")
    start = con.execute(
        "SELECT detail, t, mono FROM harness_events WHERE kind='start' ORDER BY seq LIMIT 1"
    ).fetchone()
    end = con.execute(
        "SELECT detail, t FROM harness_events WHERE kind='end' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    exited = con.execute(
        "SELECT detail FROM harness_events WHERE kind='agent_exited' ORDER BY seq LIMIT 1"
    ).fetchone()
    meta = json.loads(start[0]) if start else {}
    end_detail = json.loads(end[0]) if end else {}
    exit_code = json.loads(exited[0]).get("exit_code") if exited else None
    con.execute(
        "INSERT INTO run VALUES (" + ", ".join("?" for _ in RUN_COLUMNS) + ")",
        [
            meta.get("run_id"),
            meta.get("label"),
            meta.get("task"),
            meta.get("rep"),
            meta.get("argv"),
            meta.get("budget_s"),
            meta.get("grace_s"),
            start[1] if start else None,
            meta.get("deadline_mono"),
            start[2] if start else None,
            end[1] if end else None,
            end_detail.get("reason"),
            exit_code,
            meta.get("agent_uid"),
            json.dumps(meta.get("sensors", {})),
            meta.get("workspace"),
            complete,
            reasons,
        ],
    )


def seal(run_dir: Path, *, complete: bool, reasons: list[str]) -> dict:
    """Load the journals into evidence.duckdb and write the manifest. Refuses to reseal."""
    db_path, manifest_path = run_dir / DB_NAME, run_dir / MANIFEST_NAME
    if manifest_path.exists() or db_path.exists():
        raise SealError(f"{run_dir} is already sealed")
    if not (run_dir / JOURNAL_DIR).is_dir():
        raise SealError(f"{run_dir} has no journals to seal")
    reasons = list(reasons)
    checks: dict[str, ChainCheck] = {}
    con = duckdb.connect(str(db_path))
    try:
        for table in TABLES:
            con.execute(table.ddl)
            path = journal_path(run_dir, table.name)
            if not path.exists():
                path.touch()  # an empty journal is still a claim: "nothing was seen"
            check = check_chain(path, table.name)
            checks[table.name] = check
            if check.truncated_tail:
                reasons.append(f"{table.name}: last record torn (writer died mid-write)")
            reasons.extend(check.problems)
            _load_journal(con, table, path, check)
        complete = complete and not any(c.truncated_tail or c.problems for c in checks.values())
        _run_row(con, complete, reasons)
        con.execute("CREATE TABLE journals (table_name VARCHAR, records BIGINT, head VARCHAR)")
        con.executemany(
            "INSERT INTO journals VALUES (?, ?, ?)",
            [(c.table, c.records, c.head) for c in checks.values()],
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    artifacts = [journal_path(run_dir, t.name) for t in TABLES] + [db_path]
    artifacts += [run_dir / p for p in SEALED_LOGS if (run_dir / p).exists()]
    manifest = {
        "format": MANIFEST_FORMAT,
        "run_dir_name": run_dir.name,
        "sealed_at": time.time(),
        "complete": complete,
        "incomplete_reasons": reasons,
        "artifacts": {
            str(p.relative_to(run_dir)): {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in artifacts
        },
        "journals": {c.table: {"records": c.records, "head": c.head} for c in checks.values()},
    }
    manifest["digest"] = manifest_digest(manifest)
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, manifest_path)
    return manifest


def seal_addendum(folder: Path, meta: dict) -> dict:
    """Seal a folder added to an already sealed run (a rescore): the sha256 of each of its
    files, the chain head of each journal in it, and a digest; the run's own seal is left
    as it is. ``meta`` (who/when/why) goes into the manifest."""
    path = folder / MANIFEST_NAME
    if path.exists():
        raise SealError(f"{folder} is already sealed")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    manifest = {
        "format": ADDENDUM_FORMAT,
        "meta": meta,
        "sealed_at": time.time(),
        "artifacts": {
            str(p.relative_to(folder)): {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in files
        },
        "journals": {},
    }
    for p in files:
        if p.suffix == ".jsonl":
            check = check_chain(p, p.stem)
            manifest["journals"][str(p.relative_to(folder))] = {"records": check.records, "head": check.head}
    manifest["digest"] = manifest_digest(manifest)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def latest_result(run_dir: Path) -> tuple[Path | None, dict | None]:
    """The official result that counts: the newest sealed rescore, else the harness's
    result.json (an unfinished rescore lives under a hidden name and is skipped)."""
    base = run_dir / RESCORE_DIR
    if base.is_dir():
        for name in sorted((p.name for p in base.iterdir() if not p.name.startswith(".")), reverse=True):
            path = base / name / RESULT_NAME
            if path.is_file():
                return path, json.loads(path.read_text())
    path = run_dir / RESULT_NAME
    if path.is_file():
        return path, json.loads(path.read_text())
    return None, None

