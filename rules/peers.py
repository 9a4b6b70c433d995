"""Other runs' work, for noticing identical work (W5): the checkpoints and top-level scripts
each sibling run under the same runs root left, by hash. Read from their sealed evidence
(read-only); files identical to something in that run's workspace before the agent started
(the task as given: train.py, prepare.py) are not the run's work and are left out."""

from pathlib import Path

import duckdb

from onegc.evidence.layout import DB_NAME, MANIFEST_NAME

PRODUCED = """
SELECT a.path, a.sha256 FROM snapshots a
WHERE a.phase = 'after' AND a.scope = 'workspace' AND a.kind = 'file' AND a.sha256 IS NOT NULL
  AND (starts_with(a.path, 'checkpoints/') OR regexp_matches(a.path, '^[^/]+\\.py$'))
  AND NOT EXISTS (SELECT 1 FROM snapshots b WHERE b.phase = 'before' AND b.scope = 'workspace'
                  AND b.sha256 = a.sha256)
"""


def sibling_runs(run_dir: Path) -> list[Path]:
    """Sealed runs laid out like this one (RUNS/LABEL/TASK/rN) under the same RUNS, itself excluded."""
    run_dir = run_dir.resolve()
    root = run_dir.parents[2] if len(run_dir.parents) > 2 else None
    if root is None or root == Path(root.anchor) or not run_dir.name.startswith("r"):
        return []  # a bundle unpacked in a temporary folder has no siblings (and / is no runs root)
    found: list[Path] = []
    try:
        for p in root.glob(f"*/*/r*/{MANIFEST_NAME}"):
            if p.parent != run_dir:
                found.append(p.parent)
    except OSError:  # a folder vanished or is unreadable while walking: compare with what was found
        pass
    return sorted(found)


def peer_artifacts(con: duckdb.DuckDBPyConnection, run_dir: Path) -> None:
    """TEMP TABLE peer_artifacts(run_dir, path, sha256) of the sibling runs' work."""
    con.execute("CREATE TEMP TABLE peer_artifacts (run_dir VARCHAR, path VARCHAR, sha256 VARCHAR)")
    for peer in sibling_runs(run_dir):
        try:
            other = duckdb.connect(str(peer / DB_NAME), read_only=True)
        except duckdb.Error:
            continue  # not readable evidence: nothing to compare with
        try:
            rows = other.execute(PRODUCED).fetchall()
        except duckdb.Error:
            rows = []
        finally:
            other.close()
        if rows:
            con.executemany("INSERT INTO peer_artifacts VALUES (?, ?, ?)", [[str(peer), p, h] for p, h in rows])
