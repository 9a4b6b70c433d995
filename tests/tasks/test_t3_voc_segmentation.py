"""T3 (PASCAL VOC 2012): synthetic tar -> real preparation -> smoke training -> official
evaluation through the registry; the one-matrix mIoU against a hand-computed case; the
DINOv3 backbones round-tripping random weights through the real loading code."""

from __future__ import annotations

import io
import math
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from onegc.tasks import registry
from tests.tasks.conftest import load_task_file

TASK = "t3"
TASK_DIR = registry.get_task(TASK).dir


prep = load_task_file("t3_prepare", TASK_DIR / "prepare.py")
train = load_task_file("t3_train", TASK_DIR / "train.py", prepare=prep)


# --- data format -----------------------------------------------------------------------------


def test_synthetic_tar_has_the_official_layout(tmp_path: Path) -> None:
    path = prep.write_synthetic_archive(tmp_path / prep.ARCHIVE)
    voc = "VOCdevkit/VOC2012"
    with tarfile.open(path) as tf:
        names = set(tf.getnames())
        train_ids = tf.extractfile(f"{voc}/ImageSets/Segmentation/train.txt").read().split()
        masks = {n: Image.open(io.BytesIO(tf.extractfile(n).read())) for n in names if n.endswith(".png")}
    assert {f"{voc}/ImageSets/Segmentation/{s}.txt" for s in ("train", "val", "trainval")} <= names
    assert {f"{voc}/JPEGImages/{i.decode()}.jpg" for i in train_ids} <= names
    assert len(masks) == 4
    for mask in masks.values():
        assert mask.mode == "P" and mask.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
        assert set(np.unique(np.asarray(mask))) <= {0, 1, 15, 255}
        assert 255 in np.asarray(mask)
    assert path.stat().st_size < 40_000


def test_rgb_masks_are_refused() -> None:
    img, mask = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (30, 20)).save(img, "JPEG")
    Image.new("RGB", (30, 20), (128, 0, 0)).save(mask, "PNG")  # a colour rendering
    with pytest.raises(ValueError, match="palette"):
        prep._load_pair(img.getvalue(), mask.getvalue(), "x")


def test_preparation_resizes_with_nearest_masks_and_keeps_labels_trusted(smoke_run) -> None:
    run = smoke_run(TASK)
    data = run.prepared.data_dir
    x, y = prep.load_split("val", data / "agent")
    assert x.shape == (2, 224, 224, 3) and x.dtype == np.uint8
    assert y.shape == (2, 224, 224) and set(np.unique(y)) == {0, 1, 15, 255}  # no blended ids
    assert (data / "agent/val_ids.txt").read_text().split() == ["2007_000033", "2007_000042"]
    assert np.array_equal(np.load(data / "eval/labels.npy"), y)
    if os.geteuid() == 0:
        assert (data / "eval").stat().st_mode & 0o077 == 0  # trusted side: nobody else reads it
    assert not (run.workspace / "data" / "eval").exists()
    mtime = (data / "agent/train_x.npy").stat().st_mtime_ns
    prep.prepare(data, synthetic=True)  # idempotent: nothing rewritten
    assert (data / "agent/train_x.npy").stat().st_mtime_ns == mtime


# --- metric ----------------------------------------------------------------------------------


def test_miou_is_one_confusion_matrix_over_the_whole_set() -> None:
    gt = np.array([[[0, 0, 1], [1, 255, 15]], [[15, 15, 0], [255, 255, 1]]], dtype=np.uint8)
    pred = np.array(
        [[[0, 1, 1], [1, 0, 0]], [[15, 0, 0], [7, 7, 1]]], dtype=np.uint8
    )  # 7 only on void pixels
    cm = prep.confusion_matrix(pred, gt)
    expected = np.zeros((21, 21), dtype=np.int64)
    expected[0, 0], expected[0, 1], expected[1, 1] = 2, 1, 3
    expected[15, 0], expected[15, 15] = 2, 1
    assert np.array_equal(cm, expected)  # the three 255 pixels are not counted
    # IoU: class 0 = 2/(3+4-2), class 1 = 3/(3+4-3), class 15 = 1/(3+1-1); 7 has no union.
    assert prep.miou(cm) == pytest.approx((2 / 5 + 3 / 4 + 1 / 3) / 3)
    per_image = np.mean([prep.miou(prep.confusion_matrix(pred[i : i + 1], gt[i : i + 1])) for i in range(2)])
    assert per_image == pytest.approx(0.5)  # the mean of per-image mIoUs is different
    with pytest.raises(prep.EvalFailure):
        prep.confusion_matrix(np.full_like(pred, 21), gt)
    with pytest.raises(prep.EvalFailure):
        prep.confusion_matrix(pred[:1], gt)


def test_smoke_checkpoint_scores_through_isolated_eval(smoke_run) -> None:
    run = smoke_run(TASK)
    result = registry.evaluate(TASK, run.checkpoint, run.workspace, run.prepared.data_dir)
    assert "error" not in result, result
    assert result["metric"] == "miou" and result["split"] == "validation"
    assert math.isfinite(result["value"]) and 0.0 <= result["value"] <= 1.0


def test_model_cannot_read_validation_masks(smoke_run, labels_unreachable) -> None:
    run = smoke_run(TASK)
    labels_unreachable(TASK, run, run.prepared.data_dir / "eval" / "labels.npy")


# --- DINOv3 backbones ------------------------------------------------------------------------


def _random_backbone(name: str, **kw: object) -> torch.nn.Module:
    """The real architecture with random weights (a meta-device build skips the slow init;
    every tensor, buffers included, is then filled at random)."""
    with torch.device("meta"):
        model = prep.dinov3_backbone(name, **kw)
    model = model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.normal_(0.0, 0.02, generator=gen)
    return model.eval()


def _roundtrip(src: torch.nn.Module, name: str, path: Path, mutate: dict | None = None) -> None:
    """Save `src`'s weights in the official layout, load them with the real loader into an
    uninitialised model, and require identical tensors and identical outputs."""
    state = dict(src.state_dict())
    torch.save({**state, **(mutate or {})}, path)
    with torch.device("meta"):
        dst = prep.dinov3_backbone(name)
    dst = dst.to_empty(device="cpu").eval()  # garbage until the file fills every tensor
    prep.load_dinov3(dst, path)
    assert all(torch.equal(v, state[k]) for k, v in dst.state_dict().items())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(src(x), dst(x), strict=True))


def test_convnext_tiny_loads_the_official_key_layout(tmp_path: Path) -> None:
    model = _random_backbone("convnext_tiny")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["downsample_layers.0.0.weight"] == (96, 3, 4, 4)
    assert shapes["downsample_layers.3.1.weight"] == (768, 384, 2, 2)
    assert shapes["stages.2.8.pwconv1.weight"] == (1536, 384)
    assert shapes["stages.0.0.gamma"] == (96,) and shapes["norms.3.weight"] == (768,)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 27.8
    _roundtrip(model, "convnext_tiny", tmp_path / "convnext.pth")
    # a converted file without norms.3 gets it from the final norm; a wrapped dict loads too
    narrow = {"depths": (1, 1, 1, 1), "dims": (8, 16, 32, 64)}
    small = _random_backbone("convnext_tiny", **narrow)
    state = {k: v for k, v in small.state_dict().items() if not k.startswith("norms.")}
    torch.save({"model": state}, tmp_path / "converted.pth")
    fresh = prep.dinov3_backbone("convnext_tiny", **narrow)
    prep.load_dinov3(fresh, tmp_path / "converted.pth")
    assert torch.equal(fresh.norms[3].weight, small.norm.weight)


def test_vits16_loads_the_official_key_layout(tmp_path: Path) -> None:
    model = _random_backbone("vits16")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["storage_tokens"] == (1, 4, 384) and shapes["rope_embed.periods"] == (16,)
    assert shapes["blocks.11.attn.qkv.bias_mask"] == (1152,)
    assert shapes["blocks.0.ls1.gamma"] == (384,) and shapes["mask_token"] == (1, 384)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 21.6
    _roundtrip(
        model,
        "vits16",
        tmp_path / "vit.pth",
        mutate={"local_cls_norm.weight": torch.ones(384), "local_cls_norm.bias": torch.zeros(384)},
    )  # pretraining-only extra
    with torch.no_grad():
        feats = model(torch.zeros(1, 3, 64, 48))  # non-square grids work (RoPE per axis)
    assert [tuple(f.shape) for f in feats] == [(1, 384, 4, 3)] * 4
    # files without the fixed buffers get them recomputed (not left as they were)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("periods", "bias_mask"))}
    torch.save(state, tmp_path / "no_buffers.pth")
    prep.load_dinov3(model, tmp_path / "no_buffers.pth")
    assert torch.allclose(model.rope_embed.periods, 100.0 ** (torch.arange(16) / 16))
    mask = model.blocks[3].attn.qkv.bias_mask
    assert mask[:384].all() and not mask[384:768].any() and mask[768:].all()


def test_loader_refuses_foreign_or_corrupt_files(tmp_path: Path, monkeypatch) -> None:
    narrow = {"depths": (1, 1, 1, 1), "dims": (8, 16, 32, 64)}
    state = prep.dinov3_backbone("convnext_tiny", **narrow).state_dict()
    torch.save({k: v for k, v in state.items() if k != "stages.3.0.gamma"}, tmp_path / "a.pth")
    with pytest.raises(ValueError, match="missing"):
        prep.load_dinov3(prep.dinov3_backbone("convnext_tiny", **narrow), tmp_path / "a.pth")
    official = tmp_path / prep.WEIGHT_FILES["convnext_tiny"]
    torch.save(state, official)  # official name, wrong content: hash prefix mismatch
    with pytest.raises(ValueError, match="sha256"):
        prep.load_dinov3(prep.dinov3_backbone("convnext_tiny", **narrow), official)
    monkeypatch.setenv("ONEGC_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="LICENSE"):
        prep.find_weights("convnext_tiny")  # never without the licence beside it
    (tmp_path / "LICENSE.md").write_text("DINOv3 License\n")
    assert prep.find_weights("convnext_tiny") == official


def test_weights_are_staged_hash_checked_with_their_licence(tmp_path: Path, monkeypatch) -> None:
    narrow = {"depths": (1, 1, 1, 1), "dims": (8, 16, 32, 64)}
    src = tmp_path / "src"
    src.mkdir()
    torch.save(prep.dinov3_backbone("convnext_tiny", **narrow).state_dict(), src / "w.pth")
    name = f"dinov3_convnext_tiny_pretrain_lvd1689m-{prep.sha256_file(src / 'w.pth')[:8]}.pth"
    (src / "w.pth").rename(src / name)
    monkeypatch.setitem(prep.WEIGHT_FILES, "convnext_tiny", name)
    data = tmp_path / "data"
    assert prep.stage_weights(data, src) == ([], 0)  # no LICENSE.md: not staged
    (src / "LICENSE.md").write_text("DINOv3 License\n")
    assert prep.stage_weights(data, src) == ([name], 2)
    assert prep.stage_weights(data, src) == ([name], 0)  # idempotent
    monkeypatch.setenv("ONEGC_WEIGHTS_DIR", str(data / "agent" / "weights"))
    path = prep.find_weights("convnext_tiny")
    model = train.build_model({**train.SMOKE_CONFIG, "backbone_args": narrow})
    prep.load_dinov3(model.backbone, path)  # the path train.py takes, hash check included
    out = model.eval()(torch.zeros(1, 3, 224, 224))
    assert out.shape == (1, 21, 224, 224)


def test_fpn_baseline_also_runs_on_the_vit_backbone() -> None:
    config = {
        **train.CONFIG,
        "backbone": "vits16",
        "fpn_dim": 16,
        "backbone_args": {"embed_dim": 32, "depth": 4, "num_heads": 2},
    }
    out = train.build_model(config).eval()(torch.zeros(1, 3, 224, 224))
    assert out.shape == (1, 21, 224, 224)
    assert train.CONFIG["backbone"] == "convnext_tiny" and train.LR == 1e-4
    assert train.BATCH_SIZE == 16 and train.EPOCHS == 15
