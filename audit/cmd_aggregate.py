"""`onegc-audit aggregate`: the leaderboard (paper Tables 4, 5, 6, 8) from sealed runs or a
per-run results table; only runs whose verdict allows it enter a mean, a best or Agg."""

from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from onegc.audit import aggregate as agg
from onegc.evidence.attest import load_verifier
from onegc.evidence.errors import OnegcError


def aggregate(
    runs: Annotated[Path | None, typer.Argument(help="Root of the run directories (e.g. runs/).")] = None,
    results: Annotated[
        Path | None, typer.Option(help="Per-run results (CSV or Parquet), instead of or with RUNS.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, csv, json or latex.")] = "md",
    plot: Annotated[Path | None, typer.Option(help="Draw Figure 3 (scripts vs Agg) to this file.")] = None,
    thin: Annotated[int, typer.Option(help="Cells with fewer scored runs are marked thin.")] = agg.THIN_BELOW,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write here, not stdout.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The leaderboard as JSON (same as --format json).")] = False,
    key: Annotated[Path | None, typer.Option("--key", help="Public key (PEM): admit only runs whose "
                                             "signatures verify; the others are listed apart as tampered.")] = None,
) -> None:
    """Leaderboard over every agent x task found: mean ± std, success n/N, Agg, best run,
    scripts launched, budget used; disqualified/incomplete/tampered runs listed apart."""
    fmt = "json" if as_json else fmt
    if fmt not in ("md", "csv", "json", "latex"):
        raise typer.BadParameter(f"--format must be md, csv, json or latex, not {fmt!r}")
    if runs is None and results is None:
        raise typer.BadParameter("give a runs directory, --results FILE, or both")
    if key is not None and results is not None:
        raise OnegcError("--key checks the signatures of run folders; a --results table carries none")
    if plot is not None:
        agg.pyplot()  # a missing [plot] extra is said before anything is computed or written
    frames = []
    if runs is not None:
        frames.append(agg.collect_runs(runs, load_verifier(key) if key is not None else None))
    if results is not None:
        frames.append(agg.load_results(results))
    df = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    if df.height == 0:
        raise OnegcError("no runs found")
    boards = agg.leaderboards(df, agg.task_metas(), thin_below=thin)
    text = agg.render(boards, fmt)
    if output:
        output.write_text(text)
    else:
        print(text, end="")
    if plot is not None:
        agg.plot(boards[0], plot)  # real data first: a figure holds one kind of data
