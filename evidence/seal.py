"""Closing the record: journals -> evidence.duckdb, and a manifest that hashes everything.

Journals are bulk-loaded with DuckDB's `read_json` (row inserts are ~1000x slower). The
manifest holds the sha256 of every sealed artifact and every journal's chain head, and a
digest over itself; `evidence.duckdb` holds the same heads, so editing either alone shows.
"""

import errno
import hashlib
import importlib.metadata
import json
import os
import stat
import tempfile
import time
from pathlib import Path

import duckdb

from onegc.evidence.attest import (
    ADDENDUM_ATTESTATION,
    ADDENDUM_PREDICATE,
    ATTEST_DIR,
    RUN_ATTESTATION,
    RUN_PREDICATE,
    VERDICT_PREDICATE,
    Signer,
    envelope,
    statement,
    write_envelope,
)
from onegc.evidence.errors import OnegcError
from onegc.evidence.journal import ChainCheck, check_chain, journal_path
from onegc.evidence.layout import (
    DB_NAME,
    FS_DIR,
    JOURNAL_DIR,
    MANIFEST_NAME,
    RESCORE_DIR,
    RESULT_NAME,
    SCRATCH,
    WORKSPACE,
)
from onegc.evidence.models import Verdict
from onegc.evidence.schema import TABLES

MANIFEST_FORMAT = "onegc-manifest-1"
# Every file of the run folder is sealed except what the agent wrote (its workspace and
# scratch, which the snapshots hash), what is added later and seals itself (rescore/), and
# the seal's own outputs (the manifest, the attestations that sign it).
UNSEALED_TOPS = (WORKSPACE, SCRATCH, FS_DIR, RESCORE_DIR, ATTEST_DIR, MANIFEST_NAME)
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
    """sha256 of a regular file's bytes. Anything else (a FIFO or socket an agent left, a device)
    is refused with OSError, never opened in a way that could wait for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path}: not a regular file")
        h = hashlib.sha256()
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


def seal(run_dir: Path, *, complete: bool, reasons: list[str], signer: Signer | None = None) -> dict:
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
    artifacts = sealable_files(run_dir)
    manifest = {
        "format": MANIFEST_FORMAT,
        "run_dir_name": run_dir.name,
        "sealed_at": time.time(),
        "complete": complete,
        "incomplete_reasons": reasons,
        "artifacts": {
            str(p.relative_to(run_dir)): {"sha256": artifact_digest(p), "size": p.lstat().st_size}
            for p in artifacts
        },
        "journals": {c.table: {"records": c.records, "head": c.head} for c in checks.values()},
    }
    manifest["digest"] = manifest_digest(manifest)
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, manifest_path)
    if signer is not None:
        sign_run(run_dir, manifest, signer)
    return manifest


def sealable_files(run_dir: Path) -> list[Path]:
    """The files a seal must cover: everything in the run folder but UNSEALED_TOPS (a symlink
    is sealed as what it is, never followed)."""
    out = []
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if rel.parts[0] in UNSEALED_TOPS or path.is_dir() and not path.is_symlink():
            continue
        out.append(path)
    return out


def artifact_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a symlink's target text (never followed)."""
    return hashlib.sha256(os.readlink(path).encode()).hexdigest() if path.is_symlink() else sha256_file(path)


def run_subjects(run_dir: Path, manifest: dict) -> dict[str, str]:
    """What the run statement is about: the manifest itself and every artifact it seals."""
    digests = {name: meta["sha256"] for name, meta in manifest["artifacts"].items()}
    digests[MANIFEST_NAME] = sha256_file(run_dir / MANIFEST_NAME)
    return digests


def run_predicate(run_dir: Path, manifest: dict) -> dict:
    """What a third party needs to judge the run, from the sealed evidence itself."""
    con = duckdb.connect(str(run_dir / DB_NAME), read_only=True)
    try:
        row = con.execute("SELECT detail FROM harness_events WHERE kind='start' ORDER BY seq LIMIT 1").fetchone()
        health = [dict(zip(("sensor", "counter", "value", "lossy"), r, strict=True)) for r in con.execute(
            "SELECT sensor, counter, value, lossy FROM sensor_health ORDER BY sensor, counter").fetchall()]
        locked = con.execute(
            "SELECT path, sha256 FROM snapshots WHERE phase = 'before' AND scope = 'workspace' AND kind = 'file' "
            "ORDER BY path").fetchall()
    finally:
        con.close()
    meta = json.loads(row[0]) if row else {}
    locked_names = set(meta.get("locked") or [])
    task_files = {p: sha for p, sha in locked if p in locked_names}
    result = {}
    if (run_dir / RESULT_NAME).is_file():
        try:
            result = json.loads((run_dir / RESULT_NAME).read_text())
        except ValueError:
            result = {}
    data_files = ((result.get("context") or {}).get("files") or {}) if isinstance(result, dict) else {}
    return {
        "run_id": meta.get("run_id"),
        "task": {"id": meta.get("task"), "locked_files": task_files,
                 "version": hashlib.sha256(json.dumps(task_files, sort_keys=True).encode()).hexdigest()},
        "data": {"files": data_files, "synthetic": (result.get("context") or {}).get("synthetic"),
                 "version": hashlib.sha256(json.dumps(data_files, sort_keys=True).encode()).hexdigest()
                 if data_files else None},
        "agent": {"label": meta.get("label"), "argv": meta.get("argv"), "runtime_cli": meta.get("runtime_cli")},
        "harness": {"name": "onegc-audit", "version": _version(), "python": meta.get("python")},
        "host": {"kernel": meta.get("kernel")},
        "sensors": meta.get("sensors"),
        "sensor_health": health,
        "budget": {"budget_s": meta.get("budget_s"), "grace_s": meta.get("grace_s")},
        "complete": manifest["complete"],
        "incomplete_reasons": manifest["incomplete_reasons"],
        "journals": manifest["journals"],
    }


def _version() -> str | None:
    try:
        return importlib.metadata.version("onegc-audit")
    except importlib.metadata.PackageNotFoundError:
        return None


def sign_run(run_dir: Path, manifest: dict, signer: Signer) -> Path:
    """The run statement, signed, as attestations/run.intoto.json."""
    stmt = statement(run_subjects(run_dir, manifest), RUN_PREDICATE, run_predicate(run_dir, manifest))
    path = run_dir / ATTEST_DIR / RUN_ATTESTATION
    write_envelope(path, envelope(stmt, signer))
    return path


def sign_verdict(run_dir: Path, verdict: Verdict, signer: Signer) -> Path:
    """The verdict as a second statement over the run's subjects, one file per policy and
    rule set: judging again under new rules adds a statement and leaves the evidence as it is."""
    manifest = json.loads((run_dir / MANIFEST_NAME).read_text())
    rules = [{"id": r.id, "outcome": r.outcome, "severity": r.severity, "disqualifies": r.disqualifies,
              "cited": [{"table": c.table_name, "seq": c.seq} for c in r.rows]} for r in verdict.rules]
    predicate = {
        "format": verdict.format, "run_id": verdict.run_id, "task": verdict.task,
        "status": verdict.status, "reasons": verdict.reasons, "score": verdict.score and verdict.score.model_dump(),
        "disqualified_by": verdict.disqualified_by, "warnings": verdict.warnings, "rules": rules,
        "policy": {"name": verdict.policy.name, "sha256": verdict.policy.sha256},
        "rules_sha256": verdict.rules_sha256, "integrity": verdict.integrity.label,
    }
    stmt = statement(run_subjects(run_dir, manifest), VERDICT_PREDICATE, predicate)
    name = f"verdict.{verdict.policy.sha256[:12]}.{verdict.rules_sha256[:12]}.intoto.json"
    path = run_dir / ATTEST_DIR / name
    write_envelope(path, envelope(stmt, signer))
    return path


def addendum_subjects(folder: Path, manifest: dict) -> dict[str, str]:
    digests = {name: meta["sha256"] for name, meta in manifest["artifacts"].items()}
    digests[MANIFEST_NAME] = sha256_file(folder / MANIFEST_NAME)
    return digests


def seal_addendum(folder: Path, meta: dict, signer: Signer | None = None) -> dict:
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
    if signer is not None:
        run_manifest = sha256_file(folder.parent.parent / MANIFEST_NAME)
        stmt = statement(addendum_subjects(folder, manifest), ADDENDUM_PREDICATE,
                         {"addendum": meta, "run_manifest_sha256": run_manifest})
        write_envelope(folder / ADDENDUM_ATTESTATION, envelope(stmt, signer))
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

