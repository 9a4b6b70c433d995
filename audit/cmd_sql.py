"""`onegc-audit sql` and `onegc-audit query`: read-only SQL over the evidence of many runs."""

import os
from pathlib import Path
from typing import Annotated

import duckdb
import polars as pl
import typer
from rich.console import Console
from rich.table import Table as RichTable

from onegc.audit import index
from onegc.evidence.errors import OnegcError
from onegc.evidence.schema import TABLE_BY_NAME

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


def run_sql(sql: str, roots: list[Path], refresh: bool = True):
    for root in roots:
        if not root.is_dir():
            raise QueryError(f"{root}: no such directory")
    read_only(sql)
    if refresh:
        for root in roots:
            index.refresh(root)
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


def emit(df, fmt: str, out: Path | None) -> None:
    if fmt not in FORMATS:
        raise QueryError(f"--format must be one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if out is None:
            raise QueryError("--format parquet needs --out FILE")
        df.write_parquet(out)
    elif fmt in ("csv", "json"):
        text = df.write_csv() if fmt == "csv" else df.write_json()
        if out:
            out.write_text(text)
        else:
            print(text, end="" if text.endswith("\n") else "\n")
    else:
        table = RichTable(*df.columns, show_lines=False)
        for row in df.iter_rows():
            table.add_row(*("" if v is None else str(v)[:200] for v in row))
        Console().print(table)
        Console(stderr=True).print(f"{df.height} rows", style="dim")


def sql(
    query: Annotated[str | None, typer.Argument(help="A SELECT over the evidence views.")] = None,
    roots: Annotated[list[Path] | None, typer.Argument(help="Runs directories.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or parquet.")] = "table",
    out: Annotated[Path | None, typer.Option(help="Write the answer to a file.")] = None,
    schema: Annotated[bool, typer.Option("--schema", help="List the views and their columns.")] = False,
) -> None:
    """Read-only SQL over the union of the evidence of every run under ROOTS."""
    if schema:
        con = index.connect(roots or [], locked=True)
        for (name,) in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall():
            spec = TABLE_BY_NAME.get(name)
            print(f"{name}: {spec.description if spec else ''}")
            docs = {c.name: c.description for c in spec.columns} if spec else {}
            for col, typ in con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position", [name]).fetchall():
                print(f"  {col} {typ}  {docs.get(col, '')}".rstrip())
        return
    if not query or not roots:
        raise QueryError("usage: onegc-audit sql QUERY RUNS_DIR [RUNS_DIR...]")
    emit(run_sql(query, roots), fmt, out)


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
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or parquet.")] = "table",
    out: Annotated[Path | None, typer.Option(help="Write the answer to a file.")] = None,
) -> None:
    """Run a named question kept as a SQL file (`query list` shows them; add your own in
    $ONEGC_QUERIES or ~/.config/onegc-audit/queries)."""
    queries = named_queries()
    if name == "list":
        for qname, path in queries.items():
            print(f"{qname:28s} {_header(path)}")
        return
    if name not in queries:
        raise QueryError(f"unknown query {name!r}; see `onegc-audit query list`")
    if not roots:
        raise QueryError(f"usage: onegc-audit query {name} RUNS_DIR [RUNS_DIR...]")
    emit(run_sql(queries[name].read_text(), roots), fmt, out)
