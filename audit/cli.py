"""The `onegc-audit` command: one module per command, errors as one line, never a traceback."""

import importlib
import os
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from onegc.audit.exitcodes import BAD_INPUT, INTERNAL
from onegc.evidence.errors import OnegcError

# The commands: name -> ("module:attribute", one line of help). An attribute is a command
# function or a typer app of subcommands. A module is imported only when its command runs (or
# its own --help is asked for), so `onegc-audit --help` loads neither duckdb, polars nor torch.
# Adding a command is adding a row.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("cmd_run:run", "Run one agent on one task, monitored, and seal the evidence."),
    "demo": ("cmd_run:demo", "A short monitored run of a scripted agent, then its verdict."),
    "verify": ("cmd_verify:verify", "Judge a run: seal integrity, then Rules 1-9 and the warnings, then the score."),
    "score": ("cmd_score:score", "Score a run's checkpoints with the official evaluator (sealed as a rescore)."),
    "aggregate": ("cmd_aggregate:aggregate", "The leaderboard (Tables 4, 5, 6, 8) from verdict-gated runs."),
    "tasks": ("cmd_tasks:app", "The seven 1GC-7RC tasks: metadata and data preparation."),
    "sql": ("cmd_sql:sql", "Read-only SQL over the union of the evidence of every run under ROOTS."),
    "query": ("cmd_sql:query", "Run a named question kept as a SQL file (`query list` shows them)."),
    "seal": ("cmd_seal:seal_cmd", "Seal a run directory's journals into its evidence database."),
    "import": ("cmd_import:import_cmd", "Import agent transcripts recorded elsewhere as sealed runs."),
    "sweep": ("cmd_sweep:app", "The agents x tasks x repetitions matrix."),
    "agents": ("cmd_agents:app", "The agent dispatch table: CLIs, models, endpoints' environment variables."),
    "review": ("cmd_review:review", "A run's verdict with its evidence, for a human reviewer (Markdown or HTML)."),
    "rules": ("cmd_rules:app", "The rules verdicts are judged by."),
    "keys": ("cmd_keys:app", "The signing key: make one, show its public half."),
    "export": ("cmd_export:export", "Runs as Inspect logs, or one bundle file another machine can verify."),
    "schema": ("cmd_schema:schema", "The JSON Schema of a verdict or of an official result."),
}


def load_command(name: str) -> Any:
    """The click command behind a row of COMMANDS (its module imported now)."""
    target, _ = COMMANDS[name]
    module, attr = target.split(":")
    obj = getattr(importlib.import_module(f"onegc.audit.{module}"), attr)
    holder = typer.Typer(rich_markup_mode="markdown", pretty_exceptions_enable=False, add_completion=False)
    if isinstance(obj, typer.Typer):
        holder.add_typer(obj, name=name)
    else:
        holder.command(name)(obj)
        holder.callback()(lambda: None)  # a group of one, so that the command keeps its name
    return typer.main.get_command(holder).commands[name]


class _Lazy(TyperCommand):
    """A command as the top-level help lists it; the real one is built when it is used."""

    def __init__(self, name: str, short: str) -> None:
        super().__init__(name, help=short, short_help=short)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        return load_command(str(self.name)).make_context(info_name, args, parent=parent, **extra)


class LazyGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return _Lazy(cmd_name, COMMANDS[cmd_name][1]) if cmd_name in COMMANDS else None


app = typer.Typer(
    cls=LazyGroup,
    no_args_is_help=True,
    rich_markup_mode="markdown",  # reflows docstring paragraphs in --help
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Run, watch and judge the 1GC-7RC benchmark: sealed evidence, Rules 1-9, leaderboard."""


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
