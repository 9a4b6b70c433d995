"""The consolidated query index: every sealed run's evidence as Parquet under RUNS/.index.

Querying must not open thousands of DuckDB files on every call, so a refresh exports the
runs that are new (or whose seal changed) as one Parquet segment per table, and a
catalog says which segment holds each run's current rows. Every row carries the run's
agent label, task and rep. Sealed evidence is only ever opened read-only.
"""

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from onegc.audit import official
from onegc.audit.cmd_verify import task_direction
from onegc.evidence.models import Verdict
from onegc.evidence.schema import TABLES
from onegc.evidence.seal import DB_NAME, MANIFEST_NAME, RESCORE_DIR, RUN_COLUMNS
from onegc.rules import overrefusal
from onegc.rules.engine import (
    MAX_CITED,
    SHARED_VIEWS,
    act_key,
    judge,
    open_evidence,
    rules_digest,
    shared_view_columns,
)

INDEX_DIR = ".index"
INDEX_FORMAT = "3"  # messages gained overrefusal: a new format exports every run again
IDENTITY = "('run_key', 'agent', 'task', 'rep', 'run_dir', 'segment')"  # added to every row


@dataclass
class RefreshStats:
    runs_seen: int = 0
    runs_added: int = 0
    skipped: list[str] | None = None


def find_runs(root: Path) -> list[Path]:
    """Sealed run directories below root (or root itself)."""
    if (root / MANIFEST_NAME).exists():
        return [root]
    return sorted(
        p.parent for p in root.glob(f"**/{MANIFEST_NAME}")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)  # .attic, .index
    )


def _digest(run_dir: Path) -> str | None:
    """What the run's indexed rows depend on: its seal, its sealed rescores, and the rule set
    (a new rule or policy changes the verdict views)."""
    try:
        parts = [json.loads((run_dir / MANIFEST_NAME).read_text())["digest"]]
        for addendum in sorted(run_dir.glob(f"{RESCORE_DIR}/*/{MANIFEST_NAME}")):
            parts.append(json.loads(addendum.read_text()).get("digest", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return hashlib.sha256("|".join([*parts, rules_digest(), INDEX_FORMAT]).encode()).hexdigest()


VERDICT_COLUMNS = ("run_key VARCHAR, agent VARCHAR, task VARCHAR, rep INTEGER, run_dir VARCHAR, segment INTEGER, "
                   "status VARCHAR, official DOUBLE, checkpoint VARCHAR, disqualified_by VARCHAR[], "
                   "warnings VARCHAR[], reasons VARCHAR[], policy VARCHAR, rules_sha256 VARCHAR, "
                   "data VARCHAR, data_version VARCHAR")
OUTCOME_COLUMNS = ("run_key VARCHAR, agent VARCHAR, task VARCHAR, rep INTEGER, run_dir VARCHAR, segment INTEGER, "
                   "rule VARCHAR, title VARCHAR, severity VARCHAR, outcome VARCHAR, disqualifies BOOLEAN, "
                   "summary VARCHAR, rows_total INTEGER, cited JSON")
FINDING_COLUMNS = ("run_key VARCHAR, agent VARCHAR, task VARCHAR, rep INTEGER, run_dir VARCHAR, segment INTEGER, "
                   "rule VARCHAR, severity VARCHAR, outcome VARCHAR, kind VARCHAR, check_name VARCHAR, "
                   "act INTEGER, source VARCHAR, table_name VARCHAR, seq BIGINT, t DOUBLE, pid BIGINT, "
                   "argv VARCHAR[], command VARCHAR, path VARCHAR, sentence VARCHAR")
TRANSCRIPT_TABLES = {"tool_calls", "messages"}
# Columns the index computes once per row at export, with the rules' own macros (one definition: a query reads
# the column, W1 calls the same macro on its one run); a change of the rules changes rules_digest, which exports
# every run again.
DERIVED = {"messages": ", overrefusal(text) AS overrefusal"}
DERIVED_COLUMNS = {"messages": [("overrefusal", "BOOLEAN")]}
ARTIFACT_TABLES = {"scores", "snapshots", "checkpoint_scan", "workspace_scripts"}
# Tables the index makes besides the runs' own, with what `sql --schema` says of them.
INDEX_TABLES = {
    "runs": "One row per run (the `run` table of each run): identity, budget, deadline, end.",
    "verdicts": "One row per run: the verdict of the rules engine (status, score, rules behind it) and the "
                "data the score rests on (data: real or synthetic, data_version).",
    "rule_outcomes": "One row per run and rule: outcome, summary, the first cited rows as JSON.",
    "findings": "Every row every rule cites, in every run: rule, outcome, act (1 = the decisive one), and its "
                "source: 'os' (the sensors' evidence), 'transcript' (a tool call or message of the agent's "
                "own record, e.g. an imported run) or 'artifacts' (scoring, snapshots).",
    "catalog": "Which index segment holds each run's current rows.",
}

COLUMN_DOCS = {
    "run_key": "The run's folder under its runs dir (agent/task/rN): the key every view joins on.",
    "agent": "The run's agent label.",
    "task": "The run's task id.",
    "rep": "The run's repetition number.",
    "run_dir": "Where the run directory lay when it was indexed.",
    "act": "findings: the act's rank within the rule's citations (rows of one program on one destination, or "
           "one path and kind, share it); 1 is the decisive act.",
    "source": "findings: os, transcript or artifacts (where the cited row comes from).",
    "check_name": "findings: the rule's check that cited the row.",
    "command": "findings: the command line (execs) or the tool call's command (transcript).",
    "overrefusal": "messages: W1's over-refusal detector on the text (rules/overrefusal.py), computed once at "
                   "index refresh; overrefusal_score(text) gives its score.",
    "data": "verdicts: real or synthetic, the data the official score rests on (NULL: no result, e.g. imported).",
    "data_version": "verdicts: sha256 over the evaluated data files' hashes (same data, same version).",
}


def _source(table: str) -> str:
    return "transcript" if table in TRANSCRIPT_TABLES else "artifacts" if table in ARTIFACT_TABLES else "os"


def _finding_rows(ident: tuple, verdict: Verdict, commands: dict[int, str]) -> list[tuple]:
    """Every cited row of every rule (the verdict judged with cite_all) as `findings` rows."""
    out = []
    for r in verdict.rules:
        act_of: dict[tuple, int] = {}
        for row in r.rows:  # in act order, the decisive act first
            act = act_of.setdefault(act_key(row.model_dump()), len(act_of) + 1)
            argv = row.argv
            command = " ".join(argv) if argv else commands.get(row.seq) if row.table_name == "tool_calls" \
                else None
            out.append((*ident, r.id, r.severity, r.outcome, row.kind, row.check,
                        act, _source(row.table_name), row.table_name,
                        row.seq, row.t, row.pid, argv, command, row.path, row.sentence))
    return out


def _export_views(run_dir: Path, tmp: Path) -> None:
    """The shared views of one run (rules/views.sql) as Parquet files under tmp/VIEW/."""
    con = open_evidence(run_dir, derived=False)
    try:
        for view in SHARED_VIEWS:
            (tmp / view).mkdir(parents=True, exist_ok=True)
            con.execute(f"COPY (SELECT * FROM {view}) TO '{tmp / view / 'rows.parquet'}' (FORMAT parquet)")
    finally:
        con.close()


def _verdict_rows(ident: tuple, verdict: Verdict, data: dict | None) -> tuple[tuple, list[tuple]]:
    """The verdict of one run as a `verdicts` row (with the data its score rests on: real or
    synthetic, so no query needs to mix them) and its `rule_outcomes` rows."""
    score = verdict.score
    head = (*ident, verdict.status, score and score.official, score and score.checkpoint,
            verdict.disqualified_by, verdict.warnings, verdict.reasons, verdict.policy.name, verdict.rules_sha256,
            (data or {}).get("kind"), (data or {}).get("version"))
    rules = [(*ident, r.id, r.title, r.severity, r.outcome, r.disqualifies, r.summary, r.rows_total,
              json.dumps([row.model_dump() for row in r.rows])) for r in verdict.rules]
    return head, rules


def _catalog(index: Path) -> dict[str, tuple[str, int]]:
    path = index / "catalog.parquet"
    if not path.exists():
        return {}
    rows = duckdb.sql(f"SELECT run_key, digest, segment FROM read_parquet('{path}')").fetchall()
    return {k: (d, s) for k, d, s in rows}


def refresh(root: Path, progress: Callable[[int, int], None] | None = None) -> RefreshStats:
    """Export new or changed runs under `root` into a new segment of root/.index (progress(done, total)
    is called after each run)."""
    index = root / INDEX_DIR
    index.mkdir(exist_ok=True)
    catalog = _catalog(index)
    stats = RefreshStats(skipped=[])
    todo: list[tuple[str, Path, str]] = []
    for run_dir in find_runs(root):
        stats.runs_seen += 1
        digest = _digest(run_dir)
        key = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
        if digest is None:
            stats.skipped.append(f"{run_dir}: unreadable manifest")
        elif catalog.get(key, (None,))[0] != digest:
            todo.append((key, run_dir, digest))
    if not todo:
        return stats
    segment = max((s for _, s in catalog.values()), default=0) + 1
    con = duckdb.connect()
    overrefusal.register(con)
    parts: dict[str, list[str]] = {}
    verdicts: list[tuple] = []
    outcomes: list[tuple] = []
    findings: list[tuple] = []
    scratch = index / f".tmp-{segment:06d}"
    shutil.rmtree(scratch, ignore_errors=True)
    for n, (key, run_dir, _) in enumerate(todo):
        alias = f"r{n}"
        verdict = judge(run_dir, direction_for=task_direction, cite_all=True)
        views = scratch / alias
        try:
            con.execute(f"ATTACH '{run_dir / DB_NAME}' AS {alias} (READ_ONLY)")
            meta = con.execute(f"SELECT label, task, rep FROM {alias}.run").fetchone() or (None, None, None)
            _export_views(run_dir, views)
        except duckdb.Error as exc:
            stats.skipped.append(f"{run_dir}: {str(exc).splitlines()[0]}")
            continue
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = ?", [alias]).fetchall()]
        lit = ", ".join(
            f"{duckdb.ConstantExpression(v)!s} AS {c}"
            for v, c in ((key, "run_key"), (meta[0], "agent"), (meta[1], "task"), (meta[2], "rep"),
                         (str(run_dir), "run_dir"))
        )
        sources = [f"{alias}.{table}" for table in tables]
        sources += [f"read_parquet('{views / view / 'rows.parquet'}')" for view in SHARED_VIEWS]
        for table, src in zip([*tables, *SHARED_VIEWS], sources, strict=True):
            parts.setdefault(table, []).append(
                f"SELECT {lit}, {segment} AS segment, COLUMNS(lambda c: c NOT IN {IDENTITY}){DERIVED.get(table, '')} "
                f"FROM {src}"
            )
        ident = (key, *meta, str(run_dir), segment)
        commands = dict(con.execute(f"SELECT seq, command FROM {alias}.tool_calls").fetchall()) \
            if "tool_calls" in tables else {}
        findings += _finding_rows(ident, verdict, commands)
        for r in verdict.rules:
            r.rows = r.rows[:MAX_CITED]
        head, rules = _verdict_rows(ident, verdict, official.run_data(run_dir))
        verdicts.append(head)
        outcomes += rules
        stats.runs_added += 1
        if progress:
            progress(n + 1, len(todo))
    for name, columns, rows in (("verdicts", VERDICT_COLUMNS, verdicts), ("rule_outcomes", OUTCOME_COLUMNS, outcomes),
                                ("findings", FINDING_COLUMNS, findings)):
        if rows:
            con.execute(f"CREATE TABLE {name} ({columns})")
            con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(rows[0]))})", rows)
            parts[name] = [f"SELECT * FROM {name}"]
    for table, selects in parts.items():
        out = index / table
        out.mkdir(exist_ok=True)
        con.execute(f"COPY ({' UNION ALL BY NAME '.join(selects)}) TO '{out}/seg-{segment:06d}.parquet' "
                    "(FORMAT parquet)")
    for key, _, digest in todo:
        catalog[key] = (digest, segment)
    con.execute("CREATE TABLE catalog (run_key VARCHAR, digest VARCHAR, segment INTEGER, refreshed DOUBLE)")
    con.executemany("INSERT INTO catalog VALUES (?, ?, ?, ?)",
                    [(k, d, s, time.time()) for k, (d, s) in catalog.items()])
    tmp = index / "catalog.parquet.tmp"
    con.execute(f"COPY catalog TO '{tmp}' (FORMAT parquet)")
    tmp.replace(index / "catalog.parquet")
    con.close()
    shutil.rmtree(scratch, ignore_errors=True)
    return stats


def connect(roots: list[Path], locked: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per evidence table over the indexes of `roots`.

    `locked` is for a user's statement: the connection may then read files only inside the
    indexes (no host file, no other database, no extension), and its configuration is locked
    so no statement can undo that."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    overrefusal.register(con)
    tables: dict[str, list[str]] = {}
    catalogs = []
    for root in roots:
        index = root / INDEX_DIR
        if (index / "catalog.parquet").exists():
            catalogs.append(f"'{index / 'catalog.parquet'}'")
        for d in sorted(p for p in index.glob("*") if p.is_dir()):
            tables.setdefault(d.name, []).append(f"'{d}/*.parquet'")
    if not catalogs:
        con.execute("CREATE VIEW catalog AS SELECT NULL::VARCHAR AS run_key, NULL::INTEGER AS segment "
                    "WHERE false")
    else:
        con.execute(f"CREATE VIEW catalog AS SELECT * FROM read_parquet([{', '.join(catalogs)}])")
    for table, globs in tables.items():
        name = "runs" if table == "run" else table
        con.execute(
            f"CREATE VIEW {name} AS SELECT t.* EXCLUDE (segment) FROM read_parquet([{', '.join(globs)}], "
            f"union_by_name = true) t SEMI JOIN catalog c ON t.run_key = c.run_key AND t.segment = c.segment"
        )
    for name, columns in schema().items():  # what no run holds yet is an empty view, never an unknown name
        if name not in tables and name != "catalog":
            con.execute(f"CREATE VIEW {'runs' if name == 'run' else name} AS SELECT "
                        + ", ".join(f"NULL::{typ} AS \"{col}\"" for col, typ in columns) + " WHERE false")
    if locked:
        allowed = [f"{(root / INDEX_DIR).resolve()}/" for root in roots]
        con.execute("SET allowed_directories = ?", [allowed])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


IDENTITY_COLUMNS = [("run_key", "VARCHAR"), ("agent", "VARCHAR"), ("task", "VARCHAR"), ("rep", "INTEGER"),
                    ("run_dir", "VARCHAR")]


def _columns(spec: str) -> list[tuple[str, str]]:
    return [tuple(c.strip().split(" ", 1)) for c in spec.split(", ") if not c.startswith("segment ")]


def schema() -> dict[str, list[tuple[str, str]]]:
    """Every table the index offers, with its columns and types, whether or not any run holds it."""
    out = {t.name: IDENTITY_COLUMNS + [(c.name, c.type) for c in t.columns if c.name not in dict(IDENTITY_COLUMNS)]
           for t in TABLES}
    for name, columns in DERIVED_COLUMNS.items():
        out[name] += columns
    out["run"] = IDENTITY_COLUMNS + [(c, t) for c, t in RUN_COLUMNS if c not in dict(IDENTITY_COLUMNS)]
    out |= {v: IDENTITY_COLUMNS + cols for v, cols in shared_view_columns().items()}
    out |= {"verdicts": _columns(VERDICT_COLUMNS), "rule_outcomes": _columns(OUTCOME_COLUMNS),
            "findings": _columns(FINDING_COLUMNS)}
    return out
