"""The engine's promises: verify writes nothing, is reproducible, records its policy; the
policy changes what an attempt means; tampering takes precedence; the CLI's exit codes."""

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from onegc.audit.exitcodes import DISQUALIFIED, NO_SCORE, TAMPERED
from onegc.rules.engine import CHECKS_DIR, RULE_KEYS, judge, load_policy, load_rules
from tests.conftest import monitored, needs_root

CLI = [sys.executable, "-c", "from onegc.audit.cli import main; main()"]
CONNECT = (
    "python3 -c \"import socket; s = socket.socket(); s.settimeout(1)\n"
    "try: s.connect(('192.0.2.7', 443))\nexcept OSError: pass\""
)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def tree_state(root: Path) -> dict:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath, name)
            st = p.lstat()
            out[str(p)] = (
                st.st_mtime_ns,
                hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None,
            )
    return out


def test_rule_files_follow_the_house_style():
    """Fixed key order, exception hooks empty by default, every check names its kind."""
    for path in sorted(CHECKS_DIR.glob("*.toml")):
        raw = tomllib.loads(path.read_text())
        keys = [k for k in raw if k in RULE_KEYS]
        assert keys == sorted(keys, key=RULE_KEYS.index), path.name
        assert path.name.startswith(raw["id"] + "_"), path.name
        assert all(v == "false" for v in raw.get("exceptions", {}).values()), path.name
        assert raw["desc"].strip().endswith("."), path.name
    ids = [r.id for r in load_rules()]
    assert ids[:9] == [f"R{i}" for i in range(1, 10)] and {"W1", "W2", "W3"} <= set(ids)


@needs_root
def test_verify_writes_nothing_is_reproducible_and_records_the_policy(runs_dir):
    run = monitored(runs_dir, CONNECT)
    before = tree_state(run)
    first, second = judge(run), judge(run)
    assert tree_state(run) == before
    assert first.model_dump_json() == second.model_dump_json()
    assert first.status == "disqualified" and first.disqualified_by == ["R3"]
    assert first.policy.name == "strict" and "R3" in first.policy.attempt_disqualifies
    lenient = judge(run, load_policy(Path(CHECKS_DIR.parent / "policies" / "lenient.toml")))
    r3 = next(r for r in lenient.rules if r.id == "R3")
    assert r3.outcome == "attempt" and not r3.disqualifies
    assert lenient.status == "no_score" and lenient.policy.name == "lenient"
    assert lenient.reasons[0].startswith("R7 fail") or "not scored" in lenient.reasons[0]


@needs_root
def test_policy_exception_hook_and_cli_exit_codes(runs_dir, tmp_path):
    run = monitored(runs_dir, CONNECT)
    policy = tmp_path / "site.toml"
    policy.write_text(
        'name = "site"\nattempt_disqualifies = ["R3"]\n'
        "[rules.R3.exceptions]\nallowed_endpoints = \"path = '192.0.2.7 port 443'\"\n"
    )
    res = cli("verify", str(run), "--json", "--policy", str(policy))
    verdict = json.loads(res.stdout)
    assert res.returncode == NO_SCORE, res.stderr
    assert next(r for r in verdict["rules"] if r["id"] == "R3")["outcome"] == "pass"
    assert verdict["policy"]["overrides"]["rules"]["R3"]["exceptions"]["allowed_endpoints"]
    res = cli("verify", str(run))
    assert res.returncode == DISQUALIFIED and "R3" in res.stdout and "192.0.2.7" in res.stdout
    (run / "manifest.json").write_text("{}")
    res = cli("verify", str(run), "--json")
    assert res.returncode == TAMPERED and json.loads(res.stdout)["rules"] == []
    bad = tmp_path / "bad.toml"
    bad.write_text("attempt_disqualifies = 3\n")
    res = cli("verify", str(run), "--policy", str(bad))
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_rules_list_and_explain_read_like_documentation():
    res = cli("rules", "list")
    assert res.returncode == 0 and len(res.stdout.splitlines()) == len(load_rules())
    res = cli("rules", "explain", "R4")
    assert res.returncode == 0
    for words in (
        "no additional libraries may be installed",
        "Evidence that decides it",
        "execs:",
        "file_events:",
        "Check 1:",
        "SELECT",
    ):
        assert words in res.stdout
    assert cli("rules", "explain", "R99").returncode == 2


@pytest.mark.parametrize("rule_id", [f"R{i}" for i in range(1, 10)] + ["W1", "W2", "W3"])
def test_explain_json_names_evidence_for_every_rule(rule_id):
    res = cli("rules", "explain", rule_id, "--json")
    data = json.loads(res.stdout)
    assert data["paper"] and data["evidence"] and data["checks"]
