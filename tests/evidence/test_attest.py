"""Signed attestations: a run sealed with a key verifies with the public key; a reseal, a
signature by another key, a stripped signature or a swapped statement is `tampered`, and a
bundle verifies elsewhere (another uid, no task data) with the same verdict."""

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from onegc.evidence.attest import PUBLIC_NAME, init_keys, load_verifier, open_envelope
from onegc.evidence.integrity import verify_run
from onegc.evidence.seal import seal, sealable_files
from onegc.rules.engine import judge
from tests.conftest import RUNS_BASE, monitored, needs_root

pytestmark = needs_root
CLI = [sys.executable, "-c", "from onegc.audit.cli import main; main()"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    base = tmp_path_factory.mktemp("keys")
    init_keys(base / "harness")
    init_keys(base / "other")
    return base


@pytest.fixture(scope="module")
def signed_runs(keys):
    """Two runs sealed while the harness had a key (one installs), one without."""
    base = RUNS_BASE / ("attest-" + uuid.uuid4().hex[:8])
    base.mkdir(parents=True)
    os.chmod(base, 0o755)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ONEGC_KEY_DIR", str(keys / "harness"))
        clean = monitored(base, "echo hi > a.txt", rep=1)
        dirty = monitored(base, "python3 -m pip install --no-index --quiet not-a-package || true", rep=2)
        env.setenv("ONEGC_KEY_DIR", str(keys / "none"))  # a key folder with no key: the harness signs nothing
        unsigned = monitored(base, "true", rep=3)
    yield clean, dirty, unsigned
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def copy_of(tmp_path):
    def make(run):
        dest = RUNS_BASE / ("copy-" + uuid.uuid4().hex[:8]) / run.name
        shutil.copytree(run, dest, symlinks=True)
        return dest
    made = []
    yield lambda run: made.append(make(run)) or made[-1]
    for d in made:
        shutil.rmtree(d.parent, ignore_errors=True)


def pub(keys, who="harness"):
    return load_verifier(keys / who / PUBLIC_NAME)


def test_signed_run_verifies_and_says_so(signed_runs, keys):
    clean, dirty, unsigned = signed_runs
    report = verify_run(clean, pub(keys))
    assert (report.status, report.signature) == ("intact", "verified") and report.keyid == pub(keys).keyid
    assert verify_run(clean).label.startswith("intact (signed by key")
    assert verify_run(unsigned).label == "intact (unsigned)"
    env = json.loads((clean / "attestations" / "run.intoto.json").read_text())
    stmt, why = open_envelope(env, pub(keys))
    assert why is None and stmt["predicateType"].endswith("/run/v1")
    names = {s["name"] for s in stmt["subject"]}
    assert {"manifest.json", "evidence.duckdb", "journal/execs.jsonl", "agent/launch.json"} <= names
    pred = stmt["predicate"]
    assert pred["task"]["id"] == "t0" and "prepare.py" in pred["task"]["locked_files"]
    assert pred["host"]["kernel"] == os.uname().release and pred["budget"]["budget_s"] == 30
    assert pred["sensor_health"] and pred["harness"]["name"] == "onegc-audit"
    # an unsigned run checked with a key is not trusted
    report = verify_run(unsigned, pub(keys))
    assert report.status == "tampered" and "no signed attestation" in report.problems[0]


def test_reseal_without_the_pip_row_is_tampered_with_the_key(signed_runs, keys, copy_of):
    """The forger rewrites the journals without the install, reseals with the project's own
    seal(): hashes all agree, only the signature tells."""
    run = copy_of(signed_runs[1])
    assert judge(run).status == "disqualified"
    path = run / "journal" / "execs.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    keep = [r for r in rows if "pip" not in json.dumps(r.get("argv"))]
    assert len(keep) < len(rows)
    from onegc.evidence.journal import Journal

    path.unlink()
    j = Journal(path, "execs")
    for r in keep:
        j.write(**{k: v for k, v in r.items() if k not in ("seq", "h", "prev")})
    j.close()
    (run / "evidence.duckdb").unlink()
    (run / "manifest.json").unlink()
    seal(run, complete=True, reasons=[])
    assert verify_run(run).status == "intact"  # the seal alone is fooled ...
    v = judge(run, verifier=pub(keys))  # ... the signature is not
    assert v.status == "tampered" and "not the one that was signed" in v.reasons[0]
    res = subprocess.run([*CLI, "verify", str(run), "--key", str(keys / "harness" / PUBLIC_NAME)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 6 and "not the one that was signed" in res.stdout


def test_other_key_stripped_and_swapped_signatures_are_tampered(signed_runs, keys, copy_of):
    clean, dirty, _ = signed_runs
    assert verify_run(clean, pub(keys, "other")).problems[0].startswith("signature: signature does not verify")
    run = copy_of(clean)
    att = run / "attestations" / "run.intoto.json"
    env = json.loads(att.read_text())
    att.write_text(json.dumps({**env, "signatures": []}))
    assert "stripped" in verify_run(run, pub(keys)).problems[0]
    att.unlink()
    assert "no signed attestation" in verify_run(run, pub(keys)).problems[0]
    shutil.copy(dirty / "attestations" / "run.intoto.json", att)  # another run's genuine statement
    assert "not the one that was signed" in verify_run(run, pub(keys)).problems[0]
    payload = json.loads(base64.b64decode(env["payload"]))
    payload["predicate"]["complete"] = not payload["predicate"]["complete"]  # edited, old signature
    att.write_text(json.dumps({**env, "payload": base64.b64encode(json.dumps(payload).encode()).decode()}))
    assert "does not verify" in verify_run(run, pub(keys)).problems[0]


def test_verdict_attestation_is_a_second_statement_over_the_same_subjects(signed_runs, keys, copy_of):
    run = copy_of(signed_runs[1])
    env = dict(os.environ, ONEGC_KEY_DIR=str(keys / "harness"))
    res = subprocess.run([*CLI, "verify", str(run), "--attest"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 4, res.stderr
    (path,) = (run / "attestations").glob("verdict.*.intoto.json")
    stmt, why = open_envelope(json.loads(path.read_text()), pub(keys))
    run_stmt, _ = open_envelope(json.loads((run / "attestations" / "run.intoto.json").read_text()), pub(keys))
    assert why is None and stmt["subject"] == run_stmt["subject"]
    assert stmt["predicate"]["status"] == "disqualified" and stmt["predicate"]["disqualified_by"] == ["R4"]
    r4 = next(r for r in stmt["predicate"]["rules"] if r["id"] == "R4")
    assert r4["cited"] and r4["cited"][0]["table"] == "execs"
    assert verify_run(run, pub(keys)).status == "intact"  # the evidence itself is untouched
    keyed = [*CLI, "verify", str(run), "--key", str(keys / "harness" / PUBLIC_NAME)]
    res = subprocess.run(keyed, capture_output=True, text=True, timeout=120)
    assert res.returncode == 4 and "signed verdict agrees (disqualified)" in res.stdout
    # the key holder signing a verdict the evidence does not support is shown, not believed
    from onegc.evidence.attest import load_signer
    from onegc.evidence.seal import sign_verdict

    lie = judge(run).model_copy(update={"status": "accepted"})
    path.unlink()
    sign_verdict(run, lie, load_signer(keys / "harness"))
    res = subprocess.run(keyed, capture_output=True, text=True, timeout=120)
    assert res.returncode == 4 and "signed accepted (None), judged now disqualified (None): they disagree" in res.stdout
    env = json.loads(path.read_text())
    env["signatures"][0]["sig"] = base64.b64encode(b"\0" * 64).decode()
    path.write_text(json.dumps(env))
    res = subprocess.run(keyed, capture_output=True, text=True, timeout=120)
    assert res.returncode == 4 and "does not verify" in res.stdout and "not counted" in res.stdout


def test_bundle_verifies_as_another_user_with_the_same_verdict(signed_runs, keys, tmp_path):
    run = signed_runs[1]
    out = RUNS_BASE / f"bundle-{uuid.uuid4().hex[:8]}.tgz"
    try:
        res = subprocess.run([*CLI, "export", str(run), "--bundle", str(out)], capture_output=True, text=True)
        assert res.returncode == 0 and "signed by key" in res.stdout, res.stderr
        os.chmod(out, 0o644)
        key = RUNS_BASE / f"pub-{uuid.uuid4().hex[:8]}.pem"
        shutil.copy(keys / "harness" / PUBLIC_NAME, key)
        os.chmod(key, 0o644)
        direct = subprocess.run([*CLI, "verify", "--json", str(run), "--key", str(key)], capture_output=True,
                                text=True, timeout=120)
        # No capability at all (root's powers gone: no namespaces, no cgroups, no reading what
        # the owner could not), no task data, another cwd and home.
        no_root = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"]
        elsewhere = subprocess.run(
            [*no_root, *CLI, "verify", "--json", str(out), "--key", str(key)], capture_output=True, text=True,
            timeout=120, cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ONEGC_DATA_DIR": str(tmp_path / "no-data")})
        assert elsewhere.returncode == direct.returncode == 4, elsewhere.stderr
        a, b = json.loads(direct.stdout), json.loads(elsewhere.stdout)
        assert a == b
        # a bundle edited after export is tampered, also there
        bad = subprocess.run([*CLI, "verify", str(out), "--key", str(keys / "other" / PUBLIC_NAME)],
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 6
    finally:
        out.unlink(missing_ok=True)
        for k in RUNS_BASE.glob("pub-*.pem"):
            k.unlink()


def test_tripwire_every_file_the_verdict_can_read_is_sealed(signed_runs, copy_of):
    """Every file outside workspace/ and scratch/ is in the manifest, and a byte edit of any
    of them makes the run tampered, never another verdict."""
    src = signed_runs[0]
    manifest = json.loads((src / "manifest.json").read_text())
    outside = {str(p.relative_to(src)) for p in src.rglob("*") if p.is_file()
               and p.relative_to(src).parts[0] not in ("workspace", "scratch", "attestations")} - {"manifest.json"}
    assert "agent/launch.json" in outside
    assert outside == set(manifest["artifacts"]) == {str(p.relative_to(src)) for p in sealable_files(src)}
    for name in sorted(outside):
        run = copy_of(src)
        path = run / name
        data = bytearray(path.read_bytes()) or bytearray(b"\0")
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        verdict = judge(run)
        assert verdict.status == "tampered", (name, verdict.status, verdict.reasons)
    run = copy_of(src)
    (run / "agent" / "late.json").write_text("{}")
    assert judge(run).status == "tampered"


def test_aggregate_with_the_key_admits_only_runs_whose_signatures_verify(signed_runs, keys):
    from onegc.audit.aggregate import collect_runs

    base = signed_runs[0].parents[2]
    plain = {r["rep"]: r["status"] for r in collect_runs(base).iter_rows(named=True)}
    keyed = {r["rep"]: r["status"] for r in collect_runs(base, pub(keys)).iter_rows(named=True)}
    assert plain[3] != "tampered" and keyed[3] == "tampered"  # the unsigned run is listed apart
    assert {k: v for k, v in keyed.items() if k != 3} == {k: v for k, v in plain.items() if k != 3}
    other = {r["rep"]: r["status"] for r in collect_runs(base, pub(keys, "other")).iter_rows(named=True)}
    assert set(other.values()) == {"tampered"}


def test_keys_init_show_and_bad_key_files(tmp_path):
    folder = tmp_path / "k"
    res = subprocess.run([*CLI, "keys", "init", "--dir", str(folder)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (folder / "signing.pem").stat().st_mode & 0o777 == 0o600
    keyid = load_verifier(folder / PUBLIC_NAME).keyid
    assert keyid in res.stdout
    show = subprocess.run([*CLI, "keys", "show", "--dir", str(folder)], capture_output=True, text=True)
    assert show.returncode == 0 and "BEGIN PUBLIC KEY" in show.stdout and keyid in show.stdout
    again = subprocess.run([*CLI, "keys", "init", "--dir", str(folder)], capture_output=True, text=True)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    empty = subprocess.run([*CLI, "keys", "show", "--dir", str(tmp_path / "none")], capture_output=True, text=True)
    assert empty.returncode == 2 and "keys init" in empty.stderr
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key")
    for key in (junk, folder / "signing.pem", tmp_path / "missing.pub"):
        res = subprocess.run([*CLI, "verify", str(tmp_path), "--key", str(key)], capture_output=True, text=True)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr
