"""SQL over many runs: read-only, views carry agent/task/rep, canned queries return the
planted rows, the index refreshes incrementally."""

import json
import subprocess
import sys

import pytest

from onegc.audit.cmd_sql import QueryError, named_queries, read_only, run_sql
from onegc.audit.index import INDEX_DIR, refresh
from tests.conftest import monitored, needs_root

pytestmark = needs_root


@pytest.fixture
def two_runs(runs_dir):
    monitored(runs_dir, "python3 -m pip install --no-index --quiet not-a-package || true", rep=1)
    monitored(runs_dir, "cp train.py run_1.py && python3 run_1.py", rep=2)
    return runs_dir


def test_views_carry_run_identity_and_canned_install_query_finds_the_planted_row(two_runs):
    df = run_sql(named_queries()["install-attempts"].read_text(), [two_runs])
    assert df.height == 1
    row = df.row(0, named=True)
    assert (row["agent"], row["task"], row["rep"]) == ("tester", "t0", 1)
    assert "not-a-package" in row["command"]
    scripts = run_sql(named_queries()["scripts-launched"].read_text(), [two_runs])
    assert scripts.select("scripts_launched").item() == 1
    verdicts = run_sql("SELECT rep, status, disqualified_by FROM verdicts ORDER BY rep", [two_runs])
    assert verdicts.rows() == [(1, "disqualified", ["R4"]), (2, "no_score", [])]
    r4 = run_sql("SELECT rep, outcome, cited->>'$[0].argv' AS argv FROM rule_outcomes WHERE rule = 'R4' "
                 "ORDER BY rep", [two_runs])
    assert r4.row(0)[:2] == (1, "attempt") and "not-a-package" in r4.row(0)[2]
    assert r4.row(1)[1] == "pass"


def test_writes_are_refused():
    for bad in ("DELETE FROM execs", "COPY execs TO 'x.csv'", "ATTACH 'x.db'", "SELECT 1; DROP VIEW execs"):
        with pytest.raises(QueryError, match="only SELECT"):
            read_only(bad)


def test_refresh_is_incremental(two_runs):
    first = refresh(two_runs)
    assert (first.runs_seen, first.runs_added) == (2, 2)
    again = refresh(two_runs)
    assert again.runs_added == 0
    monitored(two_runs, "true", rep=3)
    third = refresh(two_runs)
    assert third.runs_added == 1
    assert run_sql("SELECT count(*) AS n FROM runs", [two_runs]).item() == 3
    assert len(list((two_runs / INDEX_DIR / "execs").glob("*.parquet"))) == 2


def test_cli_sql_json_and_write_refusal(two_runs):
    cli = [sys.executable, "-c", "from onegc.audit.cli import main; main()"]
    res = subprocess.run([*cli, "sql", "--format", "json", "SELECT agent, rep FROM runs ORDER BY rep",
                          str(two_runs)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [{"agent": "tester", "rep": 1}, {"agent": "tester", "rep": 2}]
    res = subprocess.run([*cli, "sql", "DROP TABLE execs", str(two_runs)], capture_output=True, text=True)
    assert res.returncode == 2 and "only SELECT" in res.stderr


def _tree(root) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_way_to_write_or_read_outside_the_evidence_is_refused_in_one_line(two_runs, tmp_path):
    """The guard (one SELECT) and the connection (no external access, locked) each refuse;
    every attempt is one line on stderr, exit 2, and nothing is written anywhere."""
    cli = [sys.executable, "-c", "from onegc.audit.cli import main; main()"]
    target = tmp_path / "out.csv"
    db = tmp_path / "other.db"
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    journal = next(two_runs.glob("*/*/r1/journal/execs.jsonl"))
    subprocess.run([*cli, "sql", "SELECT 1 AS x", str(two_runs)], check=True, capture_output=True)  # index built
    before, before_tmp = _tree(two_runs), _tree(tmp_path)
    attempts = [
        f"COPY (SELECT 42 AS x) TO '{target}'",
        f"EXPLAIN ANALYZE COPY (SELECT 42 AS x) TO '{target}'",
        f"COPY execs TO '{journal}'",
        f"EXPORT DATABASE '{tmp_path / 'exported'}'",
        f"ATTACH '{db}' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "PRAGMA enable_profiling",
        "CALL pragma_version()",
        f"SELECT content FROM read_text('{secret}')",
        "SELECT content FROM read_text('/etc/shadow')",
        f"SELECT * FROM read_csv('{secret}')",
        f"SELECT * FROM read_parquet('{tmp_path}/*.parquet')",
        f"SELECT * FROM glob('{tmp_path}/*')",
        f"SELECT * FROM read_text('{two_runs}/.index/../{journal.relative_to(two_runs)}')",
        f"SELECT 1; COPY (SELECT 42 AS x) TO '{target}'",
        "SELECT 1; SELECT 2",
        "CREATE TABLE t AS SELECT 1",
    ]
    for sql in attempts:
        res = subprocess.run([*cli, "sql", sql, str(two_runs)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, (sql, res.stdout, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, (sql, res.stderr)
        assert "host secret" not in res.stdout and "root:" not in res.stdout, sql
    assert not target.exists() and not db.exists() and not (tmp_path / "exported").exists()
    assert _tree(tmp_path) == before_tmp
    after = _tree(two_runs)
    assert {k: v for k, v in after.items() if "/.index/" not in k} == {
        k: v for k, v in before.items() if "/.index/" not in k}
    assert after == before  # the index was current: the refused statements wrote not even there
    ok = subprocess.run([*cli, "sql", "--format", "json", "SELECT count(*) AS n FROM execs", str(two_runs)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)[0]["n"] > 0


def test_table5_scripts_launched_query_and_w3_count_the_same_launches(runs_dir):
    """One definition (training_launches): the leaderboard's Table 5 fact, the named query and
    W3's measure agree, on a run mixing training scripts with helpers, -c and -m."""
    from onegc.audit.aggregate import run_facts
    from onegc.rules.engine import judge

    run = monitored(runs_dir, "cp train.py run_1.py && python3 run_1.py && python3 -u run_1.py && python3 train.py"
                    " && python3 -c 'print(1)' && python3 -m json.tool < /dev/null; echo 'print(2)' > helper.py"
                    " && python3 helper.py", rep=1)
    w3 = next(r for r in judge(run).rules if r.id == "W3").measure.count
    facts = run_facts(run)
    query = run_sql(named_queries()["scripts-launched"].read_text(), [runs_dir]).select("scripts_launched").item()
    assert facts["scripts_launched"] == w3 == query == 3
    used = run_sql(named_queries()["budget-utilisation"].read_text(), [runs_dir]).select("minutes_used").item()
    assert used == round(facts["budget_used_s"] / 60, 2)


def test_attempt_queries_read_findings_so_monitored_and_imported_runs_answer_alike(runs_dir):
    """install-attempts and network-attempts read the findings view: the monitored pip run's OS
    rows and the imported transcript's tool calls both come back, each with its source."""
    from pathlib import Path

    from onegc.audit import importer

    monitored(runs_dir, "python3 -m pip install --no-index --quiet not-a-package || true", rep=1)
    fixture = Path(__file__).parents[1] / "importer" / "fixtures" / "codex" / "violating"
    importer.import_one(importer.source_of(fixture), runs_dir, "imported", "t2", 1)
    installs = run_sql(named_queries()["install-attempts"].read_text(), [runs_dir])
    assert {(r["agent"], r["source"]) for r in installs.iter_rows(named=True)} == {
        ("tester", "os"), ("imported", "transcript")}
    assert all("install" in r["command"] for r in installs.iter_rows(named=True))
    net = run_sql(named_queries()["network-attempts"].read_text(), [runs_dir])
    assert ("imported", "transcript") in {(r["agent"], r["source"]) for r in net.iter_rows(named=True)}
    rules = run_sql("SELECT DISTINCT rule FROM findings WHERE agent = 'imported' AND source = 'transcript'",
                    [runs_dir])
    assert {"R1", "R3", "R4"} <= set(rules["rule"].to_list())


def test_schema_without_runs_dir_lists_every_view_and_queries_over_missing_tables_answer_empty(tmp_path):
    cli = [sys.executable, "-c", "from onegc.audit.cli import main; main()"]
    res = subprocess.run([*cli, "sql", "--schema"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    names = {line.split(":")[0] for line in res.stdout.splitlines() if line and not line.startswith(" ")}
    assert {"execs", "net_attempts", "tool_calls", "runs", "verdicts", "findings", "training_launches",
            "budget_use"} <= names
    assert "  source VARCHAR" in res.stdout  # the findings columns are documented
    empty = tmp_path / "runs"
    empty.mkdir()
    for name in ("install-attempts", "network-attempts", "scripts-launched"):
        assert run_sql(named_queries()[name].read_text(), [empty]).height == 0


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_every_format_takes_lists_and_structs(two_runs, tmp_path, fmt):
    import polars as pl

    out = tmp_path / f"answer.{fmt}"
    cli = [sys.executable, "-c", "from onegc.audit.cli import main; main()"]
    res = subprocess.run([*cli, "sql", "--format", fmt, "--out", str(out),
                          "SELECT seq, argv, {'a': 1, 'b': [seq]} AS s FROM execs ORDER BY run_key, seq LIMIT 3",
                          str(two_runs)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    if fmt == "csv":
        df = pl.read_csv(out)
        assert isinstance(json.loads(df["argv"][0]), list) and json.loads(df["s"][0])["a"] == 1
    elif fmt == "json":
        rows = json.loads(out.read_text())
        assert isinstance(rows[0]["argv"], list) and rows[0]["s"]["b"] == [rows[0]["seq"]]
    else:
        df = pl.read_parquet(out)
        assert df.schema["argv"] == pl.List(pl.String) and df["s"][0]["a"] == 1
