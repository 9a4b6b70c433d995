"""The agent dispatch table: how `--agent NAME` becomes a command line, an environment
and config files in the run's scratch home.

Adding an agent is adding an entry to PRESETS (or an `[agents.NAME]` table in the user's
config file). Endpoints and keys never come from here: each provider names the
environment variables (and config-file keys) they are read from. The CLI itself never
sees the key: its base URL points at the harness's allow-listing proxy inside the
agent's network namespace, and the proxy adds the credentials on the way out.

`command` runs whatever follows `--`; `scripted:NAME` runs a built-in scripted agent
(harness/scripted.py).
"""

import dataclasses
import json
import os
import shutil
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from onegc.evidence.errors import OnegcError
from onegc.harness.prompt import standard_prompt

PROXY_PORT = 18080
"""Where the proxy listens inside the agent's namespace (fresh per run, so always free)."""
PLACEHOLDER_KEY = "onegc-proxy-injects-the-key"
CONFIG_ENV = "ONEGC_AGENTS_CONFIG"
CLI_DIR_ENV = "ONEGC_CLI_DIR"
DEFAULT_CLI_DIR = Path("/opt/onegc-audit/clis")


class UnknownAgent(OnegcError):
    """No agent of that name in the dispatch table, or it cannot be launched as configured."""


@dataclass(frozen=True)
class Provider:
    name: str
    base_url_env: str
    key_env: str
    auth_header: str
    """Header the proxy sets on every upstream request (x-api-key, authorization)."""
    default_base_url: str
    """The provider's public API root, used when neither environment nor config names one."""


PROVIDERS = {
    p.name: p
    for p in (
        Provider(
            "anthropic", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "x-api-key", "https://api.anthropic.com"
        ),
        Provider("openai", "OPENAI_BASE_URL", "OPENAI_API_KEY", "authorization", "https://api.openai.com/v1"),
        Provider(
            "openrouter",
            "OPENROUTER_BASE_URL",
            "OPENROUTER_API_KEY",
            "authorization",
            "https://openrouter.ai/api/v1",
        ),
    )
}


@dataclass(frozen=True)
class Cli:
    name: str
    stream: str
    """Stream format its parser reads (harness/streams)."""
    package: str
    """npm package (tests/agents/install_clis.sh pins the version)."""
    binary: str
    """Native executable inside the installed package tree, relative to node_modules."""
    command: str
    """Name on PATH when not installed by our script."""


CLIS = {
    c.name: c
    for c in (
        Cli(
            "claude-code",
            "claude",
            "@anthropic-ai/claude-code",
            "@anthropic-ai/claude-code/bin/claude.exe",
            "claude",
        ),
        Cli(
            "codex",
            "codex",
            "@openai/codex",
            "@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
            "codex",
        ),
        Cli("opencode", "opencode", "opencode-ai", "opencode-ai/bin/opencode.exe", "opencode"),
    )
}


@dataclass(frozen=True)
class AgentEntry:
    name: str
    cli: str
    model: str
    provider: str
    description: str = ""


PRESETS: dict[str, AgentEntry] = {
    e.name: e
    for e in (
        AgentEntry("sonnet46", "claude-code", "claude-sonnet-4-6", "anthropic", "Claude Code, Sonnet 4.6"),
        AgentEntry("opus46", "claude-code", "claude-opus-4-6", "anthropic", "Claude Code, Opus 4.6"),
        AgentEntry("opus47", "claude-code", "claude-opus-4-7", "anthropic", "Claude Code, Opus 4.7"),
        AgentEntry("gpt55", "codex", "gpt-5.5", "openai", "Codex CLI, GPT 5.5"),
        AgentEntry(
            "kimik25", "opencode", "moonshotai/kimi-k2.5", "openrouter", "OpenCode, Kimi K2.5 (OpenRouter)"
        ),
        AgentEntry(
            "kimik26", "opencode", "moonshotai/kimi-k2.6", "openrouter", "OpenCode, Kimi K2.6 (OpenRouter)"
        ),
        AgentEntry(
            "qwen36plus",
            "opencode",
            "qwen/qwen3.6-plus",
            "openrouter",
            "OpenCode, Qwen 3.6 Plus (OpenRouter)",
        ),
    )
}


@dataclass(frozen=True)
class Endpoint:
    """Where the runtime's traffic really goes, and the credentials the proxy adds."""

    upstream: str
    headers: dict[str, str]


@dataclass(frozen=True)
class AgentLaunch:
    name: str
    label: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stream: str | None = "claude"
    """Parser for its stdout (harness/streams); None: not parsed."""
    home_files: dict[str, str] = field(default_factory=dict)
    """Files written into the run's scratch home (path relative to it -> content)."""
    endpoint: Endpoint | None = None
    """Set for real CLIs: the harness injects the proxy towards it."""
    codex_home: str | None = None
    """Relative to the scratch home; where Codex writes its session rollout."""
    proxy_prefix: str = ""
    """Path prefix of the CLI's base URL at the proxy, mapped onto the upstream's base."""
    view_ro: tuple[str, ...] = ()
    """Host files the agent's view must hold read-only beyond the runtime (a scripted agent's source)."""


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, Path.home() / ".config" / "onegc-audit" / "agents.toml"))


def load_config() -> dict:
    path = config_path()
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UnknownAgent(f"{path}: {exc}") from None


def table(config: dict | None = None) -> dict[str, AgentEntry]:
    """The presets plus the agents of the user's config file (which may override them)."""
    config = load_config() if config is None else config
    out = dict(PRESETS)
    for name, spec in (config.get("agents") or {}).items():
        try:
            entry = AgentEntry(
                name, spec["cli"], spec["model"], spec["provider"], spec.get("description", "")
            )
        except (KeyError, TypeError):
            raise UnknownAgent(f"{config_path()}: [agents.{name}] needs cli, model and provider") from None
        if entry.cli not in CLIS or entry.provider not in PROVIDERS:
            raise UnknownAgent(f"{config_path()}: [agents.{name}]: unknown cli or provider")
        out[name] = entry
    return out


def endpoint_for(provider: Provider, config: dict) -> Endpoint:
    """Environment first, then the config file's [providers.NAME] (base_url, api_key or
    api_key_env), then the provider's public API root. A key is required."""
    conf = (config.get("providers") or {}).get(provider.name) or {}
    base = os.environ.get(provider.base_url_env) or conf.get("base_url") or provider.default_base_url
    key = os.environ.get(provider.key_env) or conf.get("api_key")
    if not key and conf.get("api_key_env"):
        key = os.environ.get(conf["api_key_env"])
    if not key:
        raise UnknownAgent(
            f"no API key for {provider.name}: set {provider.key_env} or api_key in "
            f"[providers.{provider.name}] "
            f"of {config_path()}"
        )
    value = key if provider.auth_header == "x-api-key" else f"Bearer {key}"
    return Endpoint(base.rstrip("/"), {provider.auth_header: value})


def cli_binary(cli: Cli) -> str:
    """Our pinned install (ONEGC_CLI_DIR, default /opt/onegc-audit/clis), else PATH."""
    root = Path(os.environ.get(CLI_DIR_ENV, DEFAULT_CLI_DIR))
    pinned = root / "node_modules" / cli.binary
    if pinned.is_file():
        return str(pinned)
    found = shutil.which(cli.command)
    if found is None:
        raise UnknownAgent(
            f"{cli.name} is not installed: run tests/agents/install_clis.sh (into {root}) or put "
            f"`{cli.command}` on PATH"
        )
    return os.path.realpath(found)


def proxy_url(path: str = "") -> str:
    return f"http://127.0.0.1:{PROXY_PORT}{path}"


def build_cli_launch(entry: AgentEntry, prompt: str, endpoint: Endpoint, binary: str) -> AgentLaunch:
    """Invocation, environment and config files for one CLI (agent-clis.md §3-5): JSON
    stream on stdout, no permission prompts (the harness is the sandbox), non-essential
    traffic off, base URL at the proxy."""
    name = entry.name
    if entry.cli == "claude-code":
        argv = [binary, "-p", prompt, "--output-format", "stream-json", "--verbose"]
        argv += ["--model", entry.model, "--dangerously-skip-permissions"]
        env = {
            "ANTHROPIC_BASE_URL": proxy_url(),
            "ANTHROPIC_API_KEY": PLACEHOLDER_KEY,
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "TERM": "dumb",
        }
        return AgentLaunch(name, name, argv, env, "claude", {}, endpoint)
    if entry.cli == "codex":
        config = "\n".join(
            [
                f"model = {json.dumps(entry.model)}",
                'model_provider = "onegc"',
                "check_for_update_on_startup = false",
                "",
                "[model_providers.onegc]",
                'name = "onegc-audit proxy"',
                f"base_url = {json.dumps(proxy_url('/v1'))}",
                'env_key = "ONEGC_MODEL_KEY"',
                'wire_api = "responses"',
                "",
                "[analytics]",
                "enabled = false",
                "",
                "[features]",
                "plugins = false",
                "",
            ]
        )
        argv = [
            binary,
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
        ]
        argv += ["-m", entry.model, prompt]
        env = {"CODEX_HOME": "{home}/.codex", "ONEGC_MODEL_KEY": PLACEHOLDER_KEY, "TERM": "dumb"}
        files = {".codex/config.toml": config}
        return AgentLaunch(name, name, argv, env, "codex", files, endpoint, ".codex", "/v1")
    if entry.cli == "opencode":
        config = {
            "$schema": "https://opencode.ai/config.json",
            "model": f"onegc/{entry.model}",
            "small_model": f"onegc/{entry.model}",
            "autoupdate": False,
            "share": "disabled",
            "provider": {
                "onegc": {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "onegc-audit proxy",
                    "options": {"baseURL": proxy_url("/v1"), "apiKey": PLACEHOLDER_KEY},
                    "models": {entry.model: {"name": entry.model, "tool_call": True}},
                }
            },
        }
        argv = [binary, "run", "--format", "json", "-m", f"onegc/{entry.model}", prompt]
        env = {
            "XDG_CONFIG_HOME": "{home}/.config",
            "XDG_DATA_HOME": "{home}/.local/share",
            "XDG_STATE_HOME": "{home}/.local/state",
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            "OPENCODE_DISABLE_SHARE": "1",
            "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
            "OPENCODE_DISABLE_PROJECT_CONFIG": "1",
            "OPENCODE_DISABLE_CLAUDE_CODE": "1",
            "TERM": "dumb",
        }
        files = {".config/opencode/opencode.json": json.dumps(config, indent=1)}
        return AgentLaunch(name, name, argv, env, "opencode", files, endpoint, None, "/v1")
    raise UnknownAgent(f"unknown cli {entry.cli!r}")


def scripted_file() -> str:
    """The built-in scripted agents' source file (standard library only: runs without our package)."""
    from onegc.harness import scripted

    return scripted.__file__


def resolve_agent(name: str, command: list[str], budget_s: float = 3600.0) -> AgentLaunch:
    if name == "command":
        if not command:
            raise UnknownAgent("--agent command needs the command after `--`")
        return AgentLaunch(name, "command", list(command), stream=None)
    if name.startswith("scripted:"):
        from onegc.harness.scripted import SCRIPTS

        script = name.split(":", 1)[1]
        if script not in SCRIPTS:
            raise UnknownAgent(f"unknown scripted agent {script!r}; known: {', '.join(sorted(SCRIPTS))}")
        source = str(Path(scripted_file()).resolve())  # run as a file: the view holds it, not our checkout
        return AgentLaunch(
            name, f"scripted-{script}", [sys.executable, source, script, *command], view_ro=(source,)
        )
    config = load_config()
    agents = table(config)
    if name not in agents:
        raise UnknownAgent(f"unknown agent {name!r}; known: {', '.join(agents)}, command, scripted:NAME")
    entry = agents[name]
    endpoint = endpoint_for(PROVIDERS[entry.provider], config)
    return build_cli_launch(entry, standard_prompt(budget_s), endpoint, cli_binary(CLIS[entry.cli]))


def with_home(launch: AgentLaunch, home: Path) -> AgentLaunch:
    """The launch with `{home}` in its environment replaced by the run's scratch home."""
    env = {k: v.replace("{home}", str(home)) for k, v in launch.env.items()}
    return dataclasses.replace(launch, env=env)


def write_home_files(launch: AgentLaunch, home: Path) -> None:
    for rel, text in launch.home_files.items():
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def listing(config: dict | None = None) -> list[dict]:
    """The dispatch table as rows (what `agents list` shows)."""
    rows = []
    for e in table(config).values():
        cli, prov = CLIS[e.cli], PROVIDERS[e.provider]
        rows.append(
            {
                "name": e.name,
                "cli": e.cli,
                "package": cli.package,
                "model": e.model,
                "provider": e.provider,
                "endpoint_env": prov.base_url_env,
                "key_env": prov.key_env,
                "stream": cli.stream,
                "description": e.description,
            }
        )
    from onegc.harness.scripted import SCRIPTS

    for s in SCRIPTS:
        rows.append(
            {
                "name": f"scripted:{s}",
                "cli": "scripted",
                "package": None,
                "model": None,
                "provider": None,
                "endpoint_env": None,
                "key_env": None,
                "stream": "claude",
                "description": SCRIPTS[s].__doc__.split("\n")[0],
            }
        )
    rows.append(
        {
            "name": "command",
            "cli": "command",
            "package": None,
            "model": None,
            "provider": None,
            "endpoint_env": None,
            "key_env": None,
            "stream": None,
            "description": "Any command after `--`.",
        }
    )
    return rows
