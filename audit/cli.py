import typer
from onegc.audit import cmd_tasks

app = typer.Typer(no_args_is_help=True)
app.add_typer(cmd_tasks.app, name="tasks")


def main() -> None:
    app()
