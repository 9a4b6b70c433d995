"""Monitored runs of an AgentLaunch with its stream parsed before the seal."""

from pathlib import Path

from onegc.harness.agents import PROXY_PORT, AgentLaunch, resolve_agent, with_home, write_home_files
from onegc.harness.monitor import run_monitored
from onegc.harness.proxy import Route, attach_proxy
from onegc.harness.spec import RunSpec, create_run_dir
from onegc.harness.streams.record import stream_step

WORKSPACE = {
    "prepare.py": "STRICT = True\n",
    "train.py": "print('training step 1')\nprint('val_score 0.5')\n",
    "program.md": "# Task\nImprove train.py.\n",
}


def run_launch(
    runs_dir: Path,
    launch: AgentLaunch,
    *,
    budget_s: float = 30,
    grace_s: float = 1,
    label: str = "agent",
    route: Route | None = None,
) -> Path:
    """Run `launch` as the agent of a small t0 workspace, its stream parsed before the seal,
    behind the allow-listing proxy when a route is given; returns the sealed run dir."""
    run_dir = create_run_dir(runs_dir, label, "t0", 1)
    for name, text in WORKSPACE.items():
        (run_dir / "workspace" / name).write_text(text)
    home = run_dir / "scratch" / "home"
    launch = with_home(launch, home)
    write_home_files(launch, home)
    codex_home = home / launch.codex_home if launch.codex_home else None
    spec = RunSpec(
        run_dir,
        launch.argv,
        label,
        "t0",
        1,
        budget_s=budget_s,
        grace_s=grace_s,
        locked=["prepare.py"],
        env=launch.env,
        before_seal=[stream_step(launch.stream or "claude", codex_home)],
        view_ro=list(launch.view_ro),
    )
    if route is not None:
        attach_proxy(spec, route, PROXY_PORT)
    run_monitored(spec)
    return run_dir


def run_scripted(runs_dir: Path, name: str, **kw) -> Path:
    return run_launch(runs_dir, resolve_agent(f"scripted:{name}", []), **kw)
