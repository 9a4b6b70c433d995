"""The dispatch table: the paper's seven, invocations per CLI, keys only from outside."""

import json
import subprocess
import sys

import pytest

from onegc.harness import agents
from onegc.harness.agents import PLACEHOLDER_KEY, UnknownAgent, resolve_agent
from onegc.harness.prompt import PREAMBLE


@pytest.fixture
def fake_clis(tmp_path, monkeypatch):
    """Executables standing in for the pinned install, plus a clean config and keys."""
    for cli in agents.CLIS.values():
        p = tmp_path / "clis" / "node_modules" / cli.binary
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)
    monkeypatch.setenv(agents.CLI_DIR_ENV, str(tmp_path / "clis"))
    monkeypatch.setenv(agents.CONFIG_ENV, str(tmp_path / "agents.toml"))
    for p in agents.PROVIDERS.values():
        monkeypatch.delenv(p.base_url_env, raising=False)
        monkeypatch.setenv(p.key_env, f"secret-{p.name}")
    return tmp_path


def test_the_papers_seven_agents_are_presets():
    table = {e.name: (e.cli, e.model) for e in agents.PRESETS.values()}
    assert table == {
        "sonnet46": ("claude-code", "claude-sonnet-4-6"),
        "opus46": ("claude-code", "claude-opus-4-6"),
        "opus47": ("claude-code", "claude-opus-4-7"),
        "gpt55": ("codex", "gpt-5.5"),
        "kimik25": ("opencode", "moonshotai/kimi-k2.5"),
        "kimik26": ("opencode", "moonshotai/kimi-k2.6"),
        "qwen36plus": ("opencode", "qwen/qwen3.6-plus"),
    }


@pytest.mark.parametrize("name", sorted(agents.PRESETS))
def test_the_cli_never_sees_the_key_and_the_prompt_starts_with_the_preamble(fake_clis, name):
    launch = resolve_agent(name, [], 2400)
    blob = json.dumps([launch.argv, launch.env, launch.home_files])
    assert "secret-" not in blob and PLACEHOLDER_KEY in blob
    prompt = launch.argv[-1] if launch.stream != "claude" else launch.argv[2]
    assert prompt.startswith(PREAMBLE) and "program.md" in prompt and "run_{x}.py" in prompt
    assert "40 minutes" in prompt
    assert launch.endpoint is not None and any("secret-" in v for v in launch.endpoint.headers.values())
    assert "127.0.0.1:18080" in blob


def test_endpoint_from_environment_then_config_file(fake_clis, monkeypatch):
    (fake_clis / "agents.toml").write_text(
        '[providers.openrouter]\nbase_url = "http://10.0.0.5:9000/v1"\napi_key = "from-file"\n'
        '[agents.mykimi]\ncli = "opencode"\nmodel = "moonshotai/kimi-k2.6"\nprovider = "openrouter"\n'
    )
    monkeypatch.delenv("OPENROUTER_API_KEY")
    launch = resolve_agent("mykimi", [])
    assert launch.endpoint.upstream == "http://10.0.0.5:9000/v1"
    assert launch.endpoint.headers == {"authorization": "Bearer from-file"}
    monkeypatch.setenv("OPENROUTER_BASE_URL", "https://example.test/api/v1")
    assert resolve_agent("kimik25", []).endpoint.upstream == "https://example.test/api/v1"


def test_missing_key_is_a_clear_error(fake_clis, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(UnknownAgent, match="ANTHROPIC_API_KEY"):
        resolve_agent("opus47", [])


def test_codex_and_opencode_configs_point_at_the_proxy_and_switch_off_phone_home(fake_clis):
    codex = resolve_agent("gpt55", [])
    toml = codex.home_files[".codex/config.toml"]
    assert 'wire_api = "responses"' in toml and "plugins = false" in toml and "127.0.0.1:18080/v1" in toml
    assert codex.codex_home == ".codex" and codex.env["CODEX_HOME"] == "{home}/.codex"
    oc = resolve_agent("qwen36plus", [])
    conf = json.loads(oc.home_files[".config/opencode/opencode.json"])
    assert conf["provider"]["onegc"]["options"]["baseURL"] == "http://127.0.0.1:18080/v1"
    assert oc.env["OPENCODE_DISABLE_AUTOUPDATE"] == "1"
    claude = resolve_agent("sonnet46", [])
    assert claude.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert claude.argv[3:7] == ["--output-format", "stream-json", "--verbose", "--model"]


def test_unknown_agent_names_the_known_ones():
    with pytest.raises(UnknownAgent, match="opus47"):
        resolve_agent("gpt4", [])
    with pytest.raises(UnknownAgent, match="baseline"):
        resolve_agent("scripted:nope", [])


def test_agents_list_cli_shows_seven_plus_scripted(fake_clis):
    out = subprocess.run(
        [sys.executable, "-m", "onegc.audit", "agents", "list", "--json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    names = [r["name"] for r in json.loads(out.stdout)]
    assert set(agents.PRESETS) <= set(names) and "scripted:baseline" in names and "command" in names
