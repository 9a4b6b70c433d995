"""The `onegc-audit` command: one module per command, errors as one line, never a traceback."""

import os
import sys

import typer

from onegc.audit import (
    cmd_agents,
    cmd_aggregate,
    cmd_import,
    cmd_review,
    cmd_rules,
    cmd_run,
    cmd_score,
    cmd_seal,
    cmd_sql,
    cmd_sweep,
    cmd_tasks,
    cmd_verify,
)
from onegc.audit.exitcodes import BAD_INPUT, INTERNAL

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",  # reflows docstring paragraphs in --help
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Run, watch and judge the 1GC-7RC benchmark: sealed evidence, Rules 1-9, leaderboard.",
)
app.command()(cmd_run.run)
app.command()(cmd_run.demo)
app.command()(cmd_verify.verify)
app.command()(cmd_score.score)
app.command()(cmd_aggregate.aggregate)
app.add_typer(cmd_tasks.app, name="tasks")
app.command()(cmd_sql.sql)
app.command()(cmd_sql.query)
app.command("seal")(cmd_seal.seal_cmd)
app.command("import")(cmd_import.import_cmd)
app.add_typer(cmd_sweep.app, name="sweep")
app.add_typer(cmd_agents.app, name="agents")
app.command()(cmd_review.review)
app.add_typer(cmd_rules.app, name="rules")


def _user_errors() -> tuple[type[Exception], ...]:
    from onegc.audit.importer import ImportSourceError
    from onegc.evidence.integrity import BadRunDir
    from onegc.evidence.seal import SealError
    from onegc.harness.agents import UnknownAgent
    from onegc.harness.monitor import HarnessError
    from onegc.rules.engine import RuleError

    return (
        BadRunDir,
        SealError,
        UnknownAgent,
        HarnessError,
        ImportSourceError,
        RuleError,
        FileNotFoundError,
        NotADirectoryError,
        PermissionError,
        ValueError,
    )


def main() -> None:
    try:
        code = app(standalone_mode=False)  # click returns an Exit's code in this mode
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("onegc-audit: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # the boundary: one line for people, the traceback on request
        if os.environ.get("ONEGC_DEBUG"):
            raise
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(BAD_INPUT)
        known = isinstance(exc, _user_errors())
        print(
            f"onegc-audit: error: {exc}" if known else f"onegc-audit: internal error: {exc!r}",
            file=sys.stderr,
        )
        sys.exit(BAD_INPUT if known else INTERNAL)
