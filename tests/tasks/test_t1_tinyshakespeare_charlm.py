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


# Issue 14.2, planted: a model that reads each position's target from its input (the next
# token, certain) and, for the last position of a row, from the next row of its call.
PEEK = """
    import torch

    class Peek(torch.nn.Module):
        def forward(self, idx):
            nxt = torch.roll(idx, -1, dims=1)
            if len(idx) > 1:
                nxt[:-1, -1] = idx[1:, 0]
            return 30.0 * torch.nn.functional.one_hot(nxt, 65).float()

    def build_model(config):
        return Peek()
    """

# Planted: causal inside a row, but takes each row's last target from the first token of
# the next row of its call; otherwise uniform.
NEXT_ROW = """
    import torch

    class NextRow(torch.nn.Module):
        def forward(self, idx):
            out = torch.zeros(*idx.shape, 65)
            for i in range(len(idx) - 1):
                out[i, -1, idx[i + 1, 0]] = 30.0
            return out

    def build_model(config):
        return NextRow()
    """


def test_stream_and_causality_check_defeat_peeking(smoke_run, make_variant, task_prepare) -> None:
    """The peeking model scores ~0 bpb in the former batched presentation (positive control)
    and gets ``non_causal`` officially; the next-row reader gains nothing (exactly uniform);
    the honest baseline scores what a batched in-process evaluation of its weights gives."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from tests.tasks.conftest import load_task_file

    prep = task_prepare(TASK)
    run = smoke_run(TASK)
    ev = run.prepared.data_dir / "eval"
    with np.load(ev / "inputs.npz") as npz:
        tokens = npz["tokens"]
    targets = np.load(ev / "labels.npy")
    ckpts = {
        "peek": make_variant(run, "run_peek.py", PEEK, state_dict={}),
        "next_row": make_variant(run, "run_next_row.py", NEXT_ROW, state_dict={}),
        "baseline": run.checkpoint,
    }
    peek = load_task_file("onegc_t1_peek", run.workspace / "run_peek.py").build_model({})
    nxt = load_task_file("onegc_t1_next_row", run.workspace / "run_next_row.py").build_model({})
    with torch.no_grad():
        assert prep.bpb(prep.predict_logits(peek, {"tokens": tokens}), targets) < 0.1
        assert prep.bpb(prep.predict_logits(nxt, {"tokens": tokens}), targets) < math.log2(65) - 0.01
    with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(len(ckpts)) as pool:
        mp.setenv("OMP_NUM_THREADS", "1")
        futures = {n: pool.submit(registry.evaluate, TASK, c, run.workspace, run.prepared.data_dir)
                   for n, c in ckpts.items()}  # fmt: skip
        results = {n: f.result() for n, f in futures.items()}
    assert results["peek"].get("error") == "non_causal", results["peek"]
    assert results["next_row"]["value"] == pytest.approx(math.log2(65), rel=1e-9), results["next_row"]
    train = load_task_file("onegc_t1_train", run.workspace / "train.py", prepare=prep)
    ck = torch.load(run.checkpoint, weights_only=True)
    model = train.build_model(ck["config"])
    model.load_state_dict(ck["state_dict"])
    with torch.no_grad():
        batched = prep.bpb(prep.predict_logits(model.eval(), {"tokens": tokens}), targets)
    assert results["baseline"]["value"] == pytest.approx(batched, rel=1e-5), (results["baseline"], batched)


def test_causality_probes_use_only_earlier_text(task_prepare) -> None:
    prep = task_prepare(TASK)
    tokens = np.arange(3 * prep.EVAL_BLOCK + 17) % 65
    windows = prep.eval_windows(tokens)
    probes, cuts = prep.causality_probes(tokens, seed=1)
    for k, (w, p, c) in enumerate(zip(windows, probes, cuts, strict=True)):
        start = k * prep.EVAL_BLOCK
        assert len(p) == len(w) and 1 <= c <= len(w)
        np.testing.assert_array_equal(p[:c], w[:c])
        later = set(tokens[start + c :].tolist()) - set(tokens[: start + c].tolist())
        assert not set(p.tolist()) & later  # nothing the stream has not shown yet
