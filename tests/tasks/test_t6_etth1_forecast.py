"""T6 ETTh1: synthetic pipeline end to end, isolation, and anchors on the real file."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onegc.tasks import registry

TASK = "t6"

# A parameter-free "model" that repeats the last observed value over the horizon: its
# official score on the real test windows is a published anchor (DLinear paper: 1.295).
REPEAT_LAST = """
    import torch

    class RepeatLast(torch.nn.Module):
        def forward(self, x):
            return x[:, -1:, :].repeat(1, 96, 1)

    def build_model(config):
        return RepeatLast()
    """


def test_smoke_pipeline_scores_heldout_test(smoke_run) -> None:
    run = smoke_run(TASK)
    result = registry.evaluate(TASK, run.checkpoint, run.workspace, run.prepared.data_dir)
    assert result["metric"] == "mse" and result["split"] == "test", result
    assert math.isfinite(result["value"]) and 0.0 < result["value"] < 5.0, result
    assert result["isolation"].startswith("uid=65534")


def test_heldout_never_in_workspace(smoke_run) -> None:
    run = smoke_run(TASK)
    assert run.prepared.heldout_dir is not None
    assert sorted(p.name for p in (run.workspace / "data").iterdir()) == [
        "meta.json", "train.npy", "val.npy",
    ]  # fmt: skip
    assert (run.prepared.heldout_dir.stat().st_mode & 0o077) == 0  # owner-only


def test_model_cannot_read_heldout_labels(smoke_run, labels_unreachable) -> None:
    run = smoke_run(TASK)
    labels_unreachable(TASK, run, run.prepared.data_dir / "heldout" / "labels.npy")


def test_orig_mod_prefix_is_classified(smoke_run, make_variant) -> None:
    run = smoke_run(TASK)
    source = (run.workspace / "train.py").read_text()
    ckpt = make_variant(run, "run_compiled.py", source, rename=lambda k: "_orig_mod." + k)
    result = registry.evaluate(TASK, ckpt, run.workspace, run.prepared.data_dir)
    assert result["error"] == "orig_mod_prefix", result


def test_real_etth1_anchors(tmp_path, smoke_run, make_variant, task_prepare, real_data) -> None:
    real_data(TASK, "ETTh1.csv")
    prep = task_prepare(TASK)
    prepared = registry.prepare_data(TASK, tmp_path / "data")
    assert not prepared.synthetic
    labels = np.load(prepared.data_dir / "heldout" / "labels.npy")
    with np.load(prepared.data_dir / "heldout" / "inputs.npz") as npz:
        series = npz["series"]
    x, y = prep.input_windows(series), prep.target_windows(labels)
    assert len(x) == len(y) == 2785
    # The inputs of window s end right where its targets start (no gap, no overlap).
    np.testing.assert_array_equal(series[336:], labels[: len(series) - 336])
    assert prep.num_windows(len(np.load(prepared.agent_dir / "train.npy"))) == 8209
    assert prep.num_windows(len(np.load(prepared.agent_dir / "val.npy"))) == 2785
    repeat = prep.mse(np.repeat(x[:, -1:, :], 96, axis=1), y)
    assert repeat == pytest.approx(1.2944, abs=5e-4)
    # Same anchor through the official isolated evaluation of a checkpointed model.
    run = smoke_run(TASK)
    ckpt = make_variant(run, "run_repeat.py", REPEAT_LAST, state_dict={})
    result = registry.evaluate(TASK, ckpt, run.workspace, prepared.data_dir)
    assert result["value"] == pytest.approx(repeat, rel=1e-6), result
