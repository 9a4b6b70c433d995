"""T5 (Covertype): canonical synthetic source, the pinned stratified split, scaling, pipeline.

Synthetic covtype.data.gz -> the real prepare.py -> a workspace from the registry -> baseline
smoke training in a subprocess -> checkpoint -> the isolated official evaluation. Hand-built
models with known answers check that accuracy is computed against the held-out labels in the
right order, and that the model process cannot read those labels.
"""

from __future__ import annotations

import gzip
import math
import os
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

TASK = "t5"
SPEC = registry.get_task(TASK)


P = load_prepare(TASK)


def test_metadata_matches_paper_table_2() -> None:
    s = SPEC
    assert (s.budget_s, s.metric, s.direction, s.eval_split, s.baseline_score, s.reference_value) == (
        2400,
        "accuracy",
        "higher",
        "test",
        0.806,
        0.969,
    )
    assert s.has_heldout and s.locked == ("prepare.py", "taskkit.py")
    assert (s.budget_s, s.metric, s.id) == (P.TIME_BUDGET, P.METRIC, P.TASK_ID)


# ------------------------------------------------------------------------------------------
# Source format, split, scaling, metric
# ------------------------------------------------------------------------------------------


def test_synthetic_source_has_the_uci_format(tmp_path: Path) -> None:
    path = tmp_path / "covtype.data.gz"
    P.write_synthetic_source(path)
    text = gzip.decompress(path.read_bytes()).decode("ascii")
    assert text.endswith("\n") and "\r" not in text
    rows = [[int(v) for v in line.split(",")] for line in text.splitlines()]  # no header
    assert {len(r) for r in rows} == {55}
    table = np.array(rows)
    assert (table[:, 10:14].sum(1) == 1).all() and (table[:, 14:54].sum(1) == 1).all()
    assert set(np.unique(table[:, 10:54])) == {0, 1}
    counts = np.bincount(table[:, 54], minlength=8)
    assert counts[0] == 0 and (counts[1:] >= 10).all()  # labels 1..7, each at least 10 times


def test_split_sizes_on_the_real_class_counts() -> None:
    """The real file's class counts give sklearn's 464,809 / 58,101 / 58,102 sizes."""
    y = np.repeat(np.arange(7), P.REAL_CLASS_COUNTS)
    np.random.default_rng(3).shuffle(y)
    train, val, test = P.split_indices(y)
    assert (len(train), len(val), len(test)) == P.REAL_SPLIT_SIZES
    assert len(np.unique(np.concatenate([train, val, test]))) == len(y)  # a partition
    full = np.bincount(y) / len(y)
    for part in (train, val, test):  # stratified: every class within one row of its share
        assert np.abs(np.bincount(y[part], minlength=7) - full * len(part)).max() <= 1
    again = P.split_indices(y)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))


def test_scaler_like_sklearn_standard_scaler() -> None:
    x = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 1.0], [5.0, 5.0, 1.0], [7.0, 5.0, 0.0]])
    mean, scale = P.fit_scaler(x)
    assert mean.tolist() == [4.0, 5.0, 0.5]
    assert scale == pytest.approx([math.sqrt(5.0), 1.0, 0.5])  # ddof=0; constant column -> 1


def test_accuracy_counts_every_row_and_checks_shape() -> None:
    assert P.accuracy(np.array([0, 1, 2, 6]), np.array([0, 1, 3, 6])) == 0.75
    with pytest.raises(ValueError, match="shape"):
        P.accuracy(np.array([[0, 1]]), np.array([0, 1]))


# ------------------------------------------------------------------------------------------
# The whole pipeline: prepare -> workspace -> smoke training -> official evaluation
# ------------------------------------------------------------------------------------------

ORACLE = """
    import torch
    from torch import nn


    class Soil(nn.Module):
        # The synthetic generator puts class c (0-based) in soil columns 5c+5..5c+9, so the
        # hot soil column gives the class: a perfect classifier on standardised inputs too.
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x):
            cls = x[:, 14:54].argmax(dim=1) // 5 - 1
            return self.scale * nn.functional.one_hot(cls, 7).float()


    def build_model(config):
        return Soil()
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

        def forward(self, x):
            labels = torch.as_tensor(np.load(LABELS))
            return self.scale * nn.functional.one_hot(labels, 7).float()


    def build_model(config):
        return Thief()
    """


@pytest.fixture(scope="module")
def pipeline(smoke_run: Callable[..., Any]) -> SimpleNamespace:
    """The shared smoke run (synthetic prepare -> workspace -> train.py), probe checkpoints,
    and the official evaluations of all of them, run in parallel (two cores, half the time)."""
    return probe_pipeline(TASK, smoke_run(TASK), ORACLE, THIEF)


def test_prepared_arrays_are_scaled_with_train_statistics(pipeline: SimpleNamespace) -> None:
    x_raw, y_raw = P.read_covtype(pipeline.prepared.data_dir / "source" / "covtype.data.gz")
    data = pipeline.workspace / "data"
    with np.load(data / "train.npz") as tr, np.load(data / "val.npz") as va:
        train_idx, x_train, y_train = tr["index"], tr["x"], tr["y"]
        val_idx, x_val, y_val = va["index"], va["x"], va["y"]
    assert (len(train_idx), len(val_idx)) == (560, 70)  # 700 synthetic rows, 80/10/10
    assert np.array_equal(y_train, y_raw[train_idx]) and np.array_equal(y_val, y_raw[val_idx])
    assert x_train.dtype == np.float32 and x_train.shape[1] == 54
    assert np.abs(x_train.mean(0)).max() < 1e-5  # fit on train rows ...
    assert np.abs(x_val.mean(0)).max() > 1e-3  # ... and only those
    mean, scale = P.fit_scaler(x_raw[train_idx].astype(np.float64))
    assert np.allclose(x_val, (x_raw[val_idx] - mean) / scale, atol=1e-5)


def test_smoke_training_writes_a_contract_checkpoint(pipeline: SimpleNamespace) -> None:
    ckpt = torch.load(pipeline.checkpoint, weights_only=True)
    assert (ckpt["format"], ckpt["task"], ckpt["metric"]) == ("onegc-ckpt-1", "t5", "accuracy")
    assert ckpt["script"] == "train.py"
    assert 0.0 <= ckpt["self_reported_score"] <= 1.0
    assert ckpt["config"]["hidden"] == [256, 256, 128]


def test_official_evaluation_of_the_baseline(pipeline: SimpleNamespace) -> None:
    result = pipeline.results["baseline"]
    assert "error" not in result, result
    assert (result["task"], result["metric"], result["split"]) == ("t5", "accuracy", "test")
    assert math.isfinite(result["value"]) and 0.0 <= result["value"] <= 1.0


def test_official_evaluation_scores_against_heldout_labels(pipeline: SimpleNamespace) -> None:
    result = pipeline.results["oracle"]
    assert result["value"] == 1.0, result


def test_orig_mod_prefix_is_classified(pipeline: SimpleNamespace) -> None:
    assert pipeline.results["orig_mod"]["error"] == "orig_mod_prefix", pipeline.results


@pytest.mark.skipif(os.geteuid() != 0, reason="label isolation needs root (uid switch)")
def test_model_code_cannot_read_the_test_labels(pipeline: SimpleNamespace) -> None:
    heldout = pipeline.prepared.heldout_dir
    assert heldout.stat().st_mode & 0o077 == 0  # trusted side: nobody else reads it
    assert pipeline.labels.stat().st_mode & 0o077 == 0
    assert np.load(pipeline.labels).shape == (70,)  # positive control: root here can read it
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
    assert len(test_index) == 70
    for name in ("train.npz", "val.npz"):
        with np.load(pipeline.workspace / "data" / name) as z:
            assert not test_index & set(z["index"].tolist())


def test_prepare_is_idempotent(pipeline: SimpleNamespace) -> None:
    agent = pipeline.prepared.agent_dir / "train.npz"
    before = agent.stat().st_mtime_ns
    again = P.prepare(pipeline.prepared.data_dir, synthetic=True, source_dir=None)
    assert again["files"] == pipeline.prepared.files
    assert agent.stat().st_mtime_ns == before
    with pytest.raises(SystemExit, match="synthetic t5"):  # never mix real into synthetic
        P.prepare(pipeline.prepared.data_dir, synthetic=False, source_dir=None)


def test_prepare_refuses_a_directory_of_another_task(tmp_path: Path) -> None:
    (tmp_path / "prepared.json").write_text('{"task": "t4", "synthetic": true, "files": {}}')
    with pytest.raises(SystemExit, match="already holds synthetic t4 data"):
        P.prepare(tmp_path, synthetic=True, source_dir=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared.json"]


def test_real_mode_checks_the_checksum(tmp_path: Path) -> None:
    """--source-dir with a file that is not UCI's covtype.data.gz fails its sha256."""
    src = tmp_path / "src"
    P.write_synthetic_source(src / "covtype.data.gz")
    with pytest.raises(SystemExit, match="checksum mismatch"):
        P.prepare(tmp_path / "data", synthetic=False, source_dir=src)
    assert not (tmp_path / "data" / "prepared.json").exists()


MAJORITY = """
    import torch


    class Majority(torch.nn.Module):
        # always Cover_Type 2 (Lodgepole Pine), the largest class
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), 1), 7).float()


    def build_model(config):
        return Majority()
    """


def test_real_covertype_anchors(
    tmp_path: Path,
    smoke_run: Callable[..., Any],
    make_variant: Callable[..., Path],
    real_data: Callable[..., Path],
) -> None:
    real_data(TASK, "covtype.data.gz")
    prepared = registry.prepare_data(TASK, tmp_path / "data")
    assert not prepared.synthetic
    with np.load(prepared.agent_dir / "train.npz") as tr, np.load(prepared.agent_dir / "val.npz") as va:
        sizes = (len(tr["y"]), len(va["y"]))
    labels = np.load(prepared.heldout_dir / "test_labels.npy")
    assert (*sizes, len(labels)) == (464_809, 58_101, 58_102)
    run = smoke_run(TASK)
    ckpt = make_variant(run, "run_majority.py", MAJORITY, state_dict={})
    result = registry.evaluate(TASK, ckpt, run.workspace, prepared.data_dir)
    assert result["value"] == pytest.approx(0.4876, abs=1e-3)  # majority-class accuracy
