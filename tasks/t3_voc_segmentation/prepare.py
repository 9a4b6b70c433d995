"""Task t3 -- PASCAL VOC 2012 semantic segmentation at 224x224 (LOCKED: do not modify).

Data preparation, the DINOv3 backbones the harness provides (ConvNeXt-Tiny and ViT-S/16, in
plain torch, loaded from the official checkpoint files in weights/), the runtime helpers that
train.py / run_{x}.py import, and the one official evaluation: mIoU from ONE 21x21 confusion
matrix accumulated over every validation pixel, ignoring label 255.

Usage:
    python prepare.py --data-dir DIR [--synthetic] [--source-dir SRC]
        Download VOCtrainval_11-May-2012.tar (or copy it from SRC / $ONEGC_SOURCE_DIR, or with
        --synthetic write a tiny tar in exactly the same layout) into DIR/source, resize the
        segmentation train/val splits to 224x224 into DIR/agent, keep the evaluation inputs
        and masks for the trusted scorer in DIR/eval (owner-only), and stage the DINOv3
        weight files (with their LICENSE.md) found in SRC, $ONEGC_WEIGHTS_DIR or
        DIR/source/weights into DIR/agent/weights. Nothing is fetched from a model hub.
        Idempotent: a second run only re-checks the hashes in DIR/prepared.json.
    python prepare.py --eval CKPT --data-dir DIR --script-dir WS [--json]
        Score a checkpoint: the model is rebuilt through the recorded script's
        build_model(config) in an isolated child that only ever sees the validation images.

Model contract: build_model(config) returns a module mapping normalised float32 images
(B, 3, 224, 224) to logits (B, 21, H, W) (resized to 224x224 by the scorer if H, W differ).

Resolution (pinned): images and masks are squashed to 224x224 (no crop, so every annotated
region is scored); images bilinear with antialiasing, masks NEAREST only. The score is
computed at 224x224, as in the paper, not at the original resolution.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

try:
    import taskkit
except ImportError:  # run from the source folder tasks/t3_*/: the kit sits in ../_kit
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_kit"))
    import taskkit

from taskkit import EvalFailure, sha256_file

# ---------------------------------------------------------------------------------------------
# Constants (fixed, do not modify)
# ---------------------------------------------------------------------------------------------

TASK = "t3"
METRIC = "miou"
EVAL_SPLIT = "validation"
TIME_BUDGET = 4800  # seconds of agent time for this task (paper Table 2: 80 min)

URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
ARCHIVE = "VOCtrainval_11-May-2012.tar"
ARCHIVE_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"  # torchvision's DATASET_YEAR_DICT['2012']
ARCHIVE_BYTES = 1_999_639_040
VOC = "VOCdevkit/VOC2012"

IMG_SIZE = 224
NUM_CLASSES = 21
IGNORE_INDEX = 255
REAL_TRAIN, REAL_VAL = 1464, 1449
CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
           "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
           "sheep", "sofa", "train", "tvmonitor")
MEAN = (0.485, 0.456, 0.406)  # ImageNet normalisation: what the DINOv3 LVD-1689M weights expect
STD = (0.229, 0.224, 0.225)

# Official DINOv3 checkpoint files (Meta's .pth layout). The hex suffix is the sha256 prefix
# (torch.hub convention) and is verified on load. They may only sit beside the licence file.
WEIGHT_FILES = {
    "convnext_tiny": "dinov3_convnext_tiny_pretrain_lvd1689m-21b726bb.pth",
    "vits16": "dinov3_vits16_pretrain_lvd1689m-08c60483.pth",
}
LICENSE_FILE = "LICENSE.md"

EVAL_BATCH = 16
EVAL_TIMEOUT_S = 1200
EVAL_MEMORY_MB = 24_576

# Where the prepared agent data sits: ./data beside this file in a workspace.
WORKSPACE = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("ONEGC_DATA_DIR") or WORKSPACE / "data")
# Backbone files: the harness's weights/ folder, else the copy staged into data/weights.
WEIGHTS_DIRS = (WORKSPACE / "weights", DATA_DIR / "weights")
# Trusted side (owner-only folder, never copied into a workspace): the evaluation inputs and
# the validation masks the scorer compares against.
EVAL_DIR = "eval"

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def voc_palette() -> list[int]:
    """The standard VOC colour map (bit-interleaved), 256 RGB triples; 255 maps to (224,224,192)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def _palette_png(mask: np.ndarray) -> bytes:
    from PIL import Image  # only preparing needs Pillow: the agent's workspace has stdlib, numpy, torch

    im = Image.fromarray(mask.astype(np.uint8))
    im.putpalette(voc_palette())  # 'L' -> 'P': class indices stay the pixel values
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def write_synthetic_archive(dest: Path, seed: int = 0) -> Path:
    """Write a tiny VOCtrainval tar with the official layout, so the real reader runs.

    Two train and two val ids, varied non-square sizes, palette ('P') PNG masks holding class
    ids with a 255 void border around each object (as VOC draws them), and one extra JPEG
    that is in no segmentation list (the real JPEGImages holds 17k detection-only images).
    """
    from PIL import Image  # only preparing needs Pillow

    rng = np.random.default_rng(seed)
    samples = {  # id -> (width, height, object class)
        "2007_000032": (120, 90, 1), "2007_000039": (90, 120, 15),
        "2007_000033": (100, 100, 1), "2007_000042": (128, 96, 15),
    }
    splits = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033", "2007_000042"]}
    colours = {0: (40, 90, 40), 1: (200, 200, 230), 15: (180, 120, 90)}
    files: dict[str, bytes] = {}
    for sid, (w, h, cls) in samples.items():
        mask = np.zeros((h, w), dtype=np.uint8)
        y0, y1, x0, x1 = h // 4, 3 * h // 4, w // 5, 3 * w // 5
        mask[y0 - 2:y1 + 2, x0 - 2:x1 + 2] = IGNORE_INDEX
        mask[y0:y1, x0:x1] = cls
        img = np.zeros((h, w, 3), dtype=np.int64)
        img[:] = colours[0]
        img[mask != 0] = colours[cls]
        img += rng.integers(-4, 5, size=img.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=75)
        files[f"{VOC}/JPEGImages/{sid}.jpg"] = buf.getvalue()
        files[f"{VOC}/SegmentationClass/{sid}.png"] = _palette_png(mask)
    extra = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 90, 90)).save(extra, "JPEG", quality=75)
    files[f"{VOC}/JPEGImages/2007_000027.jpg"] = extra.getvalue()
    for split, ids in (*splits.items(), ("trainval", sorted(splits["train"] + splits["val"]))):
        files[f"{VOC}/ImageSets/Segmentation/{split}.txt"] = "".join(f"{i}\n" for i in ids).encode()

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tf:
        dirs = sorted({str(p) for n in files for p in Path(n).parents if str(p) != "."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1336694400
            tf.addfile(info)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1336694400
            tf.addfile(info, io.BytesIO(data))
    os.replace(tmp, dest)
    return dest


class Split(NamedTuple):
    """One split, resized to IMG_SIZE: images uint8 NHWC, masks uint8 NHW (0..20, 255)."""

    ids: list[str]
    x: np.ndarray
    y: np.ndarray


def _load_pair(img_bytes: bytes, png_bytes: bytes, sid: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image  # only preparing needs Pillow

    with Image.open(io.BytesIO(img_bytes)) as im:
        rgb = im.convert("RGB")
    with Image.open(io.BytesIO(png_bytes)) as pm:
        if pm.mode != "P":  # converting an RGB rendering would silently scramble class ids
            raise ValueError(f"{sid}: mask is mode {pm.mode!r}, expected palette 'P'")
        mask = pm.copy()
    if rgb.size != mask.size:
        raise ValueError(f"{sid}: image {rgb.size} and mask {mask.size} differ")
    values = np.unique(np.asarray(mask))
    bad = values[(values >= NUM_CLASSES) & (values != IGNORE_INDEX)]
    if bad.size:
        raise ValueError(f"{sid}: mask holds labels {bad.tolist()} outside 0..20 and 255")
    size = (IMG_SIZE, IMG_SIZE)
    x = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)
    y = np.asarray(mask.resize(size, Image.Resampling.NEAREST), dtype=np.uint8)
    return x, y


def read_archive(tar_path: Path) -> dict[str, Split]:
    """Read the train/val segmentation splits from the tar, in the order of the index files."""
    with tarfile.open(tar_path, "r:") as tf:
        members = {m.name.removeprefix("./"): m for m in tf.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            if name not in members:
                raise ValueError(f"{tar_path.name}: missing {name}")
            handle = tf.extractfile(members[name])
            if handle is None:
                raise ValueError(f"{tar_path.name}: unreadable {name}")
            return handle.read()

        out: dict[str, Split] = {}
        for split in ("train", "val"):
            ids = read(f"{VOC}/ImageSets/Segmentation/{split}.txt").decode().split()
            if len(set(ids)) != len(ids):
                raise ValueError(f"duplicate ids in {split}.txt")
            pairs = [_load_pair(read(f"{VOC}/JPEGImages/{i}.jpg"),
                                read(f"{VOC}/SegmentationClass/{i}.png"), i) for i in ids]
            out[split] = Split(ids, np.stack([p[0] for p in pairs]),
                               np.stack([p[1] for p in pairs]))
    if set(out["train"].ids) & set(out["val"].ids):
        raise ValueError("train and val ids overlap")
    return out


def _weight_sources(data_dir: Path, source_dir: Path | None) -> list[Path]:
    dirs = [source_dir, Path(os.environ["ONEGC_WEIGHTS_DIR"]) if os.environ.get(
        "ONEGC_WEIGHTS_DIR") else None, data_dir / "source" / "weights"]
    return [d for d in dirs if d is not None and d.is_dir()]


def stage_weights(data_dir: Path, source_dir: Path | None) -> tuple[list[str], int]:
    """Copy the official DINOv3 files, hash-checked, with LICENSE.md into DIR/agent/weights.

    The DINOv3 License requires a copy of the agreement with every redistribution, so a
    weight file without LICENSE.md beside it is not staged. Missing weights are not an error
    here (tests, agents that use neither backbone); train.py says so when it needs them.
    Returns (staged file names, number of files newly copied).
    """
    dest = data_dir / "agent" / "weights"
    staged, copied = [], 0
    for fname in WEIGHT_FILES.values():
        for src_dir in _weight_sources(data_dir, source_dir):
            src = src_dir / fname
            if not (src.is_file() and (src_dir / LICENSE_FILE).is_file()):
                continue
            check_hub_hash(src)
            dest.mkdir(parents=True, exist_ok=True)
            for f in (src, src_dir / LICENSE_FILE):
                if not (dest / f.name).is_file() or sha256_file(dest / f.name) != sha256_file(f):
                    shutil.copyfile(f, dest / f".{f.name}.tmp")
                    os.replace(dest / f".{f.name}.tmp", dest / f.name)
                    copied += 1
            staged.append(fname)
            break
    if len(staged) < len(WEIGHT_FILES):
        missing = sorted(set(WEIGHT_FILES.values()) - set(staged))
        print(f"note: DINOv3 weights not staged (need file + {LICENSE_FILE}): {missing}",
              file=sys.stderr)
    return staged, copied


def prepare(data_dir: Path, synthetic: bool = False, source_dir: Path | None = None) -> dict:
    """Fetch or synthesise the tar, resize the splits, stage weights, write prepared.json."""
    data_dir = Path(data_dir).resolve()
    valid = taskkit.manifest_valid(data_dir, TASK, synthetic)
    if not valid:
        _prepare_splits(data_dir, synthetic, source_dir)
    _, copied = stage_weights(data_dir, source_dir)
    if valid and not copied:
        return json.loads((data_dir / taskkit.MANIFEST).read_text())
    return taskkit.write_manifest(data_dir, TASK, synthetic)


def _prepare_splits(data_dir: Path, synthetic: bool, source_dir: Path | None) -> None:
    src = data_dir / "source" / ARCHIVE
    if synthetic:
        write_synthetic_archive(src)
    else:
        src.parent.mkdir(parents=True, exist_ok=True)
        if src.exists() and _md5(src) != ARCHIVE_MD5:
            src.unlink()  # e.g. a synthetic archive left from an earlier run
        taskkit.fetch(URL, src, None, source_dir=source_dir)
        if src.stat().st_size != ARCHIVE_BYTES or _md5(src) != ARCHIVE_MD5:
            src.unlink()
            raise ValueError(f"{ARCHIVE}: size/md5 mismatch with the official archive")
    splits = read_archive(src)
    counts = (len(splits["train"].ids), len(splits["val"].ids))
    if not synthetic and counts != (REAL_TRAIN, REAL_VAL):
        raise ValueError(f"unexpected split sizes {counts}")
    agent = data_dir / "agent"
    for name, split in splits.items():
        taskkit.save_array(agent / f"{name}_x.npy", split.x)
        taskkit.save_array(agent / f"{name}_y.npy", split.y)
        ids = "".join(f"{i}\n" for i in split.ids).encode()
        taskkit.write_atomic(agent / f"{name}_ids.txt", ids)
    trusted = taskkit.private_dir(data_dir / EVAL_DIR)
    tmp = trusted / ".inputs.tmp.npz"
    np.savez(tmp, x=splits["val"].x)
    os.chmod(tmp, 0o600)
    os.replace(tmp, trusted / "inputs.npz")
    taskkit.save_array(trusted / "labels.npy", splits["val"].y, private=True)


# ---------------------------------------------------------------------------------------------
# DINOv3 backbones (plain torch re-implementation, official checkpoint key layout)
# ---------------------------------------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (ConvNeXt stem/downsampling norms)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """dwconv 7x7 -> LN -> Linear 4x -> GELU -> Linear -> layer scale, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class DINOv3ConvNeXt(nn.Module):
    """DINOv3 ConvNeXt; forward returns the 4 stage maps (strides 4, 8, 16, 32).

    Keys follow Meta's checkpoints: downsample_layers.{i}.{0,1}, stages.{i}.{j}.{dwconv,
    norm, pwconv1, pwconv2, gamma}, norm (pooled-feature norm, unused by dense heads) and
    norms.3 (applied to the last stage's map; norms 0-2 are identities).
    """

    def __init__(self, depths: tuple[int, ...] = (3, 3, 9, 3),
                 dims: tuple[int, ...] = (96, 192, 384, 768)) -> None:
        super().__init__()
        self.channels = list(dims)
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))]
            + [nn.Sequential(LayerNorm2d(dims[i - 1], eps=1e-6),
                             nn.Conv2d(dims[i - 1], dims[i], 2, 2)) for i in range(1, len(dims))])
        self.stages = nn.ModuleList(nn.Sequential(*[ConvNeXtBlock(d) for _ in range(n)])
                                    for d, n in zip(dims, depths, strict=True))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.norms = nn.ModuleList([nn.Identity() for _ in dims[:-1]]
                                   + [LayerNorm2d(dims[-1], eps=1e-6)])
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for down, stage, norm in zip(self.downsample_layers, self.stages, self.norms,
                                     strict=True):
            x = stage(down(x))
            feats.append(norm(x))
        return feats


class LinearKMaskedBias(nn.Linear):
    """qkv projection whose key bias is masked out (DINOv3 `mask_k_bias`)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__(dim_in, dim_out)
        self.register_buffer("bias_mask", self.default_mask(dim_out), persistent=True)

    @staticmethod
    def default_mask(dim_out: int) -> torch.Tensor:
        """1 for the q and v thirds of the bias, 0 for the k third."""
        mask = torch.ones(dim_out)
        mask[dim_out // 3: 2 * dim_out // 3] = 0
        return mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias * self.bias_mask.to(self.bias.dtype))


class RopePositionEmbedding(nn.Module):
    """Axial 2D RoPE over the patch grid; coordinates normalised per axis to [-1, 1]."""

    def __init__(self, embed_dim: int, num_heads: int, base: float = 100.0) -> None:
        super().__init__()
        self.register_buffer("periods", self.default_periods(embed_dim // num_heads, base),
                             persistent=True)

    @staticmethod
    def default_periods(head_dim: int, base: float = 100.0) -> torch.Tensor:
        """Geometric periods base^(2i / (head_dim / 2)), i < head_dim / 4 (DINOv3 `base` form)."""
        exponents = 2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2)
        return base ** exponents

    def forward(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.periods.device
        ch = torch.arange(0.5, h, device=dev, dtype=torch.float32) / h
        cw = torch.arange(0.5, w, device=dev, dtype=torch.float32) / w
        coords = torch.stack(torch.meshgrid(ch, cw, indexing="ij"), dim=-1).flatten(0, 1)
        angles = 2 * math.pi * (2.0 * coords - 1.0)[:, :, None] / self.periods[None, None, :]
        angles = angles.flatten(1, 2).tile(2)
        return torch.sin(angles), torch.cos(angles)


def _rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = LinearKMaskedBias(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        sin, cos = rope
        prefix = n - sin.shape[0]  # cls + storage tokens carry no position
        dtype = q.dtype
        q = torch.cat((q[:, :, :prefix], _rope(q[:, :, prefix:].float(), sin, cos).to(dtype)), 2)
        k = torch.cat((k[:, :, :prefix], _rope(k[:, :, prefix:].float(), sin, cos).to(dtype)), 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class DINOv3ViT(nn.Module):
    """DINOv3 ViT with 4 storage (register) tokens and RoPE; forward returns 4 maps at stride 16.

    The maps are the final-norm'ed patch tokens after blocks `out_indices`, reshaped to
    (B, C, H/16, W/16). Keys follow Meta's checkpoints (cls_token, storage_tokens, mask_token,
    patch_embed.proj, rope_embed.periods, blocks.{i}.{norm1,attn.qkv(+bias_mask),attn.proj,
    ls1,norm2,mlp.fc1,mlp.fc2,ls2}, norm).
    """

    def __init__(self, embed_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 patch_size: int = 16, n_storage_tokens: int = 4,
                 out_indices: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.patch_size, self.n_prefix = patch_size, 1 + n_storage_tokens
        self.out_indices = tuple(out_indices or [depth // 4 * (i + 1) - 1 for i in range(4)])
        self.channels = [embed_dim] * len(self.out_indices)
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.empty(1, 1, embed_dim))
        self.storage_tokens = nn.Parameter(torch.empty(1, n_storage_tokens, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))  # pretraining only
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.storage_tokens, std=0.02)
        self.rope_embed = RopePositionEmbedding(embed_dim, num_heads)
        self.blocks = nn.ModuleList(ViTBlock(embed_dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-5)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = x.shape[0]
        tokens = self.patch_embed(x)
        h, w = tokens.shape[-2:]
        tokens = torch.cat([self.cls_token.expand(b, -1, -1),
                            self.storage_tokens.expand(b, -1, -1),
                            tokens.flatten(2).transpose(1, 2)], dim=1)
        rope = self.rope_embed(h, w)
        feats = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, rope)
            if i in self.out_indices:
                patches = self.norm(tokens)[:, self.n_prefix:]
                feats.append(patches.transpose(1, 2).reshape(b, -1, h, w))
        return feats


def dinov3_backbone(name: str, **overrides: Any) -> nn.Module:
    """The two harness backbones by name ('convnext_tiny', 'vits16'), randomly initialised.

    `overrides` change the size (tests and smoke runs build narrow versions of the same
    architecture); the official weights only fit the default sizes.
    """
    if name == "convnext_tiny":
        return DINOv3ConvNeXt(**overrides)
    if name == "vits16":
        return DINOv3ViT(**overrides)
    raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(WEIGHT_FILES)}")


def check_hub_hash(path: Path) -> None:
    """For the official file names, the sha256 must start with the name's hex suffix."""
    match = re.search(r"-([0-9a-f]{8,})\.pth$", path.name)
    if (path.name in WEIGHT_FILES.values() and match
            and not sha256_file(path).startswith(match.group(1))):
        raise ValueError(f"{path.name}: sha256 does not match the official file")


def find_weights(name: str) -> Path:
    """Path of the official weight file for backbone `name` (weights/ or data/weights/)."""
    fname = WEIGHT_FILES[name]
    extra = [Path(os.environ["ONEGC_WEIGHTS_DIR"])] if os.environ.get("ONEGC_WEIGHTS_DIR") else []
    for d in (*WEIGHTS_DIRS, *extra):
        if (d / fname).is_file() and (d / LICENSE_FILE).is_file():
            return d / fname
    raise FileNotFoundError(f"{fname} (with {LICENSE_FILE} beside it) not found in "
                            f"{[str(d) for d in (*WEIGHTS_DIRS, *extra)]}")


def load_dinov3(backbone: nn.Module, path: Path | str) -> None:
    """Load an official DINOv3 checkpoint (Meta .pth key layout) into `backbone`, strictly.

    Accepts a bare state dict or one wrapped under 'model'/'state_dict'; drops the
    pretraining-only `local_cls_norm.*`; fills ConvNeXt's `norms.3` from `norm` when a
    converted file lacks it, and the ViT's fixed buffers (`rope_embed.periods`,
    `*.attn.qkv.bias_mask`, functions of the shapes only) when a file omits them. Any other
    missing/unexpected key or shape is an error: a silently half-loaded backbone would
    train from random features without anyone noticing.
    """
    path = Path(path)
    check_hub_hash(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    state = {k: v for k, v in state.items() if not k.startswith("local_cls_norm.")}
    if isinstance(backbone, DINOv3ConvNeXt) and "norms.3.weight" not in state:
        state.update({f"norms.3.{p}": state[f"norm.{p}"] for p in ("weight", "bias")
                      if f"norm.{p}" in state})
    own = backbone.state_dict()
    for key, tensor in own.items():
        if key not in state and key == "rope_embed.periods":
            state[key] = RopePositionEmbedding.default_periods(4 * tensor.shape[0])
        elif key not in state and key.endswith("attn.qkv.bias_mask"):
            state[key] = LinearKMaskedBias.default_mask(tensor.shape[0])
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{path.name} does not fit {type(backbone).__name__}: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}, shape {sorted(shapes)[:5]}")
    backbone.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------
# Runtime helpers (imported by train.py and run_{x}.py)
# ---------------------------------------------------------------------------------------------


def smoke() -> bool:
    """ONEGC_SMOKE=1 asks for a seconds-long CPU run (tests, CI)."""
    return os.environ.get("ONEGC_SMOKE") == "1"


def time_budget_s() -> float:
    """Wall-clock cap for a training loop: the task budget, or ONEGC_TIME_BUDGET_S if lower."""
    cap = os.environ.get("ONEGC_TIME_BUDGET_S")
    return min(float(cap), TIME_BUDGET) if cap else float(TIME_BUDGET)


def load_split(split: str, data_dir: Path | str = DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x 224 x 224 x 3, masks uint8 N x 224 x 224), memory-mapped."""
    if split not in ("train", "val"):
        raise ValueError("split must be 'train' or 'val'")
    d = Path(data_dir)
    return (np.load(d / f"{split}_x.npy", mmap_mode="r"),
            np.load(d / f"{split}_y.npy", mmap_mode="r"))


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW with ImageNet mean/std: exactly what the evaluator feeds."""
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x.permute(0, 3, 1, 2).float().div_(255.0) - mean) / std


def save_checkpoint(model: nn.Module, config: dict, score: float, **kw: Any) -> Path:
    """Save a scored checkpoint into checkpoints/ (the output contract, Rule 7)."""
    return taskkit.save_checkpoint(model, config, score, task=TASK, metric=METRIC, **kw)


def evaluate_miou(model: nn.Module, data_dir: Path | str = DATA_DIR,
                  limit: int | None = None) -> float:
    """Self-evaluation on the validation split with the same code as the official scorer.

    `limit` (first N images) is for smoke runs only; the official score uses every image.
    """
    x, y = load_split("val", data_dir)
    was_training = model.training
    preds = predict_batches(model, {"x": x[:limit]})
    model.train(was_training)
    return miou(confusion_matrix(preds, np.asarray(y[:limit])))


# ---------------------------------------------------------------------------------------------
# Evaluation (DO NOT CHANGE -- this is the fixed metric)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_batches(model: nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Child side: class map (N, 224, 224) uint8 in input order.

    The model maps normalised float NCHW images to (B, 21, h, w) logits; logits that are not
    224x224 are resized bilinearly to 224x224 before the argmax.
    """
    x = inputs["x"]
    device = taskkit.model_device(model)
    model.eval()
    out = np.empty((len(x), IMG_SIZE, IMG_SIZE), dtype=np.uint8)
    for start in range(0, len(x), EVAL_BATCH):
        batch = torch.from_numpy(np.array(x[start:start + EVAL_BATCH])).to(device)
        logits = model(normalize(batch))
        if logits.ndim != 4 or tuple(logits.shape[:2]) != (batch.shape[0], NUM_CLASSES):
            raise ValueError(f"model output shape {tuple(logits.shape)} is not (B, 21, H, W)")
        if logits.shape[-2:] != (IMG_SIZE, IMG_SIZE):
            logits = F.interpolate(logits.float(), size=(IMG_SIZE, IMG_SIZE), mode="bilinear",
                                   align_corners=False)
        out[start:start + len(batch)] = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
    return out


def confusion_matrix(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ONE 21x21 matrix (rows: truth, cols: prediction) accumulated over every pixel of every
    image; pixels whose truth is outside 0..20 (VOC's 255 void) are ignored.

    Summing per-image matrices and taking IoU once is the standard VOC mIoU; a mean of
    per-image IoUs would weight small images as much as large objects and is NOT used.
    """
    preds, labels = np.asarray(preds), np.asarray(labels)
    if preds.shape != labels.shape or not np.issubdtype(preds.dtype, np.integer):
        raise EvalFailure("predict_error", f"predictions {preds.shape} {preds.dtype}, "
                                           f"expected {labels.shape} integers")
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for p, t in zip(preds, labels, strict=True):  # per image keeps memory flat
        p, t = p.astype(np.int64).ravel(), t.astype(np.int64).ravel()
        keep = (t >= 0) & (t < NUM_CLASSES)
        if np.any((p[keep] < 0) | (p[keep] >= NUM_CLASSES)):
            raise EvalFailure("predict_error", "predicted class ids outside 0..20")
        cm += np.bincount(NUM_CLASSES * t[keep] + p[keep],
                          minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
    return cm


def miou(cm: np.ndarray) -> float:
    """Mean IoU over classes with a non-empty union (all 21 on the real VOC val set, so this
    equals the plain 21-class mean there; synthetic data may lack classes)."""
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    present = union > 0
    if not present.any():
        raise EvalFailure("predict_error", "no scored pixel")
    return float(np.mean(inter[present] / union[present]))


def official_eval(ckpt: Path, data_dir: Path, script_dir: Path, as_json: bool) -> None:
    """Score ckpt on all validation images (prints; exits 3 on a classified failure)."""
    trusted = Path(data_dir).resolve() / EVAL_DIR
    labels = np.load(trusted / "labels.npy", mmap_mode="r")
    taskkit.official_eval(
        task=TASK, metric=METRIC, split=EVAL_SPLIT, ckpt=ckpt, script_dir=script_dir,
        inputs_npz=trusted / "inputs.npz", predict="predict_batches",
        score=lambda pred: miou(confusion_matrix(pred, labels)), as_json=as_json,
        timeout_s=taskkit.eval_limit_s(EVAL_TIMEOUT_S), memory_mb=EVAL_MEMORY_MB, hide=[data_dir],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Command line: data preparation, or ``--eval`` for the official score."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--source-dir", type=Path, default=None)
    parser.add_argument("--eval", type=Path, default=None, metavar="CKPT")
    parser.add_argument("--script-dir", type=Path, default=Path.cwd())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.eval is not None:
        official_eval(args.eval, args.data_dir, args.script_dir, args.json)
        return
    manifest = prepare(args.data_dir, args.synthetic, args.source_dir)
    weights = sorted(f for f in manifest["files"] if f.endswith(".pth"))
    print(f"{TASK}: prepared {len(manifest['files'])} files in {args.data_dir}; "
          f"weights: {weights or 'none'}")


if __name__ == "__main__":
    main()
