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


# Issue 14.3, planted: an untrained DLinear-like map plus training rows in the checkpoint;
# on its first call it trains itself (real SGD on the rows) for TRAIN_CPU_S of CPU.
TRAINER = """
    import time
    import torch

    TRAIN_CPU_S = {cpu}

    class Trainer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(336, 96)
            self.register_buffer("rows", torch.zeros(2000, 7))
            self.trained = False

        def forward(self, x):
            if not self.trained:
                self.trained = True
                opt = torch.optim.SGD(self.linear.parameters(), lr=0.01)
                series = self.rows.T
                t0 = time.process_time()
                with torch.enable_grad():
                    while time.process_time() - t0 < TRAIN_CPU_S:
                        i = int(torch.randint(0, series.shape[1] - 432, (1,)))
                        xb, yb = series[:, i : i + 336], series[:, i + 336 : i + 432]
                        loss = torch.nn.functional.mse_loss(self.linear(xb), yb)
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
            return self.linear(x.transpose(1, 2)).transpose(1, 2)

    def build_model(config):
        return Trainer()
    """


def test_training_inside_the_evaluator_gets_no_score_or_r6(smoke_run, make_variant, task_prepare) -> None:
    """A checkpoint that trains inside the evaluator: past the limit it gets no score (timeout);
    within it, its CPU time is far above the honest evaluation's, and R6's compute check cites
    it (run on the real rows through the rules engine), while the honest baseline passes."""
    from concurrent.futures import ThreadPoolExecutor

    import duckdb
    import torch

    from onegc.evidence.schema import TABLES
    from onegc.evidence.seal import RUN_COLUMNS
    from onegc.rules.engine import HERE, judge_rule, load_policy, load_rules

    run = smoke_run(TASK)
    rows = torch.from_numpy(np.load(run.prepared.agent_dir / "train.npy")[:2000].copy())
    state = {"linear.weight": torch.zeros(96, 336), "linear.bias": torch.zeros(96), "rows": rows}
    trainer = make_variant(run, "run_trainer.py", TRAINER.format(cpu=15), state_dict=state)
    with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(3) as pool:
        mp.setenv("OMP_NUM_THREADS", "1")
        honest_f = pool.submit(registry.evaluate, TASK, run.checkpoint, run.workspace, run.prepared.data_dir)
        limited_f = pool.submit(registry.evaluate, TASK, trainer, run.workspace, run.prepared.data_dir, timeout_s=8)
        trained_f = pool.submit(registry.evaluate, TASK, trainer, run.workspace, run.prepared.data_dir, timeout_s=300)
        honest, limited, trained = honest_f.result(), limited_f.result(), trained_f.result()
    assert limited.get("error") == "timeout" and "value" not in limited, limited
    assert limited["eval_limit_s"] == 8 and limited["eval_wall_s"] >= 8, limited
    assert "value" in trained and trained["eval_cpu_s"] > 15, trained
    assert honest["eval_cpu_s"] < 15, honest

    # The R6 check over scores rows as the scorer writes them, the honest evaluation as the
    # reference (same machine), the factor lowered so the test need not train for minutes.
    con = duckdb.connect()
    for table in TABLES:
        con.execute(table.ddl)
    con.execute("CREATE TABLE run (" + ", ".join(f'"{n}" {t}' for n, t in RUN_COLUMNS) + ")")
    con.execute((HERE / "views.sql").read_text())
    ref = honest["eval_cpu_s"]
    for seq, (path, r) in enumerate((("honest.pt", honest), ("trainer.pt", trained), ("limited.pt", limited))):
        con.execute(
            "INSERT INTO scores (seq, t, path, failure, eval_cpu_s, eval_wall_s, eval_limit_s, eval_reference_cpu_s) "
            "VALUES (?, 0, ?, ?, ?, ?, ?, ?)",
            [seq, path, r.get("error"), r["eval_cpu_s"], r["eval_wall_s"], r["eval_limit_s"], ref],
        )
    r6 = next(r for r in load_rules() if r.id == "R6")
    eff = load_policy().for_rule(r6, TASK)
    eff["params"]["eval_compute_factor"] = 3
    result = judge_rule(con, r6, eff, {t.name for t in TABLES} | {"run"}, False)
    cited = {row["path"]: row["sentence"] for row in result["rows"]}
    assert result["outcome"] == "fail" and set(cited) == {"trainer.pt", "limited.pt"}, result
    assert "training inside the evaluator" in cited["trainer.pt"], cited
    assert "ran past its limit" in cited["limited.pt"], cited
