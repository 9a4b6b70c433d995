"""`onegc-audit rules list` and `rules explain ID`: the rules as a reviewer reads them."""

import json
import re
import textwrap
from typing import Annotated

import typer

from onegc.evidence.errors import OnegcError
from onegc.evidence.schema import TABLE_BY_NAME
from onegc.rules.engine import load_policy, load_rules

app = typer.Typer(no_args_is_help=True, help="The rules verdicts are judged by.")

# Tables a check may read besides the spine's (added by the stream parser and by scoring).
EXTRA_TABLES = {
    "scores": "Official scoring of each checkpoint by the original evaluator (added by scoring).",
    "messages": "What the agent said, parsed from its stream (added by the stream parser).",
    "run": "One row: the run's identity, budget, deadline and end.",
    "workspace_scripts": "Top-level workspace scripts, read at verify time and accepted only when their "
    "sha256 matches the sealed after-snapshot.",
    "checkpoint_scan": "Checkpoints under checkpoints/, scanned at verify time, matched to the sealed "
    "after-snapshot by sha256.",
}


# The engine's views (rules/views.sql) and the tables they read.
VIEWS = {"started": "execs", "run_meta": "run", "run_file_events": "file_events"}


def _rule(rule_id: str):
    for r in load_rules():
        if r.id.lower() == rule_id.lower():
            return r
    raise OnegcError(f"no rule {rule_id!r}; see `onegc-audit rules list`")


def _tables_read(sql: str) -> list[str]:
    names = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)", sql))
    names |= set(re.findall(r",\s*([a-z_]+)\s+[a-z]\b", sql))
    names |= {VIEWS[n] for n in names if n in VIEWS}
    known = set(TABLE_BY_NAME) | set(EXTRA_TABLES)
    return sorted(n for n in names if n in known)


@app.command("list")
def list_rules(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One line per rule: id, severity, title."""
    rules = load_rules()
    if as_json:
        rows = [{"id": r.id, "severity": r.severity, "title": r.title, "file": r.file} for r in rules]
        print(json.dumps(rows, indent=2))
        return
    for r in rules:
        print(f"{r.id:<3} {r.severity:<10} {r.title}")


@app.command("explain")
def explain(
    rule_id: Annotated[str, typer.Argument(help="Rule id, e.g. R4.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The paper's words, what evidence decides the rule, the checks themselves."""
    r = _rule(rule_id)
    strict = load_policy()
    tables = sorted({t for c in r.checks for t in _tables_read(c.sql)})
    if as_json:
        print(
            json.dumps(
                {
                    "id": r.id,
                    "title": r.title,
                    "paper": r.paper,
                    "what_and_why": r.desc,
                    "severity": r.severity,
                    "evidence": {t: _describe(t) for t in tables},
                    "exceptions": r.exceptions,
                    "params": r.params,
                    "applies": r.applies,
                    "checks": [
                        {
                            "kind": c.kind,
                            "name": c.name,
                            "needs": c.needs,
                            "unless": c.unless,
                            "sql": c.sql.strip(),
                        }
                        for c in r.checks
                    ],
                    "file": r.file,
                },
                indent=2,
            )
        )
        return
    wrap = textwrap.TextWrapper(width=92, initial_indent="  ", subsequent_indent="  ")
    lines = [
        f"{r.id}  {r.title}   (rules/checks/{r.file})",
        "",
        "The paper says",
        wrap.fill(r.paper),
        "",
        "What is checked, and why",
        wrap.fill(r.desc),
        "",
        "What it means for the verdict",
    ]
    if r.severity == "disqualify":
        attempts = "also disqualifies" if r.id in strict.attempt_disqualifies(None) else "is reported only"
        lines.append(
            wrap.fill(
                f"fail -> the run is disqualified. An attempt (the act was tried and blocked) "
                f"{attempts} under the default strict policy; a policy file can change that."
            )
        )
    elif r.severity == "no_score":
        lines.append(wrap.fill("fail -> the run gets no score (no_score); it is not disqualified."))
    else:
        lines.append(wrap.fill("A warning: reported with its rows, never changes the verdict."))
    lines += ["", "Evidence that decides it"]
    for t in tables:
        lines.append(wrap.fill(f"{t}: {_describe(t)}"))
    if r.exceptions:
        lines += ["", "Exception hooks (SQL conditions on a cited row; empty by default, set in a policy)"]
        lines += [f"  {k} = {v}" for k, v in r.exceptions.items()]
    if r.params:
        lines += ["", "Parameters (a policy may change them)"] + [f"  {k} = {v}" for k, v in r.params.items()]
    for i, c in enumerate(r.checks, 1):
        cond = (f" (only when the evidence has {', '.join(c.needs)})" if c.needs else "") + (
            f" (only when the evidence has no {', '.join(c.unless)})" if c.unless else ""
        )
        outcome = "fail" if c.kind == "violation" else "attempt"
        lines += ["", f"Check {i}: {c.name} -> {outcome}{cond}", "  " + c.sql.strip().replace("\n", "\n  ")]
    print("\n".join(lines))


def _describe(table: str) -> str:
    return TABLE_BY_NAME[table].description if table in TABLE_BY_NAME else EXTRA_TABLES[table]
