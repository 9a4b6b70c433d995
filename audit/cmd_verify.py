"""`onegc-audit verify RUN_DIR`: integrity of the seal, then every rule -> the run's verdict."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from onegc.audit import official
from onegc.audit.exitcodes import BY_STATUS
from onegc.evidence.attest import AttestationError, Verifier, load_signer, load_verifier
from onegc.evidence.bundle import is_bundle, opened
from onegc.evidence.integrity import check_verdict_attestations
from onegc.evidence.models import Verdict
from onegc.evidence.seal import sign_verdict
from onegc.rules.engine import judge, load_policy, verdict_json

STYLE = {
    "accepted": "green",
    "no_score": "yellow",
    "disqualified": "red",
    "incomplete": "yellow",
    "tampered": "red",
}
SHOWN_ACTS = 5
OUTCOME_STYLE = {"pass": "green", "fail": "red", "attempt": "red", "not_applicable": "dim"}


def task_direction(task: str) -> str | None:
    """'lower' or 'higher' from the task registry; None when it cannot say (an unknown task, a
    broken registry): the engine then refuses to pick a best score (`incomplete`)."""
    try:
        from onegc.tasks import registry

        direction = registry.get_task(task).direction
    except Exception:  # any failure is "unknown", and unknown fails closed in the engine
        return None
    return direction if direction in ("lower", "higher") else None


def verify(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (e.g. runs/opus47/t2/r4) or a bundle file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Policy file (TOML); default: the strict policy.")
    ] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="Public key (PEM): check the run's signatures before anything else.")
    ] = None,
    attest: Annotated[
        bool, typer.Option("--attest", help="Sign the verdict with the local key (attestations/verdict.*).")
    ] = False,
) -> None:
    """Judge a run: signatures (with --key), seal integrity, then Rules 1-9 and the warnings,
    then the score. Without --key an unsigned run is at best `intact (unsigned)`.

    Exit 0 accepted, 3 no_score, 4 disqualified, 5 incomplete, 6 tampered, 2 bad input.
    Nothing is written into the run directory, unless --attest (a signed verdict statement)."""
    verifier = load_verifier(key) if key is not None else None
    signer = None
    if attest:
        signer = load_signer()
        if signer is None:
            raise AttestationError("--attest needs a signing key", hint="onegc-audit keys init")
    if is_bundle(run_dir):
        if attest:
            raise AttestationError("--attest signs a run folder, not a bundle")
        with opened(run_dir) as (unpacked, _):
            verdict = judge(unpacked, load_policy(policy), direction_for=task_direction, verifier=verifier)
            verdict.data = official.run_data(unpacked)
            signed = _signed_verdicts(unpacked, verdict, verifier)
    else:
        verdict = judge(run_dir, load_policy(policy), direction_for=task_direction, verifier=verifier)
        verdict.data = official.run_data(run_dir)
        signed = _signed_verdicts(run_dir, verdict, verifier)
        if signer is not None:
            sign_verdict(run_dir, verdict, signer)
    if as_json:
        print(verdict_json(verdict))
    else:
        print_verdict(run_dir, verdict)
        for line in signed:
            print(f"  verdict attestation: {line}")
    raise typer.Exit(BY_STATUS[verdict.status])


def _signed_verdicts(run_dir: Path, verdict: Verdict, verifier: Verifier | None) -> list[str]:
    """What the run's signed verdict statements say, once its evidence is known to be signed."""
    if verifier is None or verdict.integrity.signature != "verified":
        return []
    return check_verdict_attestations(run_dir, verdict, verifier)


def print_verdict(run_dir: Path, v: Verdict) -> None:
    console = Console(highlight=False, soft_wrap=True)
    status = f"[{STYLE[v.status]}]{v.status}[/]"
    console.print(f"[bold]{run_dir}[/]: {status}  (policy {v.policy.name})")
    console.print(f"  seal: {v.integrity.label}")
    if v.score:
        console.print(f"  official score {v.score.official} from {v.score.checkpoint}")
    if v.data is not None or v.score:
        synthetic = (v.data or {}).get("kind") == "synthetic"
        console.print(f"  [{'bold yellow' if synthetic else 'dim'}]{official.data_line(v.data)}[/]")
    for reason in v.reasons:
        console.print(f"  {reason}")
    for p in v.integrity.problems:
        console.print(f"  [red]tampered:[/] {p}")
    for r in v.rules:
        tag = (
            ""
            if r.outcome in ("pass", "not_applicable")
            else (" [red](disqualifies)[/]" if r.disqualifies else f" ({r.severity})")
        )
        outcome = f"[{OUTCOME_STYLE[r.outcome]}]{r.outcome:<14}[/]"
        console.print(f"  {r.id:<3} {outcome} {r.title}{tag}")
        for act in r.acts[:SHOWN_ACTS]:  # grouped by act, the decisive one first
            times = f"[bold]{act.count}x[/] " if act.count > 1 else ""
            console.print(f"        {times}{escape(act.output)}")
        if len(r.acts) > SHOWN_ACTS:
            rest = r.acts[SHOWN_ACTS:]
            rows = sum(a.count for a in rest)
            console.print(f"        ... {len(rest)} more acts ({rows} rows; --json lists them)")
