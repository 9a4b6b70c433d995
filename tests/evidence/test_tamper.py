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


@pytest.mark.parametrize("piece", [32 << 20, 2048], ids=["whole", "in-pieces"])
def test_the_fast_chain_check_agrees_with_the_record_by_record_one(sealed, tmp_path, monkeypatch, piece):
    """check_chain reads the bytes as written (journal._fast_chain) and falls back to re-serialising
    each record only when something disagrees: both must say the same of every journal, and a
    record edited in place (its hash recomputed, the next record's prev not) is still caught."""
    from onegc.evidence import journal
    from onegc.evidence.journal import Journal, _fast_chain, check_chain

    monkeypatch.setattr(journal, "CHUNK_BYTES", piece)  # small pieces: the joins between them are checked
    monkeypatch.setattr(journal.os, "cpu_count", lambda: 8)

    path = tmp_path / "harness_events.jsonl"
    j = Journal(path, "harness_events")
    for i in range(50):
        j.write(kind="x", pid=i, argv=["é\u2028", 'q"uote'], detail={"seq": 99, "prev": "zz", "n": [i, None]})
    j.close()
    for p in [path, *sorted((sealed / "journal").glob("*.jsonl"))]:
        fast = _fast_chain(p, p.stem)
        assert fast is not None, p
        full = check_chain(p, p.stem)
        assert (fast.records, fast.head, fast.problems) == (full.records, full.head, []), p
    lines = [line + "\n" for line in path.read_text().split("\n")[:-1]]  # not splitlines: \u2028 is in a record
    removed = tmp_path / "removed.jsonl"  # a record gone (wherever the pieces' joins fall)
    for k in range(1, 49):
        removed.write_text("".join(lines[:k] + lines[k + 1 :]))
        assert _fast_chain(removed, "harness_events") is None, k
    rec = json.loads(lines[10])
    rec["pid"] = 1234
    from onegc.evidence.journal import canonical, record_hash

    rec["h"] = record_hash(rec)
    lines[10] = canonical(rec).decode()[:-1] + f',"h":"{rec["h"]}"}}\n'
    path.write_text("".join(lines))
    assert _fast_chain(path, "harness_events") is None
    assert check_chain(path, "harness_events").problems == [
        "harness_events.jsonl:12: chain broken (previous record changed or removed)"
    ]
