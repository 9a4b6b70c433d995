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

CLI = [sys.executable, "-m", "onegc.audit"]  # whatever interpreter runs the suite

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
            [*CLI, "aggregate", "--results", str(results), *args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    boards = json.loads(run("--format", "json"))["boards"]
    assert [b["data"] for b in boards] == ["real"]
    assert {a["agent"]: a["rank"] for a in boards[0]["agents"]}["C"] == 1
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
        [*CLI, "aggregate", "--results", str(bad)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown status" in proc.stderr and "Traceback" not in proc.stderr


# -- the rank rule and the data split, in every format ------------------------------------------
MIXED = """agent,task,rep,status,score,data
A,t1,1,accepted,2.0,real
A,t6,1,accepted,0.37,real
P,t1,1,disqualified,1.0,real
P,t6,1,accepted,0.30,real
Q,t6,1,disqualified,0.10,real
S,t6,1,accepted,0.03,synthetic
S,t1,1,accepted,1.5,synthetic
"""


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED)
    return path


def cli(*args: str) -> str:
    proc = subprocess.run([*CLI, "aggregate", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_only_agents_accepted_on_every_task_rank_and_data_kinds_never_mix(mixed: Path) -> None:
    real, synthetic = agg.leaderboards(agg.load_results(mixed), agg.task_metas())
    assert (real["data"], synthetic["data"]) == ("real", "synthetic")
    assert {a["agent"]: a["rank"] for a in real["agents"]} == {"A": 1, "P": None, "Q": None}
    assert [a["agent"] for a in real["agents"]] == ["A", "P", "Q"]  # the unranked sort last
    assert {a["agent"] for a in synthetic["agents"]} == {"S"}  # S's 0.03 is in no real mean or Agg
    assert {(r["agent"], r["task"]) for r in real["excluded"]} == {("P", "t1"), ("Q", "t6")}
    assert cell(real, "P", "t6")["best"] == pytest.approx(0.30)  # the real best stays P's, not S's
    with pytest.raises(ValueError, match="one kind of data"):
        agg.leaderboard(agg.load_results(mixed), agg.task_metas())


def test_rank_rule_and_synthetic_marks_in_markdown(mixed: Path) -> None:
    md = cli("--results", str(mixed))
    real, synthetic = md.split("> SYNTHETIC data")
    t4 = real.split("### Table 6")[0]
    assert "| 1 | A |" in t4 and "| - | P |" in t4 and "| - | Q |" in t4 and "| S |" not in t4
    kept = real.split("Runs kept out")[1]
    assert "| P | t1 | 1 | disqualified |" in kept and "| Q | t6 | 1 | disqualified |" in kept
    assert "### Table 4 (SYNTHETIC data)" in synthetic and "| 1 | S |" in synthetic
    assert "(SYNTHETIC data)" not in real


def test_rank_rule_and_synthetic_marks_in_latex(mixed: Path) -> None:
    tex = cli("--results", str(mixed), "--format", "latex")
    real, synthetic = tex.split("\\caption{Table 4 (SYNTHETIC data)")
    assert "1 & A &" in real and "- & P &" in real and "- & Q &" in real and " S " not in real
    assert "1 & S &" in synthetic and "% SYNTHETIC data" in synthetic


def test_rank_rule_and_data_in_json(mixed: Path) -> None:
    boards = json.loads(cli("--results", str(mixed), "--format", "json"))["boards"]
    assert [b["data"] for b in boards] == ["real", "synthetic"]
    assert {a["agent"]: a["rank"] for a in boards[0]["agents"]} == {"A": 1, "P": None, "Q": None}
    assert [(r["agent"], r["status"]) for r in boards[0]["excluded"]] == [("P", "disqualified"), ("Q", "disqualified")]
    assert {a["agent"]: a["rank"] for a in boards[1]["agents"]} == {"S": 1}


def test_rank_rule_and_data_in_csv(mixed: Path, tmp_path: Path) -> None:
    (tmp_path / "board.csv").write_text(cli("--results", str(mixed), "--format", "csv"))
    frame = pl.read_csv(tmp_path / "board.csv", infer_schema_length=None)
    agents = frame.filter(pl.col("kind") == "agent")
    ranks = dict(zip(agents["agent"].to_list(), agents["rank"].to_list(), strict=True))
    assert ranks == {"A": 1, "P": None, "Q": None, "S": 1}
    assert dict(zip(agents["agent"].to_list(), agents["data"].to_list(), strict=True))["S"] == "synthetic"
    kept = frame.filter(pl.col("kind") == "excluded")
    assert sorted(kept["agent"].to_list()) == ["P", "Q"] and set(kept["data"].to_list()) == {"real"}


def test_unknown_data_kind_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("agent,task,rep,status,score,data\nA,t1,1,accepted,2.0,fake\n")
    with pytest.raises(OnegcError, match="unknown data kind"):
        agg.load_results(bad)


def test_plot_without_matplotlib_says_which_extra(results: Path, tmp_path: Path) -> None:
    """--plot needs the [plot] extra; without it (matplotlib made unimportable, whatever this
    interpreter has) one line names the install, exit 2, before anything is written."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from onegc.audit.cli import main\n"
        f"sys.argv = ['onegc-audit', 'aggregate', '--results', {str(results)!r}, '--plot', {str(tmp_path / 'f.png')!r},"
        f" '-o', {str(tmp_path / 'board.md')!r}]\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "onegc-audit: error: --plot needs matplotlib, which is not installed (hint: pip install 'onegc-audit[plot]')"
    ]
    assert not (tmp_path / "f.png").exists() and not (tmp_path / "board.md").exists()
