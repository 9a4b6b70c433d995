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


# Issue 14.2: a model that looks for a later window (window j+96's first 240 rows are window
# j's last 240, its last 96 rows window j's target) among the items of its call and among
# everything it saw in earlier calls; without one it repeats the last value (honest).
LOOKAHEAD = """
    import torch

    SEEN = {}  # state kept across calls: every window this process was ever shown

    class Lookahead(torch.nn.Module):
        def forward(self, x):
            for w in x:
                SEEN[w[:240].numpy().tobytes()] = w[240:].clone()
            out = x[:, -1:, :].repeat(1, 96, 1)
            for i, w in enumerate(x):
                later = SEEN.get(w[96:].numpy().tobytes())
                if later is not None:
                    out[i] = later
            return out

    def build_model(config):
        return Lookahead()
    """

# Honest counterpart with normal stateful layers (a GRU over time, BatchNorm in eval mode).
RECURRENT = """
    import torch

    class Recurrent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.BatchNorm1d(7)
            self.gru = torch.nn.GRU(7, 16, batch_first=True)
            self.head = torch.nn.Linear(16, 96 * 7)

        def forward(self, x):
            h, _ = self.gru(self.norm(x.transpose(1, 2)).transpose(1, 2))
            return x[:, -1:, :] + 0.1 * self.head(h[:, -1]).view(-1, 96, 7)

    def build_model(config):
        torch.manual_seed(0)
        return Recurrent()
    """


def _load_script(path, name):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_streamed_windows_defeat_lookahead_and_keep_honest_scores(smoke_run, make_variant, task_prepare) -> None:
    """Planted: the lookahead model gains nothing officially (its score equals the honest
    repeat-last score), although the same model in the former batched presentation scores far
    better (positive control). Honest: the baseline and a GRU/BatchNorm model score exactly what
    a batched in-process evaluation of the same weights gives."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    prep = task_prepare(TASK)
    run = smoke_run(TASK)
    heldout = run.prepared.data_dir / "heldout"
    with np.load(heldout / "inputs.npz") as npz:
        series = npz["series"]
    y = prep.target_windows(np.load(heldout / "labels.npy"))
    x = prep.input_windows(series)
    honest_repeat = prep.mse(np.repeat(x[:, -1:, :], 96, axis=1), y)

    ckpts = {
        "lookahead": make_variant(run, "run_lookahead.py", LOOKAHEAD, state_dict={}),
        "recurrent": make_variant(run, "run_recurrent.py", RECURRENT, state_dict={}),
        "baseline": run.checkpoint,
    }
    # make_variant copies the smoke weights; give the GRU model its own initial weights.
    rec = _load_script(run.workspace / "run_recurrent.py", "onegc_t6_recurrent")
    ck = torch.load(ckpts["recurrent"], weights_only=True)
    ck["state_dict"] = rec.build_model({}).state_dict()
    torch.save(ck, ckpts["recurrent"])

    # Positive control: the former presentation (all windows, batches of 256) leaks.
    look = _load_script(run.workspace / "run_lookahead.py", "onegc_t6_lookahead").build_model({})
    with torch.no_grad():
        leaked = prep.mse(prep.predict_windows(look, {"series": series}), y)
    assert leaked < 0.5 * honest_repeat, (leaked, honest_repeat)

    with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(len(ckpts)) as pool:
        mp.setenv("OMP_NUM_THREADS", "1")
        futures = {n: pool.submit(registry.evaluate, TASK, c, run.workspace, run.prepared.data_dir)
                   for n, c in ckpts.items()}  # fmt: skip
        results = {n: f.result() for n, f in futures.items()}
    assert results["lookahead"]["value"] == pytest.approx(honest_repeat, rel=1e-6), results["lookahead"]

    for name, module in (("recurrent", rec), ("baseline", None)):
        if module is None:
            from tests.tasks.conftest import load_task_file

            module = load_task_file("onegc_t6_train", run.workspace / "train.py", prepare=prep)
        ck = torch.load(ckpts[name], weights_only=True)
        model = module.build_model(ck["config"])
        model.load_state_dict(ck["state_dict"])
        with torch.no_grad():
            batched = prep.mse(prep.predict_windows(model.eval(), {"series": series}), y)
        assert results[name]["value"] == pytest.approx(batched, rel=1e-5), (name, results[name], batched)
        for key in ("eval_wall_s", "eval_cpu_s", "eval_limit_s"):
            assert results[name][key] is not None and results[name][key] > 0, results[name]
