"""T7 AG News: synthetic pipeline end to end, isolation, anchors on the real test file."""

from __future__ import annotations

import math

import numpy as np
from onegc.tasks import registry

TASK = "t7"


def test_smoke_pipeline_scores_validation(smoke_run) -> None:
    run = smoke_run(TASK)
    result = registry.evaluate(TASK, run.checkpoint, run.workspace, run.prepared.data_dir)
    assert result["metric"] == "accuracy" and result["split"] == "validation", result
    assert math.isfinite(result["value"]) and 0.0 <= result["value"] <= 1.0, result
    assert result["value"] == round(result["value"] * 40) / 40  # 40 synthetic val rows


def test_model_cannot_read_eval_labels(smoke_run, labels_unreachable) -> None:
    run = smoke_run(TASK)
    labels_unreachable(TASK, run, run.prepared.data_dir / "eval" / "labels.npy")


def test_synthetic_csv_round_trips_quotes_and_backslashes(smoke_run, task_prepare) -> None:
    prep = task_prepare(TASK)
    run = smoke_run(TASK)
    raw = (run.prepared.data_dir / "source" / "test.csv").read_text()
    assert '""' in raw and "\\" in raw  # the quirks of the real files are exercised
    y, texts = prep.read_csv(run.prepared.data_dir / "source" / "test.csv")
    assert np.bincount(y).tolist() == [10, 10, 10, 10]
    assert all('"' in t and "\\" in t for t in texts)
    x = prep.encode(texts)
    assert x.shape == (40, 1014) and x.dtype == np.uint8
    first = texts[0]
    assert bytes(x[0, : len(first)]).decode("ascii") == first and not x[0, len(first) :].any()


def test_encoding_pins_non_ascii_and_truncation(task_prepare) -> None:
    prep = task_prepare(TASK)
    x = prep.encode(["caf\u00e9", "a" * 2000])
    assert x[0, :5].tolist() == [99, 97, 102, 127, 0]
    assert (x[1] == ord("a")).all()


def test_real_test_split_anchors(task_prepare, real_data) -> None:
    folder = real_data(TASK, "test.csv")
    prep = task_prepare(TASK)
    y, texts = prep.read_csv(folder / "test.csv")
    assert len(y) == 7600
    assert np.bincount(y).tolist() == [1900] * 4
    assert max(len(t) for t in texts) == 892
    x = prep.encode(texts)
    assert not (x == prep.NON_ASCII_ID).any()  # the test file is pure ASCII
