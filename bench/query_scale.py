"""Query time over many runs: 10,000 synthetic runs written straight into the index
layout (RUNS/.index), the messages with the over-refusal column that refresh computes
(audit/index.py DERIVED, the rules' own macro), then the over-refusal and Table 5 queries
timed through the same code path as `onegc-audit query`. The column's cost at refresh is
printed per run (the messages segment written with and without it).

    python bench/query_scale.py [--runs 10000] [--dir /var/lib/onegc-audit/bench-index]
"""

import argparse
import shutil
import time
from pathlib import Path

import duckdb

from onegc.audit.cmd_sql import named_queries, run_sql
from onegc.audit.index import DERIVED
from onegc.rules import overrefusal

EXECS_PER_RUN = 300  # commands and their PATH probes in a 40-120 minute agent session
MESSAGES_PER_RUN = 150  # assistant text, reasoning and tool chatter


def generate(root: Path, runs: int) -> float:
    """Write the index; returns the seconds the derived messages column added to the export."""
    index = root / ".index"
    for sub in ("runs", "execs", "messages"):
        (index / ("run" if sub == "runs" else sub)).mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    overrefusal.register(con)
    con.execute(f"""CREATE TABLE r AS SELECT i, 'agent' || (i % 7) AS agent, 't' || (1 + i // 7 % 7) AS task,
        1 + i // 49 AS rep, 'run' || i AS run_key, 1 AS segment FROM range({runs}) t(i)""")
    con.execute(f"""COPY (SELECT run_key, agent, task, rep, '/runs/' || run_key AS run_dir, segment,
        2400.0 AS budget_s, 0.0 AS started_at, 1000.0 + i AS ended_at, 5000.0 AS deadline_mono,
        'agent_exited' AS end_reason FROM r) TO '{index}/run/seg-000001.parquet' (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT r.run_key, agent, task, rep, segment, j AS seq, 100.0 + j AS mono,
        CASE WHEN j % 10 = 0 THEN '/usr/bin/python3' ELSE '/usr/bin/bash' END AS path,
        CASE WHEN j % 10 = 0 THEN ['python3', 'run_' || (j // 10) || '.py']
             ELSE ['bash', '-c', 'ls -la checkpoints && nvidia-smi && tail -n 50 log_' || j || '.txt'] END
             AS argv,
        j % 7 = 3 AS probe FROM r, range({EXECS_PER_RUN}) t(j))
        TO '{index}/execs/seg-000001.parquet' (FORMAT parquet)""")
    (index / "training_launches").mkdir(exist_ok=True)  # what the rules' training_launches view gives per run
    con.execute(f"""COPY (SELECT r.run_key, agent, task, rep, segment, j AS seq, 100.0 + j AS t, 100.0 + j AS mono,
        1000 + j AS pid, ['python3', 'run_' || (j // 10) || '.py'] AS argv, '/ws' AS cwd,
        'run_' || (j // 10) || '.py' AS script FROM r, range(0, {EXECS_PER_RUN}, 10) t(j))
        TO '{index}/training_launches/seg-000001.parquet' (FORMAT parquet)""")
    con.execute(f"""CREATE TABLE m AS SELECT r.run_key, agent, task, rep, segment, j AS seq, 'assistant' AS role,
        CASE WHEN j % 3 = 0 THEN 'reasoning' ELSE 'text' END AS kind,
        CASE WHEN i % 997 = 0 AND j = 5 THEN 'I should not modify code I did not write, so I will stop.'
             ELSE 'Epoch ' || j || ': the validation loss improved to ' || (j * 0.013) ||
                  '; next I will try a wider model with cosine decay and label smoothing, then compare '
                  || 'the checkpoints saved so far against the baseline in train.py.' END AS text
        FROM r, range({MESSAGES_PER_RUN}) t(j)""")
    secs = []
    for derived in ("", DERIVED["messages"]):  # as refresh writes it, and without the column for comparison
        start = time.perf_counter()
        con.execute(f"COPY (SELECT *{derived} FROM m) TO '{index}/messages/seg-000001.parquet' (FORMAT parquet)")
        secs.append(time.perf_counter() - start)
    con.execute(f"""COPY (SELECT run_key, 'd' || i AS digest, segment, 0.0 AS refreshed FROM r)
        TO '{index}/catalog.parquet' (FORMAT parquet)""")
    con.close()
    return secs[1] - secs[0]


def timed(name: str, root: Path) -> tuple[float, int]:
    sql = named_queries()[name].read_text()
    start = time.perf_counter()
    df = run_sql(sql, [root], refresh=False)
    return time.perf_counter() - start, df.height


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, default=Path("/var/lib/onegc-audit/bench-index"))
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    t = time.perf_counter()
    column = generate(args.dir, args.runs)
    print(f"generated {args.runs} runs ({args.runs * EXECS_PER_RUN:,} execs, "
          f"{args.runs * MESSAGES_PER_RUN:,} messages) in {time.perf_counter() - t:.1f}s")
    print(f"refresh: the overrefusal column took {column:.1f}s, {column / args.runs * 1000:.2f} ms per run "
          f"({MESSAGES_PER_RUN} messages, {args.runs * MESSAGES_PER_RUN / column:,.0f} messages/s)")
    for name in ("overrefusal", "scripts-launched"):
        secs, rows = timed(name, args.dir)
        print(f"{name:18s} {secs:6.2f}s  ({rows} rows)  target <= 3 s")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
