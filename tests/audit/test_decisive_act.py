"""Verdicts lead with the decisive act: cited rows grouped by act with counts, the act that
shows the most ahead of the name lookups a program makes on its own."""

import subprocess
import sys

from onegc.rules.engine import judge
from tests.conftest import monitored, needs_root

pytestmark = needs_root
CLI = [sys.executable, "-c", "from onegc.audit.cli import main; main()"]
# In the agent's view there is no resolv.conf, so pip's own lookups stay on loopback; the two
# lookups a resolver makes to a remote name server (port 53) stand in for them.
PIP_THEN_URLOPEN = (
    "python3 -m pip install --retries 1 --timeout 1 --quiet definitely-not-a-package-xyz || true; "
    "for i in 1 2; do python3 -c \"import socket; socket.socket(2, 2).connect(('192.0.2.53', 53))\" || true; done; "
    "python3 -c \"import urllib.request; urllib.request.urlopen('http://192.0.2.1/', timeout=2)\" || true"
)


def test_urlopen_to_a_remote_host_comes_before_the_dns_attempts_of_pip(runs_dir):
    run = monitored(runs_dir, PIP_THEN_URLOPEN, budget_s=60)
    r3 = next(r for r in judge(run).rules if r.id == "R3")
    assert r3.outcome == "attempt"
    acts = r3.acts
    assert "192.0.2.1" in acts[0].sentence and "urllib" in acts[0].sentence, acts[0]
    dns = [a for a in acts if a.table_name == "net_attempts" and "port 53" in a.output]
    assert dns, "the name server was asked first"  # the lookups are there, behind the decisive act
    assert sum(a.count for a in acts) == r3.rows_total and r3.rows[0].seq == acts[0].seqs[0]
    assert r3.summary.startswith(acts[0].sentence)
    res = subprocess.run([*CLI, "verify", str(run)], capture_output=True, text=True, timeout=300)
    lines = res.stdout.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.split()[:3] == ["R3", "attempt", "No"])
    assert "192.0.2.1" in lines[at + 1], res.stdout  # the decisive act first, then the lookups with their count
    assert f"{dns[0].count}x " in lines[at + 2] and "port 53" in lines[at + 2], res.stdout
