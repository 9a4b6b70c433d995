"""The `onegc-audit` command: one module per command, errors as one line, never a traceback."""

import os
import sys

import typer

from onegc.audit import (
    cmd_agents,
    cmd_aggregate,
    cmd_export,
    cmd_import,
    cmd_keys,
    cmd_review,
    cmd_rules,
    cmd_run,
    cmd_schema,
    cmd_score,
    cmd_seal,
    cmd_sql,
    cmd_sweep,
    cmd_tasks,
    cmd_verify,
)
from onegc.audit.exitcodes import BAD_INPUT, INTERNAL
from onegc.evidence.errors import OnegcError

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
app.add_typer(cmd_keys.app, name="keys")
app.command()(cmd_export.export)
app.command()(cmd_schema.schema)


def _say(message: str, hint: str | None = None) -> None:
    print(f"onegc-audit: {message}" + (f" (hint: {hint})" if hint else ""), file=sys.stderr)


def main() -> None:
    """The one error boundary: a user's mistake is one line and exit 2, a bug is exit 1."""
    try:
        code = app(standalone_mode=False)  # returns an Exit's code in this mode
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _say("interrupted")
        sys.exit(130)
    except OnegcError as exc:
        if os.environ.get("ONEGC_DEBUG"):
            raise
        _say(f"error: {_one_line(str(exc))}", exc.hint)
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage: unknown command, missing argument, bad value
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(0)
        _say(f"usage error: {_one_line(exc.format_message())}", "onegc-audit COMMAND --help")
        sys.exit(BAD_INPUT)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        if os.environ.get("ONEGC_DEBUG"):
            raise
        _say(f"error: {_one_line(f'{exc.strerror}: {exc.filename}' if exc.filename else str(exc))}")
        sys.exit(BAD_INPUT)
    except Exception as exc:  # a bug: one line for people, the traceback on request
        if os.environ.get("ONEGC_DEBUG"):
            raise
        _say(f"internal error: {_one_line(repr(exc))}", "rerun with ONEGC_DEBUG=1 for the traceback, and report it")
        sys.exit(INTERNAL)


def _one_line(text: str) -> str:
    return " ".join(text.split())
