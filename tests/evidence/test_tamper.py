"""Any change to sealed evidence is caught: a flipped byte, a removed record, an edited
manifest, a file slipped into the journals."""

import json

import pytest

from onegc.evidence.integrity import verify_run
from tests.conftest import monitored, needs_root

pytestmark = needs_root


@pytest.fixture
def sealed(runs_dir):
    run = monitored(runs_dir, "for i in 1 2 3; do /bin/true; done; echo hi > a.txt")
    assert verify_run(run).status == "intact"
    return run


def test_flipped_byte_in_a_journal(sealed):
    path = sealed / "journal" / "execs.jsonl"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify_run(sealed)
    assert report.status == "tampered"
    assert any("journal/execs.jsonl" in p for p in report.problems)


def test_flipped_byte_in_the_database(sealed):
    path = sealed / "evidence.duckdb"
    data = bytearray(path.read_bytes())
    data[4096 + 100] ^= 0xFF
    path.write_bytes(bytes(data))
    report = verify_run(sealed)
    assert report.status == "tampered"
    assert any("evidence.duckdb" in p for p in report.problems)


def test_removed_record(sealed):
    path = sealed / "journal" / "execs.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:1] + lines[2:]))
    report = verify_run(sealed)
    assert report.status == "tampered"
    assert any("out of sequence" in p or "chain" in p for p in report.problems)


def test_reordered_records(sealed):
    path = sealed / "journal" / "execs.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("".join(lines))
    assert verify_run(sealed).status == "tampered"


def test_edited_manifest(sealed):
    path = sealed / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["incomplete_reasons"] = []
    manifest["complete"] = False  # an edit in either direction breaks the digest
    path.write_text(json.dumps(manifest))
    report = verify_run(sealed)
    assert report.status == "tampered"
    assert any("digest" in p for p in report.problems)


def test_manifest_rehashed_after_editing_a_journal_still_disagrees_with_the_database(sealed):
    """A forger who edits a journal and recomputes the manifest's file hashes and digest is
    still caught by the chain heads held inside evidence.duckdb."""
    from onegc.evidence.journal import check_chain
    from onegc.evidence.seal import manifest_digest, sha256_file

    path = sealed / "journal" / "execs.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    manifest = json.loads((sealed / "manifest.json").read_text())
    manifest["artifacts"]["journal/execs.jsonl"]["sha256"] = sha256_file(path)
    check = check_chain(path, "execs")
    manifest["journals"]["execs"] = {"records": check.records, "head": check.head}
    manifest["digest"] = manifest_digest(manifest)
    (sealed / "manifest.json").write_text(json.dumps(manifest))
    report = verify_run(sealed)
    assert report.status == "tampered"
    assert any("evidence.duckdb" in p for p in report.problems)


def test_file_added_to_the_journals(sealed):
    (sealed / "journal" / "extra.jsonl").write_text("{}\n")
    assert verify_run(sealed).status == "tampered"


def test_truncated_database(sealed):
    path = sealed / "evidence.duckdb"
    path.write_bytes(path.read_bytes()[:1000])
    assert verify_run(sealed).status == "tampered"
