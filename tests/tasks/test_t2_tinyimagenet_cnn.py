"""T2 (TinyImageNet-200): synthetic archive -> real preparation -> smoke training -> official
evaluation through the registry, plus the conventions the metric depends on."""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from onegc.tasks import registry
from tests.tasks.conftest import load_task_file, prepare_as

TASK = "t2"
TASK_DIR = registry.get_task(TASK).dir


prep = load_task_file("t2_prepare", TASK_DIR / "prepare.py")


def test_synthetic_archive_has_the_official_layout(tmp_path: Path) -> None:
    path = prep.write_synthetic_archive(tmp_path / prep.ARCHIVE)
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        wnids = zf.read("tiny-imagenet-200/wnids.txt").decode().split()
        ann = zf.read("tiny-imagenet-200/val/val_annotations.txt").decode().splitlines()
        modes = {Image.open(zf.open(n)).mode for n in names if n.endswith(".JPEG")}
    assert wnids != sorted(wnids)  # the reader must sort, not trust the file order
    for w in wnids:
        assert f"tiny-imagenet-200/train/{w}/images/{w}_0.JPEG" in names
        assert f"tiny-imagenet-200/train/{w}/{w}_boxes.txt" in names
    assert "tiny-imagenet-200/words.txt" in names
    assert "tiny-imagenet-200/test/images/test_0.JPEG" in names
    assert all(len(line.split("\t")) == 6 for line in ann)
    assert modes == {"RGB", "L"}  # one grayscale file, as in the real set
    assert path.stat().st_size < 40_000


def test_preparation_pins_classes_order_and_trusted_labels(smoke_run) -> None:
    run = smoke_run(TASK)
    data = run.prepared.data_dir
    rows = (data / "agent/classes.tsv").read_text().splitlines()
    classes = [line.split("\t")[1] for line in rows]
    assert classes == sorted(classes)
    x, y = prep.load_split("val", data / "agent")
    with zipfile.ZipFile(data / "source" / prep.ARCHIVE) as zf:
        ann = zf.read("tiny-imagenet-200/val/val_annotations.txt").decode().splitlines()
    by_k = sorted((int(c[0][4:-5]), classes.index(c[1])) for c in (a.split("\t") for a in ann))
    assert y.tolist() == [c for _, c in by_k]  # val ordered by image number
    assert x.shape == (len(by_k), 64, 64, 3) and x.dtype == np.uint8
    tx, ty = prep.load_split("train", data / "agent")
    assert tx.shape == (12, 64, 64, 3) and sorted(ty.tolist()) == ty.tolist()
    assert np.array_equal(np.load(data / "eval/labels.npy"), y)
    if os.geteuid() == 0:
        assert (data / "eval").stat().st_mode & 0o077 == 0  # trusted side: nobody else reads it
        assert (data / "eval/labels.npy").stat().st_mode & 0o077 == 0
    assert set(run.prepared.files) >= {"agent/val_x.npy", "eval/labels.npy"}
    mtime = (data / "agent/train_x.npy").stat().st_mtime_ns
    prep.prepare(data, synthetic=True)  # idempotent: nothing rewritten
    assert (data / "agent/train_x.npy").stat().st_mtime_ns == mtime
    assert not (run.workspace / "data" / "eval").exists()


def test_smoke_checkpoint_scores_through_isolated_eval(smoke_run) -> None:
    run = smoke_run(TASK)
    result = registry.evaluate(TASK, run.checkpoint, run.workspace, run.prepared.data_dir)
    assert "error" not in result, result
    assert result["metric"] == "top1" and result["split"] == "validation"
    assert math.isfinite(result["value"]) and 0.0 <= result["value"] <= 1.0
    if os.geteuid() == 0:
        assert result["isolation"].startswith("uid=")


def test_model_cannot_read_validation_labels(smoke_run, labels_unreachable) -> None:
    run = smoke_run(TASK)
    labels_unreachable(TASK, run, run.prepared.data_dir / "eval" / "labels.npy")


def test_orig_mod_prefix_is_classified(smoke_run, tmp_path: Path) -> None:
    """A torch.compile'd model saved as is (paper Appendix C) fails with a named reason; the
    in-process load runs the same taskkit code the isolated child runs."""
    run = smoke_run(TASK)
    ckpt = torch.load(run.checkpoint, weights_only=True)
    ckpt["state_dict"] = {f"_orig_mod.{k}": v for k, v in ckpt["state_dict"].items()}
    bad = tmp_path / "compiled.pt"
    torch.save(ckpt, bad)
    with prepare_as(prep), pytest.raises(prep.EvalFailure) as info:
        prep.taskkit.load_model(bad, run.workspace)
    assert info.value.kind == "orig_mod_prefix"
    with prepare_as(prep):  # the untouched checkpoint loads
        assert isinstance(prep.taskkit.load_model(run.checkpoint, run.workspace), torch.nn.Module)


def test_top1_counts_every_image() -> None:
    labels = np.array([0, 1, 2, 3, 4])
    assert prep.top1(np.array([0, 1, 2, 0, 0]), labels) == pytest.approx(0.6)
    with pytest.raises(prep.EvalFailure):
        prep.top1(np.array([0, 1, 2, 3]), labels)  # a dropped last batch is an error
    with pytest.raises(prep.EvalFailure):
        prep.top1(np.array([0.0, 1, 2, 3, 4]), labels)


def test_baseline_architecture_matches_the_paper() -> None:
    train = load_task_file("t2_train", TASK_DIR / "train.py", prepare=prep)
    model = train.build_model(train.CONFIG)
    convs = [
        m.out_channels
        for m in model.stages.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert sorted(set(convs)) == [64, 128, 256, 512]
    out = model.eval()(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 200)
    gen = torch.Generator().manual_seed(0)
    aug = train.augment(torch.full((4, 64, 64, 3), 255, dtype=torch.uint8), gen)
    assert aug.shape == (4, 3, 64, 64)  # padded crop keeps the size
