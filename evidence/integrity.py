"""Checking a sealed run: intact, tampered or incomplete, with every problem named.

Everything is recomputed from the bytes on disk: artifact hashes, the manifest's own
digest, every journal's hash chain, and the chain heads held inside evidence.duckdb (opened
read-only, so verifying never changes the evidence).
"""

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import duckdb

from onegc.evidence.attest import (
    ADDENDUM_ATTESTATION,
    ADDENDUM_PREDICATE,
    ATTEST_DIR,
    RUN_ATTESTATION,
    RUN_PREDICATE,
    VERDICT_PREDICATE,
    Verifier,
    open_envelope,
    read_envelope,
    signed_by,
    subject_digests,
)
from onegc.evidence.errors import OnegcError
from onegc.evidence.journal import check_chain, journal_path
from onegc.evidence.layout import DB_NAME, JOURNAL_DIR, MANIFEST_NAME
from onegc.evidence.models import Verdict
from onegc.evidence.schema import TABLES
from onegc.evidence.seal import (
    ADDENDA_DIRS,
    ADDENDUM_FORMAT,
    MANIFEST_FORMAT,
    addendum_subjects,
    artifact_digest,
    manifest_digest,
    run_subjects,
    sealable_files,
)

SAFE_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
Status = Literal["intact", "tampered", "incomplete"]


class BadRunDir(OnegcError):
    """The path is not a run directory at all (missing, not a directory, no evidence)."""


@dataclass
class IntegrityReport:
    run_dir: str
    status: Status
    problems: list[str] = field(default_factory=list)
    incomplete_reasons: list[str] = field(default_factory=list)
    sealed: bool = False
    # "unsigned", "signed" (a signature is there, no key was given to check it) or "verified"
    signature: str = "unsigned"
    keyid: str | None = None

    @property
    def label(self) -> str:
        """The status as a person should read it: an unsigned seal is never more than that."""
        if self.status != "intact":
            return self.status
        if self.signature == "verified":
            return f"intact (signed by key {str(self.keyid)[:16]}, verified)"
        if self.signature == "signed":
            return f"intact (signed by key {str(self.keyid)[:16]}, not checked: pass --key)"
        return "intact (unsigned)"

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


def sealed_journals(manifest: dict, problems: list[str]) -> dict[str, dict]:
    """The journals the seal lists. A run sealed before a table existed simply lacks it:
    the seal, not today's schema, says what the record holds."""
    journals = manifest.get("journals")
    if not isinstance(journals, dict) or not journals:
        problems.append("manifest: lists no journals")
        return {}
    good = {}
    for name, expected in journals.items():
        if not (isinstance(name, str) and SAFE_TABLE.match(name) and isinstance(expected, dict)):
            problems.append(f"manifest: malformed journal entry {name!r}")
            continue
        good[name] = expected
    return good


def _check_artifacts(base: Path, label: str, artifacts: dict, problems: list[str]) -> None:
    """Every artifact a seal lists exists under `base` with the sha256 it was sealed with."""
    for name, meta in sorted(artifacts.items()):
        path = base / name
        if not (path.is_file() or path.is_symlink()):
            problems.append(f"{label}{name}: sealed artifact is missing")
        elif artifact_digest(path) != meta.get("sha256"):
            problems.append(f"{label}{name}: content changed since sealing (sha256 mismatch)")


def _check_manifest(run_dir: Path, manifest: dict, problems: list[str]) -> None:
    if manifest.get("format") != MANIFEST_FORMAT:
        problems.append(f"manifest: unknown format {manifest.get('format')!r}")
        return
    if manifest_digest(manifest) != manifest.get("digest"):
        problems.append("manifest: its digest does not match its content (manifest edited)")
    artifacts = manifest.get("artifacts", {})
    _check_artifacts(run_dir, "", artifacts, problems)
    for extra in sealable_files(run_dir):
        if str(extra.relative_to(run_dir)) not in artifacts:
            problems.append(f"{extra.relative_to(run_dir)}: file added after sealing")
    journals = sealed_journals(manifest, problems)
    for name, expected in journals.items():
        path = journal_path(run_dir, name)
        if not path.exists():
            problems.append(f"{name}: sealed journal is missing")
            continue
        check = check_chain(path, name)
        problems.extend(check.problems)
        if (check.records, check.head) != (expected.get("records"), expected.get("head")):
            problems.append(
                f"{name}: journal has {check.records} records / head {check.head[:12]}, "
                f"the seal says {expected.get('records')} / {str(expected.get('head'))[:12]}"
            )


def _check_database(run_dir: Path, manifest: dict, problems: list[str], reasons: list[str]) -> None:
    try:
        con = duckdb.connect(str(run_dir / DB_NAME), read_only=True)
    except duckdb.Error as exc:
        problems.append(f"{DB_NAME}: cannot be opened ({str(exc).splitlines()[0]})")
        return
    try:
        heads = dict(
            (name, (records, head))
            for name, records, head in con.execute("SELECT * FROM journals").fetchall()
        )
        for name, expected in sealed_journals(manifest, []).items():
            count, last = con.execute(f"SELECT count(*), arg_max(h, seq) FROM {name}").fetchone()
            if heads.get(name) != (expected.get("records"), expected.get("head")):
                problems.append(f"{DB_NAME}: chain head of {name} differs from the manifest")
            if count != expected.get("records") or (last or "") != expected.get("head"):
                problems.append(f"{DB_NAME}: rows of {name} differ from its journal")
        for sensor, counter, value in con.execute(
            "SELECT sensor, counter, value FROM sensor_health WHERE lossy AND value > 0"
        ).fetchall():
            reasons.append(f"sensor {sensor}: {counter} = {value}")
    except duckdb.Error as exc:
        problems.append(f"{DB_NAME}: unreadable ({str(exc).splitlines()[0]})")
    finally:
        con.close()


def _check_addenda(run_dir: Path, problems: list[str]) -> None:
    """Folders added after sealing (rescore/<stamp>/) must each match their own manifest;
    a folder without one was never sealed or lost it (they appear whole, by rename)."""
    for top in ADDENDA_DIRS:
        base = run_dir / top
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            rel = folder.relative_to(run_dir)
            if folder.name.startswith("."):
                continue  # an unfinished addendum: never counted (latest_result skips it)
            mpath = folder / MANIFEST_NAME
            try:
                m = json.loads(mpath.read_text())
            except (OSError, ValueError) as exc:
                problems.append(f"{rel}: addendum without a readable manifest ({type(exc).__name__})")
                continue
            if not isinstance(m, dict) or m.get("format") != ADDENDUM_FORMAT:
                problems.append(f"{rel}: unknown addendum manifest format")
                continue
            if manifest_digest(m) != m.get("digest"):
                problems.append(f"{rel}: its manifest's digest does not match its content")
            arts = m.get("artifacts", {})
            present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
            for extra in sorted(present - set(arts) - {MANIFEST_NAME, ADDENDUM_ATTESTATION}):
                problems.append(f"{rel}/{extra}: file added after sealing")
            _check_artifacts(folder, f"{rel}/", arts, problems)
            for name, head in sorted(m.get("journals", {}).items()):
                p = folder / name
                if p.is_file():
                    check = check_chain(p, p.stem)
                    problems.extend(f"{rel}/{x}" for x in check.problems)
                    if (check.records, check.head) != (head.get("records"), head.get("head")):
                        problems.append(f"{rel}/{name}: journal differs from its seal")


def _check_statement(env, verifier: Verifier, predicate_type: str, digests: dict[str, str], label: str) -> str | None:
    """None when `env` is a statement of `predicate_type` that `verifier` signed over exactly
    `digests`; else the one-line reason."""
    if env is None:
        return f"{label}: no signed attestation (never signed, or the signature was stripped)"
    stmt, why = open_envelope(env, verifier)
    if stmt is None:
        return f"{label}: {why}"
    if stmt.get("predicateType") != predicate_type:
        return f"{label}: the signed statement is a {stmt.get('predicateType')!r}, not {predicate_type!r} (swapped)"
    signed = subject_digests(stmt)
    if signed.get(MANIFEST_NAME) != digests.get(MANIFEST_NAME):
        return f"{label}: {MANIFEST_NAME} is not the one that was signed (resealed, edited or swapped)"
    if signed != digests:
        return f"{label}: the signed subjects differ from the sealed artifacts (swapped statement)"
    return None


def check_signatures(run_dir: Path, manifest: dict, verifier: Verifier) -> list[str]:
    """The run statement and every addendum's statement, checked against `verifier`."""
    try:
        digests = run_subjects(run_dir, manifest)
    except (KeyError, TypeError, AttributeError):
        return ["signature: the manifest lists no artifacts"]
    env = read_envelope(run_dir / ATTEST_DIR / RUN_ATTESTATION)
    problem = _check_statement(env, verifier, RUN_PREDICATE, digests, "signature")
    if problem:
        return [problem]
    problems = []
    run_manifest = digests[MANIFEST_NAME]
    for top in ADDENDA_DIRS:
        base = run_dir / top
        for folder in sorted(base.iterdir()) if base.is_dir() else []:
            if folder.name.startswith("."):
                continue
            rel = folder.relative_to(run_dir)
            try:
                m = json.loads((folder / MANIFEST_NAME).read_text())
                sub = addendum_subjects(folder, m)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                problems.append(f"{rel}: signature: addendum without a readable manifest")
                continue
            env = read_envelope(folder / ADDENDUM_ATTESTATION)
            problem = _check_statement(env, verifier, ADDENDUM_PREDICATE, sub, f"{rel}: signature")
            if problem is None:
                stmt, _ = open_envelope(env, verifier)
                if (stmt or {}).get("predicate", {}).get("run_manifest_sha256") != run_manifest:
                    problem = f"{rel}: signature: the addendum was signed for another run"
            if problem:
                problems.append(problem)
    return problems


def check_verdict_attestations(run_dir: Path, verdict: Verdict, verifier: Verifier) -> list[str]:
    """One line per signed verdict statement in the run: does it verify, is it about this
    run, and (when judged under the same policy and rules) does it say what the judging says."""
    lines = []
    for path in sorted((run_dir / ATTEST_DIR).glob("verdict.*.intoto.json")):
        env = read_envelope(path)
        try:
            digests = run_subjects(run_dir, json.loads((run_dir / MANIFEST_NAME).read_text()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            digests = {}
        problem = _check_statement(env, verifier, VERDICT_PREDICATE, digests, path.name)
        if problem:
            lines.append(f"{problem}: not counted")
            continue
        stmt, _ = open_envelope(env, verifier)
        pred = (stmt or {}).get("predicate") or {}
        same_basis = (pred.get("policy") or {}).get("sha256") == verdict.policy.sha256 and (
            pred.get("rules_sha256") == verdict.rules_sha256)
        signed_score = (pred.get("score") or {}).get("official")
        now_score = verdict.score.official if verdict.score else None
        if not same_basis:
            lines.append(f"{path.name}: signed {pred.get('status')} under another policy or rule set")
        elif (pred.get("status"), signed_score) != (verdict.status, now_score):
            lines.append(f"{path.name}: signed {pred.get('status')} ({signed_score}), judged now {verdict.status} "
                         f"({now_score}): they disagree")
        else:
            lines.append(f"{path.name}: signed verdict agrees ({verdict.status})")
    return lines


def _signature_state(run_dir: Path, report: IntegrityReport) -> None:
    env = read_envelope(run_dir / ATTEST_DIR / RUN_ATTESTATION)
    keys = signed_by(env)
    if keys:
        report.signature, report.keyid = "signed", keys[0]


def verify_run(run_dir: Path, verifier: Verifier | None = None) -> IntegrityReport:
    """Judge the seal of one run directory; with a `verifier`, its signatures first."""
    if not run_dir.is_dir():
        raise BadRunDir(f"{run_dir}: no such run directory")
    manifest_path = run_dir / MANIFEST_NAME
    if not manifest_path.exists():
        if not (run_dir / JOURNAL_DIR).is_dir():
            raise BadRunDir(f"{run_dir}: not a run directory (no manifest.json, no journal/)")
        report = IntegrityReport(str(run_dir), "incomplete")
        report.incomplete_reasons.append("never sealed: the harness died or is still running")
        for table in TABLES:
            path = journal_path(run_dir, table.name)
            if path.exists():
                report.problems.extend(check_chain(path, table.name).problems)
        if report.problems:
            report.status = "tampered"
        return report
    report = IntegrityReport(str(run_dir), "intact", sealed=True)
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        report.status = "tampered"
        report.problems.append(f"{MANIFEST_NAME}: unreadable ({exc})")
        return report
    if verifier is not None:
        signature_problems = check_signatures(run_dir, manifest, verifier)
        if signature_problems:
            report.status = "tampered"
            report.problems = signature_problems
            return report
        report.signature, report.keyid = "verified", verifier.keyid
    else:
        _signature_state(run_dir, report)
    _check_manifest(run_dir, manifest, report.problems)
    _check_addenda(run_dir, report.problems)
    if not report.problems:
        _check_database(run_dir, manifest, report.problems, report.incomplete_reasons)
    report.incomplete_reasons[:0] = list(manifest.get("incomplete_reasons", []))
    if not manifest.get("complete", False) and not report.incomplete_reasons:
        report.incomplete_reasons.append("the harness marked the run incomplete")
    if report.problems:
        report.status = "tampered"
    elif report.incomplete_reasons:
        report.status = "incomplete"
    return report
