"""`onegc-audit agents list`: the dispatch table (presets, the user's config, scripted)."""

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from onegc.harness import agents

app = typer.Typer(help="The agent dispatch table: CLIs, models, endpoints' environment variables.")


@app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array on stdout.")] = False,
) -> None:
    """List every agent --agent accepts: the paper's seven, the config file's, scripted:NAME, command."""
    rows = agents.listing()
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    out = Table("agent", "cli", "model", "provider", "endpoint / key from", "description", box=None)
    for r in rows:
        env = f"{r['endpoint_env']} / {r['key_env']}" if r["key_env"] else ""
        out.add_row(r["name"], r["cli"], r["model"] or "", r["provider"] or "", env, r["description"])
    Console(width=160).print(out)
    typer.echo(
        f"config file: {agents.config_path()} ({'present' if agents.config_path().exists() else 'absent'})"
    )
