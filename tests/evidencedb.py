"""Reading a sealed run's evidence in tests."""

from pathlib import Path

import duckdb


def rows(run_dir: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(run_dir / "evidence.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()
