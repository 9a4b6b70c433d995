"""The allow-listing proxy inside the agent's namespace: the runtime reaches its endpoint
with credentials it never held; its children, other paths and CONNECT are refused."""

import json
import sys

from onegc.harness.agents import AgentLaunch
from onegc.harness.proxy import Route
from tests.agents.conftest import run_launch
from tests.conftest import needs_root
from tests.evidencedb import rows

pytestmark = needs_root

AGENT = r"""
import http.client, json, subprocess, sys
def get(path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", 18080, timeout=10)
    c.request(method, path, headers={"x-api-key": "agent-guess"})
    r = c.getresponse()
    return r.status, r.read().decode()
print(json.dumps({"main": get("/v1/echo?q=1")}), flush=True)
print(json.dumps({"outside": get("/admin")}), flush=True)
print(json.dumps({"connect": get("example.org:443", "CONNECT")}), flush=True)
child = subprocess.run([sys.executable, "-c",
    "import http.client; c = http.client.HTTPConnection('127.0.0.1', 18080, timeout=10); "
    "c.request('GET', '/v1/echo'); print(c.getresponse().status)"], capture_output=True, text=True)
print(json.dumps({"child": child.stdout.strip()}), flush=True)
"""


def test_only_the_runtime_reaches_the_endpoint_and_everything_is_recorded(runs_dir, upstream):
    base, seen = upstream
    launch = AgentLaunch("proxytest", "proxytest", [sys.executable, "-c", AGENT], stream=None)
    run = run_launch(runs_dir, launch, route=Route(base, {"authorization": "Bearer real-secret"}, "/v1"))
    out = {}
    for line in (run / "agent" / "stdout.log").read_text().splitlines():
        out.update(json.loads(line))
    assert out["main"][0] == 200 and json.loads(out["main"][1])["path"] == "/api/echo?q=1"
    assert out["outside"][0] == 403 and out["connect"][0] == 403 and out["child"] == "403"
    assert len(seen) == 1
    assert seen[0]["headers"]["authorization"] == "Bearer real-secret"
    assert "x-api-key" not in seen[0]["headers"]
    verdicts = rows(run, "SELECT verdict, reason, target FROM proxy_connections ORDER BY seq")
    assert sorted((v, r) for v, r, _ in verdicts) == [
        ("allowed", None),
        ("refused", "not_endpoint"),
        ("refused", "not_endpoint"),
        ("refused", "not_runtime"),
    ]
    main_pid = rows(run, "SELECT pid FROM execs ORDER BY seq LIMIT 1")[0][0]
    allowed = rows(run, "SELECT pid, bytes_down FROM proxy_connections WHERE verdict = 'allowed'")
    assert allowed[0][0] == main_pid and allowed[0][1] > 0
    child = rows(run, "SELECT pid, argv FROM proxy_connections WHERE reason = 'not_runtime'")[0]
    assert child[0] != main_pid and child[1][1] == "-c"
