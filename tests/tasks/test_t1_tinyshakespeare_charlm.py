"""T1 TinyShakespeare: synthetic pipeline end to end, isolation, anchors on the real file."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from onegc.tasks import registry

TASK = "t1"

# A parameter-free uniform model: its bpb is exactly log2(vocab) whatever the text.
UNIFORM = """
    import torch

    class Uniform(torch.nn.Module):
        def forward(self, idx):
            return torch.zeros(*idx.shape, 65)

    def build_model(config):
        return Uniform()
    """


def test_smoke_pipeline_scores_validation(smoke_run) -> None:
    run = smoke_run(TASK)
    result = registry.evaluate(TASK, run.checkpoint, run.workspace, run.prepared.data_dir)
    assert result["metric"] == "val_bpb" and result["split"] == "validation", result
    # An almost untrained model sits near the uniform 6.02 bpb; far above means broken.
    assert math.isfinite(result["value"]) and 0.0 < result["value"] < 8.0, result


def test_model_cannot_read_eval_labels(smoke_run, labels_unreachable) -> None:
    run = smoke_run(TASK)
    labels_unreachable(TASK, run, run.prepared.data_dir / "eval" / "labels.npy")


def test_uniform_model_scores_log2_vocab(smoke_run, make_variant) -> None:
    run = smoke_run(TASK)
    ckpt = make_variant(run, "run_uniform.py", UNIFORM, state_dict={})
    result = registry.evaluate(TASK, ckpt, run.workspace, run.prepared.data_dir)
    assert result["value"] == pytest.approx(math.log2(65), rel=1e-9), result


def test_eval_scores_every_target_once(task_prepare) -> None:
    prep = task_prepare(TASK)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 65, size=3 * prep.EVAL_BLOCK + 17)

    class Probe:  # records the windows the official predict function asks for
        seen: list[int] = []

        def parameters(self):
            return iter(())

        def __call__(self, x):
            import torch

            Probe.seen += [int(t) for t in x.flatten()]
            return torch.zeros(*x.shape, 65)

    logits = prep.predict_logits(Probe(), {"tokens": tokens})
    assert logits.shape == (len(tokens), 65)
    assert Probe.seen == tokens.tolist()  # every position exactly once, in order


def test_real_split_and_vocab(tmp_path, real_data) -> None:
    real_data(TASK, "input.txt")
    prepared = registry.prepare_data(TASK, tmp_path / "data")
    assert not prepared.synthetic
    agent = prepared.agent_dir
    train = np.fromfile(agent / "train.bin", dtype=np.uint16)
    val = np.fromfile(agent / "val.bin", dtype=np.uint16)
    meta = pickle.loads((agent / "meta.pkl").read_bytes())
    assert (len(train), len(val)) == (1_003_854, 111_540)
    assert meta["vocab_size"] == 65
    assert "".join(meta["itos"][int(i)] for i in val[:16]) == "?\n\nGREMIO:\nGood "
    assert len(np.load(prepared.data_dir / "eval" / "labels.npy")) == 111_539
