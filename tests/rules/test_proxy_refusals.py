"""R3 reads the harness proxy's refusals: a process of the agent's tree that asks the proxy for
anything (a CONNECT to the internet, a path off the endpoint) made an attempt, cited by its
proxy_connections row; the agent runtime's own refusals are its phone-home, not R3's."""

import json
import sys

from onegc.harness.agents import AgentLaunch
from onegc.harness.proxy import Route
from onegc.rules.engine import judge
from tests.agents.conftest import run_launch
from tests.conftest import needs_root
from tests.rules.judging import rule

pytestmark = needs_root

RUNTIME = r"""
import http.client, json, subprocess, sys
def ask(path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", 18080, timeout=10)
    c.request(method, path)
    r = c.getresponse()
    return r.status
print(json.dumps({"main": ask("/v1/echo")}), flush=True)
print(json.dumps({"own_connect": ask("telemetry.example.org:443", "CONNECT")}), flush=True)
if sys.argv[1] == "tool":
    out = subprocess.run([sys.executable, "-c",
        "import http.client; c = http.client.HTTPConnection('127.0.0.1', 18080, timeout=10); "
        "c.request('CONNECT', 'files.example.org:443'); print(c.getresponse().status)"],
        capture_output=True, text=True).stdout.strip()
    print(json.dumps({"tool": out}), flush=True)
"""


def _run(runs_dir, upstream, mode: str):
    base, _seen = upstream
    launch = AgentLaunch("proxyrule", "proxyrule", [sys.executable, "-c", RUNTIME, mode], stream=None)
    run = run_launch(runs_dir, launch, route=Route(base, {}, "/v1"))
    out = {}
    for line in (run / "agent" / "stdout.log").read_text().splitlines():
        out.update(json.loads(line))
    return run, out, judge(run)


def test_a_tool_asking_the_proxy_for_the_internet_is_an_r3_attempt(runs_dir, upstream):
    run, out, verdict = _run(runs_dir, upstream, "tool")
    assert out == {"main": 200, "own_connect": 403, "tool": "403"}
    r3 = rule(verdict, "R3")
    assert r3.outcome == "attempt", r3
    cited = [r for r in r3.rows if r.table_name == "proxy_connections"]
    assert [r.path for r in cited] == ["files.example.org:443"], [r.output for r in r3.rows]
    assert cited[0].pid is not None and "not_runtime" in cited[0].sentence
    assert verdict.status == "disqualified" and "R3" in verdict.disqualified_by


def test_the_runtimes_own_refused_request_is_not_the_agents_attempt(runs_dir, upstream):
    run, out, verdict = _run(runs_dir, upstream, "runtime-only")
    assert out == {"main": 200, "own_connect": 403}
    assert rule(verdict, "R3").outcome == "pass", rule(verdict, "R3")
    assert "R3" not in verdict.disqualified_by
