"""The agent dispatch table: how `--agent NAME` becomes a command line and environment.

Adding an agent is adding an entry. `command` runs whatever follows `--`;
`scripted:NAME` runs one of the built-in scripted agents (harness/scripted.py).
"""

import sys
from dataclasses import dataclass, field


class UnknownAgent(ValueError):
    """No agent of that name in the dispatch table."""


@dataclass(frozen=True)
class AgentLaunch:
    name: str
    label: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def resolve_agent(name: str, command: list[str]) -> AgentLaunch:
    if name == "command":
        if not command:
            raise UnknownAgent("--agent command needs the command after `--`")
        return AgentLaunch(name, "command", list(command))
    if name.startswith("scripted:"):
        from onegc.harness.scripted import SCRIPTS

        script = name.split(":", 1)[1]
        if script not in SCRIPTS:
            raise UnknownAgent(f"unknown scripted agent {script!r}; known: {', '.join(sorted(SCRIPTS))}")
        return AgentLaunch(
            name, f"scripted-{script}", [sys.executable, "-m", "onegc.harness.scripted", script, *command]
        )
    raise UnknownAgent(f"unknown agent {name!r}; known: command, scripted:NAME")
