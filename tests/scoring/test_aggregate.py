"""The leaderboard's arithmetic against hand-computed values on a small results table.

Baselines (task metadata): t1 3.438 (lower better), t2 0.343 (higher), t6 0.384 (lower).
A disqualified, an incomplete and a tampered run carry absurd scores that would move every
mean, best and Agg if they leaked in.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from onegc.audit import aggregate as agg
from onegc.evidence.errors import OnegcError

CLI = str(Path(sys.executable).parent / "onegc-audit")

CSV = """agent,task,rep,status,score,scripts_launched,budget_used_s
A,t1,1,accepted,2.0,4,1200
A,t1,2,accepted,2.2,6,2400
A,t1,3,no_score,,10,600
A,t1,4,disqualified,1.0,100,60
A,t2,1,accepted,0.5,3,
A,t6,1,accepted,0.38,,
A,t6,2,accepted,0.36,,
A,t6,3,incomplete,0.1,,
B,t1,1,accepted,2.5,,
B,t2,1,accepted,0.6,,
B,t2,2,accepted,0.4,,
B,t2,3,tampered,0.99,,
B,t6,1,accepted,0.37,,
C,t1,1,accepted,3.0,,
C,t1,2,accepted,3.2,,
C,t2,1,accepted,0.35,,
C,t2,2,accepted,0.35,,
C,t6,1,accepted,0.40,,
C,t6,2,no_score,,,
D,t1,1,accepted,2.5,,
D,t2,1,accepted,0.6,,
D,t2,2,accepted,0.4,,
D,t6,1,accepted,0.37,,
"""


@pytest.fixture
def results(tmp_path: Path) -> Path:
    path = tmp_path / "results.csv"
    path.write_text(CSV)
    return path


@pytest.fixture
def board(results: Path) -> dict:
    return agg.leaderboard(agg.load_results(results), agg.task_metas())


def cell(board: dict, agent: str, task: str) -> dict:
    return next(c for c in board["cells"] if (c["agent"], c["task"]) == (agent, task))


def agent(board: dict, name: str) -> dict:
    return next(a for a in board["agents"] if a["agent"] == name)


def test_table4_means_std_success_ignore_excluded_runs(board: dict) -> None:
    a1 = cell(board, "A", "t1")  # the disqualified 1.0 would pull the mean to 1.733
    assert a1["mean"] == pytest.approx(2.1)
    assert a1["std"] == pytest.approx(math.sqrt(0.02))  # sample std of 2.0, 2.2
    assert (a1["n_scored"], a1["n_attempted"], a1["n_no_score"], a1["n_disqualified"]) == (2, 4, 1, 1)
    a6 = cell(board, "A", "t6")  # the incomplete 0.1 counts neither in the mean nor in N
    assert a6["mean"] == pytest.approx(0.37)
    assert (a6["n_scored"], a6["n_attempted"], a6["n_incomplete"]) == (2, 2, 1)
    b2 = cell(board, "B", "t2")  # the tampered 0.99 would be the best and move the mean
    assert b2["mean"] == pytest.approx(0.5) and b2["best"] == pytest.approx(0.6)
    assert (b2["n_scored"], b2["n_attempted"], b2["n_tampered"]) == (2, 2, 1)
    single = cell(board, "A", "t2")
    assert single["mean"] == pytest.approx(0.5) and single["std"] is None and single["thin"]
    assert cell(board, "C", "t2")["std"] == pytest.approx(0.0)
    c6 = cell(board, "C", "t6")
    assert (c6["n_scored"], c6["n_attempted"], c6["mean"]) == (1, 2, pytest.approx(0.40))


def test_agg_eq1_both_directions(board: dict) -> None:
    agg_a = ((3.438 - 2.1) / 3.438 + (0.5 - 0.343) / 0.343 + (0.384 - 0.37) / 0.384) / 3
    agg_b = ((3.438 - 2.5) / 3.438 + (0.5 - 0.343) / 0.343 + (0.384 - 0.37) / 0.384) / 3
    agg_c = ((3.438 - 3.1) / 3.438 + (0.35 - 0.343) / 0.343 + (0.384 - 0.40) / 0.384) / 3
    assert agent(board, "A")["agg"] == pytest.approx(agg_a)  # 0.294455
    assert agent(board, "B")["agg"] == pytest.approx(agg_b)  # 0.255672
    assert agent(board, "C")["agg"] == pytest.approx(agg_c)  # 0.025685
    assert agg_a == pytest.approx(0.294455, abs=1e-6)


def test_table6_best_run_and_agg_max(board: dict) -> None:
    assert cell(board, "A", "t1")["best"] == pytest.approx(2.0)  # lower is better; dq 1.0 ignored
    assert cell(board, "A", "t6")["best"] == pytest.approx(0.36)
    amax_a = ((3.438 - 2.0) / 3.438 + (0.5 - 0.343) / 0.343 + (0.384 - 0.36) / 0.384) / 3
    amax_b = ((3.438 - 2.5) / 3.438 + (0.6 - 0.343) / 0.343 + (0.384 - 0.37) / 0.384) / 3
    assert agent(board, "A")["agg_max"] == pytest.approx(amax_a)  # 0.312831
    assert agent(board, "B")["agg_max"] == pytest.approx(amax_b)  # 0.352854


def test_ranking_more_runs_supersede_then_agg_ties_share(board: dict) -> None:
    ranks = {a["agent"]: a["rank"] for a in board["agents"]}
    # C has 2 attempted runs on every task, the others 1 somewhere: C first despite its Agg.
    assert ranks == {"C": 1, "A": 2, "B": 3, "D": 3}
    assert [a["agent"] for a in board["agents"]] == ["C", "A", "B", "D"]


def test_table5_scripts_over_valid_runs_and_table8_utilisation(board: dict) -> None:
    a1 = cell(board, "A", "t1")
    assert a1["scripts_mean"] == pytest.approx(5.0)  # (4 + 6) / 2: no_score and dq runs left out
    assert a1["used_min"] == pytest.approx((1200 + 2400 + 600) / 3 / 60)  # 23.33 of 40 min
    assert a1["utilisation_pct"] == pytest.approx(100 * 1400 / 2400)
    assert a1["budget_min"] == pytest.approx(40)
    assert cell(board, "B", "t1")["scripts_mean"] is None


def test_excluded_runs_listed_apart(board: dict) -> None:
    got = [(r["agent"], r["task"], r["rep"], r["status"]) for r in board["excluded"]]
    assert got == [("A", "t1", 4, "disqualified"), ("A", "t6", 3, "incomplete"), ("B", "t2", 3, "tampered")]


def test_markdown_bold_ties_thin_marks(board: dict) -> None:
    md = agg.render_md(board)
    t4 = md.split("### Table 6")[0]
    row_a = next(line for line in t4.splitlines() if line.startswith("| 2 | A |"))
    row_b = next(line for line in t4.splitlines() if line.startswith("| 3 | B |"))
    assert "**0.5000** [1/1]*" in row_a  # tie on t2 mean (A 0.5, B 0.5): both bold; single run thin
    assert "**0.5000** ± 0.1414 [2/2]*" in row_b
    assert "**0.3700**" in row_a and "**0.3700**" in row_b  # tie on t6 (lower is better)
    assert "**+0.294**" in row_a
    assert "**2.1000** ± 0.1414 [2/4]*" in row_a  # best mean on t1 (lower is better)
    assert "disqualified" in md.split("Runs kept out")[1]


def test_cli_formats(results: Path, tmp_path: Path) -> None:
    def run(*args: str) -> str:
        proc = subprocess.run(
            [CLI, "aggregate", "--results", str(results), *args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    board = json.loads(run("--format", "json"))
    assert {a["agent"]: a["rank"] for a in board["agents"]}["C"] == 1
    csv_text = run("--format", "csv")
    (tmp_path / "board.csv").write_text(csv_text)
    frame = pl.read_csv(tmp_path / "board.csv", infer_schema_length=None)
    a1 = frame.filter((pl.col("kind") == "cell") & (pl.col("agent") == "A") & (pl.col("task") == "t1"))
    assert a1["mean"][0] == pytest.approx(2.1)
    tex = run("--format", "latex")
    assert "\\textbf{+0.294}" in tex and "\\begin{tabular}" in tex


def test_bad_results_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("agent,task,rep,status,score\nA,t1,1,accepted,\n")
    with pytest.raises(OnegcError, match="accepted run without a score"):
        agg.load_results(bad)
    bad.write_text("agent,task,rep,status,score\nA,t1,1,won,1\n")
    with pytest.raises(OnegcError, match="unknown status"):
        agg.load_results(bad)
    proc = subprocess.run(
        [CLI, "aggregate", "--results", str(bad)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown status" in proc.stderr and "Traceback" not in proc.stderr
