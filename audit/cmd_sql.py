"""`onegc-audit sql` and `onegc-audit query`: read-only SQL over the evidence of many runs."""

import json
import os
import time
from pathlib import Path
from typing import Annotated

import duckdb
import polars as pl
import typer
from rich.console import Console
from rich.table import Table as RichTable

from onegc.audit import index
from onegc.audit.progress import Status, counted, on_terminal
from onegc.evidence.errors import OnegcError
from onegc.evidence.schema import TABLE_BY_NAME
from onegc.rules.engine import view_definitions

QUERY_DIRS = [Path(__file__).parent / "queries"]
USER_QUERY_DIR = Path(os.environ.get("ONEGC_QUERIES", Path.home() / ".config" / "onegc-audit" / "queries"))
FORMATS = ("table", "csv", "json", "parquet")


class QueryError(OnegcError):
    """The SQL was refused or failed."""


def read_only(sql: str) -> None:
    """Exactly one SELECT, as DuckDB's own parser sees it (no EXPLAIN: EXPLAIN ANALYZE runs its
    statement). What a SELECT may touch is bounded by the connection (see `index.connect`)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"SQL does not parse: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise QueryError(f"only SELECT queries are allowed, one at a time (got {len(statements)} statements)")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QueryError(f"only SELECT queries are allowed (got {statements[0].type.name}); evidence is read-only")


def run_sql(sql: str, roots: list[Path], refresh: bool = True, live: bool = False) -> pl.DataFrame:
    """The answer of a SELECT over the indexes of roots (refreshed first; with live, the refresh
    shows its progress on the terminal)."""
    for root in roots:
        if not root.is_dir():
            raise QueryError(f"{root}: no such directory")
    read_only(sql)
    if refresh:
        started = time.monotonic()
        with Status(live) as status:
            for root in roots:
                index.refresh(root, lambda done, total, r=root: status.show(
                    counted(done, total, f"indexing new runs of {r}:", started)))
    con = index.connect(roots, locked=True)
    try:
        rel = con.sql(sql)
        if rel is None:
            return pl.DataFrame()
        return pl.DataFrame(rel.fetchall(), schema=rel.columns, orient="row", infer_schema_length=None)
    except duckdb.Error as exc:
        raise QueryError(str(exc).splitlines()[0]) from None
    finally:
        con.close()


def _as_text(df: pl.DataFrame) -> pl.DataFrame:
    """Lists and structs as JSON text, for the formats that hold only flat values (CSV, the table)."""
    nested = [c for c, t in df.schema.items() if t.is_nested() or t == pl.Object]
    return df.with_columns(
        pl.Series(c, [None if v is None else json.dumps(v, default=str) for v in df[c].to_list()], pl.String)
        for c in nested
    )


def format_for(fmt: str | None, out: Path | None) -> str:
    """The --format asked for, else the one --out's suffix names (x.parquet, x.csv, x.json), else a table."""
    if fmt is None:
        fmt = out.suffix.lstrip(".").lower() if out is not None and out.suffix.lower() in (".csv", ".json",
                                                                                          ".parquet") else "table"
    if fmt not in FORMATS:
        raise QueryError(f"--format must be one of {', '.join(FORMATS)}")
    return fmt


def emit(df: pl.DataFrame, fmt: str | None, out: Path | None) -> None:
    """Every column in every format: native lists and structs in Parquet and JSON, JSON text in CSV."""
    fmt = format_for(fmt, out)
    if fmt == "parquet":
        if out is None:
            raise QueryError("--format parquet needs --out FILE")
        df.write_parquet(out)
    elif fmt in ("csv", "json"):
        text = _as_text(df).write_csv() if fmt == "csv" else df.write_json()
        if out:
            out.write_text(text)
        else:
            print(text, end="" if text.endswith("\n") else "\n")
    else:
        table = RichTable(*df.columns, show_lines=False)
        for row in _as_text(df).iter_rows():
            table.add_row(*("" if v is None else str(v)[:200] for v in row))
        if out:
            with open(out, "w") as fh:
                Console(file=fh, width=200).print(table)
        else:
            Console().print(table)
        Console(stderr=True).print(f"{df.height} rows", style="dim")


def print_schema(roots: list[Path]) -> None:
    """Every view of the index with its columns, documented where they are declared (the evidence
    schema, the index's own tables, rules/views.sql); no runs dir needed."""
    docs = {t.name: t.description for t in TABLE_BY_NAME.values()} | index.INDEX_TABLES
    docs |= {name: comment.removeprefix(f"{name}: ") for name, (comment, _) in view_definitions().items()}
    docs["runs"] = index.INDEX_TABLES["runs"]
    con = index.connect(roots, locked=True)
    try:
        for (name,) in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall():
            spec = TABLE_BY_NAME.get(name)
            print(f"{name}: {docs.get(name, '')}".rstrip())
            cols = index.COLUMN_DOCS | ({c.name: c.description for c in spec.columns} if spec else {})
            for col, typ in con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position", [name]).fetchall():
                print(f"  {col} {typ}  {cols.get(col, '')}".rstrip())
    finally:
        con.close()


def sql(
    query: Annotated[str | None, typer.Argument(help="A SELECT over the evidence views.")] = None,
    roots: Annotated[list[Path] | None, typer.Argument(help="Runs directories.")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="table, csv, json or parquet (default: --out's suffix, else table).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the answer to a file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    schema: Annotated[bool, typer.Option("--schema", help="List the views and their columns.")] = False,
) -> None:
    """Read-only SQL over the union of the evidence of every run under ROOTS."""
    fmt = "json" if as_json else fmt
    if schema:
        print_schema(roots or [])
        return
    if not query or not roots:
        raise QueryError("usage: onegc-audit sql QUERY RUNS_DIR [RUNS_DIR...]")
    emit(run_sql(query, roots, live=on_terminal(fmt == "json")), fmt, out)


def named_queries() -> dict[str, Path]:
    found = {}
    for d in [*QUERY_DIRS, USER_QUERY_DIR]:
        if d.is_dir():
            found.update({p.stem: p for p in sorted(d.glob("*.sql"))})
    return found


def _header(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("-- "):
            return line[3:].strip()
    return ""


def query(
    name: Annotated[str, typer.Argument(help="A named query, or `list`.")],
    roots: Annotated[list[Path] | None, typer.Argument(help="Runs directories.")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="table, csv, json or parquet (default: --out's suffix, else table).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the answer to a file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Run a named question kept as a SQL file (`query list` shows them; add your own in
    $ONEGC_QUERIES or ~/.config/onegc-audit/queries)."""
    queries = named_queries()
    if name == "list" and as_json:
        print(json.dumps([{"name": q, "title": _header(p), "file": str(p)} for q, p in queries.items()], indent=1))
        return
    fmt = "json" if as_json else fmt
    if name == "list":
        for qname, path in queries.items():
            print(f"{qname:28s} {_header(path)}")
        return
    if name not in queries:
        raise QueryError(f"unknown query {name!r}; see `onegc-audit query list`")
    if not roots:
        raise QueryError(f"usage: onegc-audit query {name} RUNS_DIR [RUNS_DIR...]")
    emit(run_sql(queries[name].read_text(), roots, live=on_terminal(fmt == "json")), fmt, out)
