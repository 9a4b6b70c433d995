"""`onegc-audit run` and `onegc-audit demo`: one monitored agent run, sealed."""

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from onegc.audit import official
from onegc.audit.cmd_verify import print_verdict, task_direction
from onegc.audit.exitcodes import BY_STATUS
from onegc.audit.progress import RunWatcher, Status, on_terminal
from onegc.evidence.attest import init_keys, key_dir, load_signer
from onegc.evidence.errors import OnegcError
from onegc.evidence.layout import RunLayout
from onegc.evidence.seal import latest_result
from onegc.harness.agents import PROXY_PORT, resolve_agent, with_home, write_home_files
from onegc.harness.monitor import run_monitored
from onegc.harness.proxy import Route, attach_proxy
from onegc.harness.scoring import scoring_step
from onegc.harness.spec import RunSpec, create_run_dir, run_dir_for
from onegc.harness.streams.record import stream_step
from onegc.rules.engine import judge
from onegc.tasks import registry

DEFAULT_DATA_DIR = Path(os.environ.get("ONEGC_DATA_DIR", Path.home() / ".cache" / "onegc-audit" / "data"))


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--env takes KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def monitored_run(
    *,
    task_id: str,
    agent: str,
    command: list[str],
    label: str | None,
    rep: int,
    runs_dir: Path,
    budget_s: float | None,
    grace_s: float,
    data_dir: Path,
    synthetic: bool | None,
    env: dict[str, str],
    score: bool = True,
    live: bool = False,
) -> Path:
    """Prepare the task, run the agent under the sensors, score it officially (before the
    seal, so the scores are sealed evidence), seal; returns the run directory. With live, a
    status line follows the run on the terminal."""
    task = registry.get_task(task_id)
    budget = budget_s if budget_s is not None else task.budget_s
    if budget <= 0 or grace_s < 0:
        raise OnegcError(f"the budget must be > 0 and the grace >= 0 seconds, not {budget} and {grace_s}")
    launch = resolve_agent(agent, command, budget)
    run_dir_for(runs_dir, label or launch.label, task.id, rep)  # every argument checked before preparing
    prepared = registry.prepare_data(task.id, data_dir / task.id, synthetic)
    context = official.data_context(prepared)
    run_dir = create_run_dir(runs_dir, label or launch.label, task.id, rep)
    layout = RunLayout(run_dir)
    registry.populate_workspace(task, layout.workspace, prepared)
    home = layout.home
    launch = with_home(launch, home)
    write_home_files(launch, home)
    steps = []
    if launch.stream:
        codex_home = home / launch.codex_home if launch.codex_home else None
        steps.append(stream_step(launch.stream, codex_home))
    spec = RunSpec(
        run_dir=run_dir,
        argv=launch.argv,
        label=label or launch.label,
        task=task.id,
        rep=rep,
        budget_s=budget,
        grace_s=grace_s,
        locked=list(task.locked),
        originals=task.dir,
        heldout=prepared.heldout_dir,
        env={**launch.env, **env},
        before_seal=steps,
        data={"version": prepared.version, "data_dir": str(prepared.data_dir), "files": context["files"]},
        view_ro=list(launch.view_ro),
    )
    if launch.endpoint is not None:
        route = Route(launch.endpoint.upstream, launch.endpoint.headers, launch.proxy_prefix)
        attach_proxy(spec, route, PROXY_PORT)
    if score:
        policy = official.task_policy(task, context)
        evaluator = official.task_evaluator(task.id, prepared.data_dir, pinned=context["files"])
        spec.before_seal.append(scoring_step(evaluator, policy))
    with Status(live, follow=RunWatcher(run_dir, budget, launch.stream).line):
        run_monitored(spec)
    return run_dir


def score_line(result: dict | None) -> str:
    """What the official scoring found, and on what data (a second line)."""
    if result is None:
        return "official score: none (the run was not scored)"
    data = "\n" + official.data_line(result.get("data") or official.data_label(result.get("context") or {}))
    if result.get("outcome") != "scored":
        return f"official score: no_score ({result.get('no_score_reason')}){data}"
    gap = result.get("gap")
    gap_s = "" if gap is None else f", self-reported gap {gap:+.4f}"
    imp = result.get("improvement")
    imp_s = "" if imp is None else f", {imp:+.1%} vs baseline {result.get('baseline')}"
    synthetic = (result.get("data") or {}).get("kind") == "synthetic"
    return (
        f"official score{' on SYNTHETIC data' if synthetic else ''}: {result['metric']} = {result['value']:.6g} "
        f"({result['checkpoint']}{imp_s}{gap_s}){data}"
    )


def _report(run_dir: Path, as_json: bool, leaderboard: bool = False) -> None:
    """What the run came to: the verdict (seal, Rules 1-9, score) and the official result."""
    verdict = judge(run_dir, direction_for=task_direction)
    verdict.data = official.run_data(run_dir)
    _, result = latest_result(run_dir)
    if as_json:
        print(json.dumps({"run_dir": str(run_dir.resolve()), "data": verdict.data,
                          "verdict": verdict.model_dump(mode="json"), "result": result}, indent=2, default=str))
    else:
        print_verdict(run_dir, verdict)
        Console().print(score_line(result), highlight=False)
        if leaderboard:
            from onegc.audit import aggregate as agg

            (board,) = agg.leaderboards(agg.collect_runs_at([run_dir]), agg.task_metas())
            print()
            print(agg.render_md(board).split("### Table 6")[0].rstrip())
        print(f"\nthe run is in {run_dir.resolve()}")
    raise typer.Exit(BY_STATUS[verdict.status])


def run(
    task: Annotated[str, typer.Option(help="Task id, t1 ... t7.")],
    agent: Annotated[str, typer.Option(help="Agent from the dispatch table (`agents list`).")],
    command: Annotated[list[str] | None, typer.Argument(help="With --agent command: what to run.")] = None,
    label: Annotated[
        str | None, typer.Option(help="Agent label in the run path (default: the agent's).")
    ] = None,
    rep: Annotated[int, typer.Option(help="Repetition number (the rN of the run path).")] = 1,
    runs_dir: Annotated[Path, typer.Option(help="Root of the run directories.")] = Path("runs"),
    budget_s: Annotated[float | None, typer.Option(help="Override the task's budget (seconds).")] = None,
    grace_s: Annotated[float, typer.Option(help="Grace between SIGTERM and SIGKILL.")] = 30.0,
    data_dir: Annotated[Path, typer.Option(help="Where task data is prepared.")] = DEFAULT_DATA_DIR,
    synthetic: Annotated[
        bool | None, typer.Option("--synthetic/--real", help="Data (default: real when at hand).")
    ] = None,
    env: Annotated[list[str] | None, typer.Option(help="KEY=VALUE for the agent's environment.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable result.")] = False,
) -> None:
    """Run an agent on a task under the sensors and seal the evidence in RUNS_DIR/LABEL/TASK/rREP."""
    run_dir = monitored_run(
        task_id=task,
        agent=agent,
        command=command or [],
        label=label,
        rep=rep,
        runs_dir=runs_dir,
        budget_s=budget_s,
        grace_s=grace_s,
        data_dir=data_dir,
        synthetic=synthetic,
        env=_parse_env(env or []),
        live=on_terminal(as_json),
    )
    _report(run_dir, as_json)


def demo(
    runs_dir: Annotated[Path, typer.Option(help="Root of the run directories.")] = Path("runs"),
    data_dir: Annotated[Path, typer.Option(help="Where task data is prepared.")] = DEFAULT_DATA_DIR,
    synthetic: Annotated[
        bool | None, typer.Option("--synthetic/--real", help="Data (default: real when at hand).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable result.")] = False,
) -> None:
    """The whole product in one command, offline: a scripted agent trains the T6 baseline
    under the sensors, the evidence is sealed and verified."""
    if load_signer() is None:  # the demo shows a signed run: make this machine's key once
        public = init_keys(key_dir())
        Console(stderr=True).print(f"made a signing key; share {public} with whoever verifies", highlight=False)
    rep = 1
    while (runs_dir / "scripted-baseline" / "t6" / f"r{rep}").exists():
        rep += 1
    run_dir = monitored_run(
        task_id="t6",
        agent="scripted:baseline",
        command=[],
        label=None,
        rep=rep,
        runs_dir=runs_dir,
        budget_s=None,
        grace_s=30.0,
        data_dir=data_dir,
        synthetic=synthetic,
        env={"ONEGC_TIME_BUDGET_S": "60"},
        live=on_terminal(as_json),
    )
    _report(run_dir, as_json, leaderboard=True)
