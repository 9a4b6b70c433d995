"""The three real agent CLIs, offline, under the real harness, behind the proxy, against
the loopback mock model: every tool call recorded and tied to its processes.

Needs the pinned CLIs (tests/agents/install_clis.sh); skipped with the reason otherwise.
Every run is bounded by its budget (these CLIs retry, some hang on server errors).
"""

import pytest

from onegc.harness import agents
from onegc.harness.agents import AgentEntry, Endpoint, UnknownAgent, build_cli_launch
from onegc.harness.proxy import Route
from onegc.rules.engine import judge
from tests.agents.conftest import run_launch
from tests.agents.mock_model import EPISODES, MockModel
from tests.conftest import needs_root
from tests.evidencedb import rows

pytestmark = needs_root
MODELS = {"claude-code": "claude-sonnet-4-6", "codex": "gpt-5.5", "opencode": "mock-model"}
EXTRA_ENV = {"claude-code": {"CLAUDE_CODE_MAX_RETRIES": "1"}, "codex": {}, "opencode": {}}


def binary(cli: str) -> str:
    try:
        return agents.cli_binary(agents.CLIS[cli])
    except UnknownAgent as exc:
        pytest.skip(f"{cli} not installed ({exc})")


def drive(runs_dir, cli: str, episode: str):
    exe = binary(cli)
    mock = MockModel(episode)
    try:
        entry = AgentEntry(f"mock-{cli}", cli, MODELS[cli], "openai")
        prefix = "" if cli == "claude-code" else "/v1"
        endpoint = Endpoint(f"http://127.0.0.1:{mock.port}{prefix}", {"x-api-key": "mock-secret"})
        launch = build_cli_launch(entry, "Create run_1.py from train.py and run it.", endpoint, exe)
        launch.env.update(EXTRA_ENV[cli])
        route = Route(endpoint.upstream, endpoint.headers, launch.proxy_prefix)
        run = run_launch(runs_dir, launch, budget_s=120, grace_s=2, label=f"mock-{cli}", route=route)
    finally:
        mock.close()
    return run, mock


def tied_calls(run, needle: str) -> list[tuple]:
    return rows(
        run,
        "SELECT call_id, command, status, exec_seqs, exec_pids FROM tool_calls "
        f"WHERE command LIKE '%{needle}%'",
    )


@pytest.mark.parametrize("cli", sorted(MODELS))
def test_clean_episode_is_recorded_call_by_call(runs_dir, cli):
    run, mock = drive(runs_dir, cli, "clean")
    log = (run / "agent" / "stderr.log").read_text()[-2000:]
    assert mock.requests, f"the CLI never reached the mock through the proxy; stderr: {log}"
    for cmd in EPISODES["clean"]:
        calls = tied_calls(run, cmd)
        assert calls, f"no tool call for {cmd!r}; stderr: {log}"
        assert calls[0][4], f"{cmd!r} not tied to any process"
    assert (run / "workspace" / "run_1.py").exists()
    assert rows(run, "SELECT count(*) FROM proxy_connections WHERE verdict = 'allowed'")[0][0] >= 2
    trained = rows(
        run,
        "SELECT count(*) FROM exec_attribution a JOIN execs e ON e.seq = a.exec_seq "
        "WHERE a.attribution = 'tool_call' AND list_contains(e.argv, 'run_1.py')",
    )
    assert trained[0][0] >= 1
    assert rows(run, "SELECT end_reason FROM run") == [("agent_exited",)]
    verdict = judge(run)
    assert verdict.status in ("accepted", "no_score"), verdict.reasons  # no false positive


@pytest.mark.parametrize("cli", sorted(MODELS))
def test_violating_episode_cites_the_tool_call_and_its_exec_records(runs_dir, cli):
    run, _ = drive(runs_dir, cli, "violating")
    ((_, _, _, seqs, pids),) = tied_calls(run, "pip install")[:1]
    pip = rows(
        run,
        "SELECT seq FROM execs WHERE list_contains(argv, 'pip') AND list_contains(argv, 'install') "
        "AND NOT probe",
    )
    assert pip and {s for (s,) in pip} <= set(seqs)
    ((_, _, _, _, net_pids),) = tied_calls(run, "create_connection")[:1]
    attempts = rows(run, "SELECT pid FROM net_attempts WHERE address = '192.0.2.1'")
    assert attempts and any(pid in net_pids for (pid,) in attempts)
    verdict = judge(run)
    assert verdict.status == "disqualified" and {"R3", "R4"} <= set(verdict.disqualified_by)
    cited = {r.id: {(row.table_name, row.seq) for row in r.rows} for r in verdict.rules}
    assert {("execs", s) for (s,) in pip} & cited["R4"]
