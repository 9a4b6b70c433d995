"""T4 (ogbg-molhiv): canonical synthetic source, OGB's edge handling and ROC-AUC, the pipeline.

Synthetic hiv.zip -> the real prepare.py -> a workspace from the registry -> baseline smoke
training in a subprocess -> checkpoint -> the isolated official evaluation. Hand-built models
with known answers check that scores are computed against the held-out labels in the right
order, and that the model process cannot read those labels.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from onegc.evidence.seal import sha256_file
from onegc.tasks import registry
from tests.tasks.conftest import load_prepare, probe_pipeline

TASK = "t4"
SPEC = registry.get_task(TASK)


P = load_prepare(TASK)


def test_metadata_matches_paper_table_2() -> None:
    s = SPEC
    assert (s.budget_s, s.metric, s.direction, s.eval_split, s.baseline_score, s.reference_value) == (
        3600,
        "rocauc",
        "higher",
        "test",
        0.706,
        0.848,
    )
    assert s.has_heldout and s.locked == ("prepare.py", "taskkit.py")
    assert (s.budget_s, s.metric, s.id) == (P.TIME_BUDGET, P.METRIC, P.TASK_ID)


# ------------------------------------------------------------------------------------------
# ROC-AUC: hand-computed values and OGB's per-task rules
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "s", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),  # sklearn's documented example
        ([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9], 0.875),  # one tied pos/neg pair counts 1/2
        ([1, 0, 1, 0, 0], [3, 3, 3, 3, 3], 0.5),  # everything tied
        ([0, 1, 1, 0], [2.0, 1.0, 1.0, 3.0], 0.0),  # perfectly wrong
        ([1, 0, 0, 1, 0], [0.9, -5.0, 0.5, 0.2, 0.5], 4 / 6),  # two tied negatives
    ],
)
def test_roc_auc_hand_computed(y: list[int], s: list[float], expected: float) -> None:
    assert P.roc_auc_score(np.array(y), np.array(s)) == pytest.approx(expected, abs=1e-12)


def _rank_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney form: P(score_pos > score_neg) + P(tie) / 2, by brute force over pairs."""
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def test_roc_auc_equals_pairwise_definition_with_heavy_ties() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        y = rng.integers(0, 2, 200)
        s = np.round(rng.normal(size=200) + 0.7 * y, 1)  # rounding creates many ties
        assert P.roc_auc_score(y, s) == pytest.approx(_rank_auc(y, s), abs=1e-12)


def test_eval_rocauc_skips_single_class_columns_and_nan_labels() -> None:
    nan = float("nan")
    y_true = np.array([[0, 0, 1], [0, 1, 0], [0, nan, 1], [0, 0, 0], [0, 1, 1]], dtype=float)
    y_pred = np.array([[5, 0.2, 0.9], [1, 0.8, 0.3], [2, 0.1, 0.6], [3, 0.4, 0.6], [4, 0.3, 0.2]])
    # column 0: a single class -> skipped; column 1: row 2 unlabelled -> y [0,1,0,1] scores
    # [0.2,0.8,0.4,0.3] -> 3/4; column 2: y [1,0,1,0,1] scores [.9,.3,.6,.6,.2] -> 3.5/6
    assert P.eval_rocauc(y_true, y_pred) == pytest.approx((0.75 + 3.5 / 6) / 2, abs=1e-12)


def test_eval_rocauc_rejects_what_ogb_rejects() -> None:
    with pytest.raises(RuntimeError, match="No positively labeled data"):
        P.eval_rocauc(np.zeros((4, 1)), np.arange(4.0).reshape(4, 1))
    with pytest.raises(ValueError, match="2-D"):
        P.eval_rocauc(np.array([0, 1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="2-D"):
        P.eval_rocauc(np.array([[0], [1]]), np.array([[0.1, 0.2], [0.3, 0.4]]))
    with pytest.raises(ValueError, match="NaN"):
        P.eval_rocauc(np.array([[0], [1]]), np.array([[0.1], [float("nan")]]))


# ------------------------------------------------------------------------------------------
# The synthetic source is OGB's on-disk format; OGB's inverse-edge convention; batching
# ------------------------------------------------------------------------------------------


def _rows(data: bytes) -> list[list[int]]:
    """Parse a headerless csv.gz strictly as integers (a header line would fail here)."""
    text = gzip.decompress(data).decode("ascii")
    return [[int(v) for v in row] for row in csv.reader(io.StringIO(text))]


def test_synthetic_hiv_zip_has_ogb_layout(tmp_path: Path) -> None:
    archive = tmp_path / "hiv.zip"
    P.write_synthetic_source(archive)
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        raw = {n.split("/")[-1]: zf.read(n) for n in names if "/raw/" in n}
        split = {
            k: [r[0] for r in _rows(zf.read(f"hiv/split/scaffold/{k}.csv.gz"))]
            for k in ("train", "valid", "test")
        }
        mapping = gzip.decompress(zf.read("hiv/mapping/mol.csv.gz")).decode().splitlines()
    assert names == {"hiv/RELEASE_v1.txt", "hiv/mapping/mol.csv.gz"} | {
        f"hiv/raw/{f}"
        for f in (
            "edge.csv.gz",
            "node-feat.csv.gz",
            "edge-feat.csv.gz",
            "graph-label.csv.gz",
            "num-node-list.csv.gz",
            "num-edge-list.csv.gz",
        )
    } | {f"hiv/split/scaffold/{k}.csv.gz" for k in ("train", "valid", "test")}
    assert mapping[0] == "HIV_active,smiles,mol_id"
    nodes = [r[0] for r in _rows(raw["num-node-list.csv.gz"])]
    edges = [r[0] for r in _rows(raw["num-edge-list.csv.gz"])]
    labels = [r[0] for r in _rows(raw["graph-label.csv.gz"])]
    node_feat, edge_feat = _rows(raw["node-feat.csv.gz"]), _rows(raw["edge-feat.csv.gz"])
    edge = _rows(raw["edge.csv.gz"])
    assert len(nodes) == len(edges) == len(labels) == len(mapping) - 1
    assert {len(r) for r in node_feat} == {9} and len(node_feat) == sum(nodes)
    assert {len(r) for r in edge_feat} == {3} and {len(r) for r in edge} == {2}
    assert len(edge) == len(edge_feat) == sum(edges)
    assert all(0 <= v < d for r in node_feat for v, d in zip(r, P.ATOM_FEATURE_DIMS, strict=True))
    assert all(0 <= v < d for r in edge_feat for v, d in zip(r, P.BOND_FEATURE_DIMS, strict=True))
    pos = 0  # node ids are local to each graph and every bond is listed once
    for n, e in zip(nodes, edges, strict=True):
        block = edge[pos : pos + e]
        pos += e
        assert all(0 <= u < n and 0 <= v < n for u, v in block)
        assert len({frozenset(p) for p in block}) == len(block)
    assert 0 in edges  # a bond-free molecule exercises the zero-edge path
    assert sorted(split["train"] + split["valid"] + split["test"]) == list(range(len(nodes)))
    for idx in split.values():
        assert {labels[i] for i in idx} == {0, 1}


def test_inverse_edges_interleaved_and_collate_offsets() -> None:
    raw = {  # graphs: a 3-atom chain, a lone atom, a 2-atom molecule
        "edge": np.array([[0, 1], [1, 2], [0, 1]]),
        "node_feat": np.arange(6 * 9).reshape(6, 9) % 2,
        "edge_feat": np.array([[1, 0, 0], [2, 0, 1], [3, 1, 0]]),
        "num_nodes": np.array([3, 1, 2]),
        "num_edges": np.array([2, 0, 1]),
    }
    arrays = P.select_graphs(raw, np.array([2, 0, 1]))  # out of order on purpose
    # OGB's read_csv_graph_raw(add_inverse_edge=True): (u,v),(v,u) interleaved, feats repeated
    assert arrays["edge_index"].tolist() == [[0, 1, 0, 1, 1, 2], [1, 0, 1, 0, 2, 1]]
    assert arrays["edge_attr"][:, 0].tolist() == [3, 3, 1, 1, 2, 2]
    assert arrays["num_nodes"].tolist() == [2, 3, 1]
    assert arrays["num_edges"].tolist() == [2, 4, 0]
    assert arrays["graph_index"].tolist() == [2, 0, 1]
    graphs = P.unpack_graphs({**arrays, "y": np.array([[1], [0], [1]])})
    batch = P.collate_graphs(graphs)
    assert batch.num_graphs == 3
    assert batch.batch.tolist() == [0, 0, 1, 1, 1, 2]
    assert batch.edge_index.tolist() == [[0, 1, 2, 3, 3, 4], [1, 0, 3, 2, 4, 3]]
    assert batch.x.dtype == batch.edge_index.dtype == torch.int64
    assert batch.y.tolist() == [[1.0], [0.0], [1.0]]
    alone = P.collate_graphs([graphs[2]])
    assert alone.edge_index.shape == (2, 0) and alone.edge_attr.shape == (0, 3)


# ------------------------------------------------------------------------------------------
# The whole pipeline: prepare -> workspace -> smoke training -> official evaluation
# ------------------------------------------------------------------------------------------

ORACLE = """
    import torch
    from torch import nn


    class Sulphur(nn.Module):
        # The synthetic generator gives every active molecule a sulphur (feature 15) and
        # no inactive one, so counting sulphurs ranks the test graphs perfectly.
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, data):
            hits = (data.x[:, 0] == 15).float()
            counts = torch.zeros(data.num_graphs, device=hits.device).index_add_(
                0, data.batch, hits)
            return (self.scale * counts).reshape(-1, 1)


    def build_model(config):
        return Sulphur()
    """

THIEF = """
    import numpy as np
    import torch
    from torch import nn


    class Thief(nn.Module):
        # Reads the held-out labels while predicting and returns them as scores.
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, data):
            labels = torch.as_tensor(np.load(LABELS), dtype=torch.float32)
            return (self.scale * labels).reshape(-1, 1)


    def build_model(config):
        return Thief()
    """


@pytest.fixture(scope="module")
def pipeline(smoke_run: Callable[..., Any]) -> SimpleNamespace:
    """The shared smoke run (synthetic prepare -> workspace -> train.py), probe checkpoints,
    and the official evaluations of all of them, run in parallel (two cores, half the time)."""
    return probe_pipeline(TASK, smoke_run(TASK), ORACLE, THIEF)


def test_smoke_training_writes_a_contract_checkpoint(pipeline: SimpleNamespace) -> None:
    ckpt = torch.load(pipeline.checkpoint, weights_only=True)
    assert (ckpt["format"], ckpt["task"], ckpt["metric"]) == ("onegc-ckpt-1", TASK, "rocauc")
    assert ckpt["script"] == "train.py"
    assert 0.0 <= ckpt["self_reported_score"] <= 1.0
    assert ckpt["config"]["num_layers"] == 5 and ckpt["config"]["hidden"] == 300


def test_official_evaluation_of_the_baseline(pipeline: SimpleNamespace) -> None:
    result = pipeline.results["baseline"]
    assert "error" not in result, result
    assert (result["task"], result["metric"], result["split"]) == (TASK, "rocauc", "test")
    assert math.isfinite(result["value"]) and 0.0 <= result["value"] <= 1.0


def test_official_evaluation_scores_against_heldout_labels(pipeline: SimpleNamespace) -> None:
    # a perfect ranking scores exactly 1: labels and predictions stay aligned through the
    # child process, the batching and the trusted scorer
    result = pipeline.results["oracle"]
    assert result["value"] == 1.0, result


def test_orig_mod_prefix_is_classified(pipeline: SimpleNamespace) -> None:
    assert pipeline.results["orig_mod"]["error"] == "orig_mod_prefix", pipeline.results


@pytest.mark.skipif(os.geteuid() != 0, reason="label isolation needs root (uid switch)")
def test_model_code_cannot_read_the_test_labels(pipeline: SimpleNamespace) -> None:
    heldout = pipeline.prepared.heldout_dir
    assert heldout.stat().st_mode & 0o077 == 0  # trusted side: nobody else reads it
    assert pipeline.labels.stat().st_mode & 0o077 == 0
    assert np.load(pipeline.labels).shape == (8, 1)  # positive control: root here can read it
    result = pipeline.results["thief"]
    assert result.get("error") == "predict_error", result
    assert "Error" in result["detail"]  # PermissionError / FileNotFoundError from np.load


def test_heldout_split_never_reaches_the_workspace(pipeline: SimpleNamespace) -> None:
    heldout = pipeline.prepared.heldout_dir
    secret = {sha256_file(p) for p in heldout.iterdir()}
    files = [p for p in pipeline.workspace.rglob("*") if p.is_file()]
    assert files and not any(sha256_file(p) in secret for p in files)
    assert not any("test" in p.name for p in files if p.suffix in (".npz", ".npy"))
    test_index = set(np.load(heldout / "test_index.npy").tolist())
    seen = 0
    for name in ("train.npz", "valid.npz"):
        with np.load(pipeline.workspace / "data" / name) as z:
            assert not test_index & set(z["graph_index"].tolist())
            seen += len(z["graph_index"])
    assert seen + len(test_index) == 48  # the synthetic set: 32 / 8 / 8


def test_prepare_is_idempotent(pipeline: SimpleNamespace) -> None:
    agent = pipeline.prepared.agent_dir / "train.npz"
    before = agent.stat().st_mtime_ns
    again = P.prepare(pipeline.prepared.data_dir, synthetic=True, source_dir=None)
    assert again["files"] == pipeline.prepared.files
    assert agent.stat().st_mtime_ns == before
    with pytest.raises(SystemExit, match="synthetic t4"):  # never mix real into synthetic
        P.prepare(pipeline.prepared.data_dir, synthetic=False, source_dir=None)


def test_real_mode_rejects_a_non_canonical_archive(tmp_path: Path) -> None:
    """--source-dir with something that is not OGB's 41,127-graph hiv.zip is refused."""
    src = tmp_path / "src"
    P.write_synthetic_source(src / "hiv.zip")
    with pytest.raises(SystemExit, match="not the canonical ogbg-molhiv"):
        P.prepare(tmp_path / "data", synthetic=False, source_dir=src)
    assert not (tmp_path / "data" / "prepared.json").exists()


CONSTANT = """
    import torch


    class Constant(torch.nn.Module):
        def forward(self, data):
            return torch.zeros(data.num_graphs, 1)


    def build_model(config):
        return Constant()
    """


def test_real_molhiv_anchors(
    tmp_path: Path,
    smoke_run: Callable[..., Any],
    make_variant: Callable[..., Path],
    real_data: Callable[..., Path],
) -> None:
    real_data(TASK, "hiv.zip")
    prepared = registry.prepare_data(TASK, tmp_path / "data")
    assert not prepared.synthetic
    sizes = {}
    for name in ("train", "valid"):
        with np.load(prepared.agent_dir / f"{name}.npz") as z:
            sizes[name] = len(z["num_nodes"])
    labels = np.load(prepared.heldout_dir / "test_labels.npy")
    sizes["test"] = len(labels)
    assert sizes == {"train": 32_901, "valid": 4_113, "test": 4_113}
    assert 0.02 < labels.mean() < 0.05  # about 3.5% actives
    # a constant score ties every pair: exactly 0.5 through the official evaluation
    run = smoke_run(TASK)
    ckpt = make_variant(run, "run_constant.py", CONSTANT, state_dict={})
    assert registry.evaluate(TASK, ckpt, run.workspace, prepared.data_dir)["value"] == 0.5
