"""Task t2 -- TinyImageNet-200 image classification (LOCKED: do not modify).

Data preparation, the runtime helpers that train.py / run_{x}.py import, and the one official
evaluation (top-1 accuracy over all official validation images).

Usage:
    python prepare.py --data-dir DIR [--synthetic] [--source-dir SRC]
        Download tiny-imagenet-200.zip (or copy it from SRC / $ONEGC_SOURCE_DIR, or with
        --synthetic write a tiny archive in exactly the same layout) into DIR/source, then
        decode it into DIR/agent (what the agent sees: train + validation arrays) and DIR/eval
        (owner-only: the evaluation inputs and labels of the trusted scorer). Idempotent: a
        second run only re-checks the hashes in DIR/prepared.json.
    python prepare.py --eval CKPT --data-dir DIR --script-dir WS [--json]
        Score a checkpoint: the model is rebuilt through the recorded script's
        build_model(config) in an isolated child that only ever sees the validation images.

In a workspace the agent's scripts do `from prepare import load_split, normalize, ...`;
the prepared arrays then live in ./data. Model contract: build_model(config) returns a module
mapping normalised float32 images (B, 3, 64, 64) to logits (B, 200); class id = position of
the wnid in sorted(wnids.txt).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

try:
    import taskkit
except ImportError:  # run from the source folder tasks/t2_*/: the kit sits in ../_kit
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_kit"))
    import taskkit

from taskkit import EvalFailure

# ---------------------------------------------------------------------------------------------
# Constants (fixed, do not modify)
# ---------------------------------------------------------------------------------------------

TASK = "t2"
METRIC = "top1"
EVAL_SPLIT = "validation"
TIME_BUDGET = 7200  # seconds of agent time for this task (paper Table 2: 120 min)

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
ARCHIVE = "tiny-imagenet-200.zip"
ROOT = "tiny-imagenet-200"
# The widely used md5 of the official archive (no sha256 is published by Stanford).
ARCHIVE_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
ARCHIVE_BYTES = 248_100_043

IMG_SIZE = 64
NUM_CLASSES = 200
REAL_TRAIN, REAL_VAL = 100_000, 10_000
MEAN = (0.485, 0.456, 0.406)  # ImageNet normalisation (paper section 3.2)
STD = (0.229, 0.224, 0.225)

EVAL_BATCH = 500
EVAL_TIMEOUT_S = 900
EVAL_MEMORY_MB = 16_384

# Where the prepared agent data sits: ./data beside this file in a workspace.
DATA_DIR = Path(os.environ.get("ONEGC_DATA_DIR") or Path(__file__).resolve().parent / "data")
# Trusted side (owner-only folder, never copied into a workspace): the evaluation inputs and
# the validation labels the scorer compares against.
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


def _jpeg(arr: np.ndarray) -> bytes:
    from PIL import Image  # only preparing needs Pillow: the agent's workspace has stdlib, numpy, torch

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def write_synthetic_archive(dest: Path, seed: int = 0) -> Path:
    """Write a tiny tiny-imagenet-200.zip with the official layout, so the real reader runs.

    Three wnids listed in non-sorted order (class ids must come from sorted order), four
    training and two validation images per class, one grayscale JPEG (the real set has
    some), a words.txt with an extra wnid (the real one covers all of ImageNet), boxes files
    and an unlabelled test folder. Each class has its own mean colour so training can learn.
    """
    rng = np.random.default_rng(seed)
    wnids = ["n09999999", "n01443537", "n02124075"]
    words = {"n01443537": "goldfish, Carassius auratus", "n02124075": "Egyptian cat",
             "n09999999": "synthetic thing", "n00000001": "unused entity"}
    colours = {w: rng.integers(30, 226, size=3) for w in wnids}

    def image(wnid: str | None) -> np.ndarray:
        base = colours[wnid] if wnid else np.array([128, 128, 128])
        noise = rng.integers(-4, 5, size=(IMG_SIZE, IMG_SIZE, 3))
        return np.clip(base + noise, 0, 255).astype(np.uint8)

    entries: list[tuple[str, bytes]] = [
        (f"{ROOT}/wnids.txt", "".join(f"{w}\n" for w in wnids).encode()),
        (f"{ROOT}/words.txt", "".join(f"{k}\t{v}\n" for k, v in words.items()).encode()),
    ]
    for wnid in wnids:
        boxes = []
        for k in range(4):
            name = f"{wnid}_{k}.JPEG"
            arr = image(wnid)
            data = (_jpeg(arr[:, :, 0]) if (wnid == wnids[0] and k == 1) else _jpeg(arr))
            entries.append((f"{ROOT}/train/{wnid}/images/{name}", data))
            boxes.append(f"{name}\t0\t0\t63\t63\n")
        entries.append((f"{ROOT}/train/{wnid}/{wnid}_boxes.txt", "".join(boxes).encode()))
    val_wnids = [wnids[i % len(wnids)] for i in range(2 * len(wnids))]
    rng.shuffle(val_wnids)
    ann = []
    for k, wnid in enumerate(val_wnids):
        entries.append((f"{ROOT}/val/images/val_{k}.JPEG", _jpeg(image(wnid))))
        ann.append(f"val_{k}.JPEG\t{wnid}\t1\t2\t60\t61\n")
    entries.append((f"{ROOT}/val/val_annotations.txt", "".join(ann).encode()))
    for k in range(2):
        entries.append((f"{ROOT}/test/images/test_{k}.JPEG", _jpeg(image(None))))

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2015, 1, 1, 0, 0, 0))
            zf.writestr(info, data)
    os.replace(tmp, dest)
    return dest


def _decode(data: bytes, what: str) -> np.ndarray:
    """Decode one JPEG to uint8 HWC RGB; grayscale files exist in the real set."""
    from PIL import Image  # only preparing needs Pillow

    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    if rgb.size != (IMG_SIZE, IMG_SIZE):
        raise ValueError(f"{what}: expected {IMG_SIZE}x{IMG_SIZE}, got {rgb.size}")
    return np.asarray(rgb, dtype=np.uint8)


def _k(name: str) -> int:
    """Image number k of `<prefix>_<k>.JPEG`: the sort key that pins the order."""
    match = re.search(r"_(\d+)\.JPEG$", name)
    if match is None:
        raise ValueError(f"unexpected image name {name!r}")
    return int(match.group(1))


class Archive(NamedTuple):
    """Decoded contents of the archive, in the pinned order."""

    wnids: list[str]
    words: list[str]
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray


def read_archive(zip_path: Path) -> Archive:
    """Read the official archive; class id = position in sorted(wnids) (ImageFolder order).

    Train images are ordered by class then image number, validation images by image number,
    so every run sees identical arrays whatever order the zip lists its members in.
    """
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        wnids = sorted(zf.read(f"{ROOT}/wnids.txt").decode().split())
        if len(set(wnids)) != len(wnids):
            raise ValueError("duplicate wnids in wnids.txt")
        index = {w: i for i, w in enumerate(wnids)}
        words: dict[str, str] = {}
        for line in zf.read(f"{ROOT}/words.txt").decode("utf-8", "replace").splitlines():
            if "\t" in line:
                key, _, value = line.partition("\t")
                words[key] = value
        train: list[tuple[int, int, str]] = []
        pattern = re.compile(rf"^{ROOT}/train/(n\d+)/images/([^/]+\.JPEG)$")
        for name in names:
            match = pattern.match(name)
            if match:
                if match.group(1) not in index:
                    raise ValueError(f"training image of unknown wnid: {name}")
                train.append((index[match.group(1)], _k(match.group(2)), name))
        train.sort()
        val: list[tuple[int, str, int]] = []
        for line in zf.read(f"{ROOT}/val/val_annotations.txt").decode().splitlines():
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) != 6 or cols[1] not in index:
                raise ValueError(f"bad val_annotations.txt line: {line!r}")
            member = f"{ROOT}/val/images/{cols[0]}"
            if member not in names:
                raise ValueError(f"annotated validation image missing: {cols[0]}")
            val.append((_k(cols[0]), member, index[cols[1]]))
        val.sort()
        listed = {n for n in names if n.startswith(f"{ROOT}/val/images/") and n.endswith(".JPEG")}
        if listed != {m for _, m, _ in val}:
            raise ValueError("val/images and val_annotations.txt disagree")
        train_x = np.empty((len(train), IMG_SIZE, IMG_SIZE, 3), dtype=np.uint8)  # 1.2 GB real
        for i, (_, _, name) in enumerate(train):
            train_x[i] = _decode(zf.read(name), name)
        val_x = np.empty((len(val), IMG_SIZE, IMG_SIZE, 3), dtype=np.uint8)
        for i, (_, member, _) in enumerate(val):
            val_x[i] = _decode(zf.read(member), member)
    return Archive(
        wnids=wnids,
        words=[words.get(w, "") for w in wnids],
        train_x=train_x,
        train_y=np.array([c for c, _, _ in train], dtype=np.int64),
        val_x=val_x,
        val_y=np.array([c for _, _, c in val], dtype=np.int64),
    )


def prepare(data_dir: Path, synthetic: bool = False, source_dir: Path | None = None) -> dict:
    """Fetch or synthesise the archive, decode it, write agent/, eval/ and prepared.json."""
    data_dir = Path(data_dir).resolve()
    if taskkit.manifest_valid(data_dir, TASK, synthetic):
        return json.loads((data_dir / taskkit.MANIFEST).read_text())
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
    data = read_archive(src)
    n_train, n_val = len(data.train_y), len(data.val_y)
    if not synthetic and (len(data.wnids), n_train, n_val) != (NUM_CLASSES, REAL_TRAIN, REAL_VAL):
        raise ValueError(f"unexpected archive: {len(data.wnids)} classes, {n_train}/{n_val}")
    agent = data_dir / "agent"
    for key in ("train_x", "train_y", "val_x", "val_y"):
        taskkit.save_array(agent / f"{key}.npy", getattr(data, key))
    rows = [f"{i}\t{w}\t{n}\n" for i, (w, n) in enumerate(zip(data.wnids, data.words, strict=True))]
    taskkit.write_atomic(agent / "classes.tsv", "".join(rows).encode())
    trusted = taskkit.private_dir(data_dir / EVAL_DIR)
    tmp = trusted / ".inputs.tmp.npz"
    np.savez(tmp, x=data.val_x)
    os.chmod(tmp, 0o600)
    os.replace(tmp, trusted / "inputs.npz")
    taskkit.save_array(trusted / "labels.npy", data.val_y, private=True)
    return taskkit.write_manifest(data_dir, TASK, synthetic)


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
    """(images uint8 N x 64 x 64 x 3, labels int64 N) for 'train' or 'val', memory-mapped."""
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


def save_checkpoint(model: torch.nn.Module, config: dict, score: float, **kw: Any) -> Path:
    """Save a scored checkpoint into checkpoints/ (the output contract, Rule 7)."""
    return taskkit.save_checkpoint(model, config, score, task=TASK, metric=METRIC, **kw)


def evaluate_top1(model: torch.nn.Module, data_dir: Path | str = DATA_DIR,
                  limit: int | None = None) -> float:
    """Self-evaluation on the validation split with the same prediction code as the scorer.

    `limit` (first N images) is for smoke runs only; the official score uses every image.
    """
    x, y = load_split("val", data_dir)
    was_training = model.training
    preds = predict_batches(model, {"x": x[:limit]})
    model.train(was_training)
    return top1(preds, np.asarray(y[:limit]))


# ---------------------------------------------------------------------------------------------
# Evaluation (DO NOT CHANGE -- this is the fixed metric)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_batches(model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Child side: predicted class id per image (int64), in input order, fixed batches.

    The model maps normalised float NCHW images to (N, 200) logits; argmax is taken here.
    """
    x = inputs["x"]
    device = taskkit.model_device(model)
    model.eval()
    out = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), EVAL_BATCH):
        batch = torch.from_numpy(np.array(x[start:start + EVAL_BATCH])).to(device)
        logits = model(normalize(batch))
        if logits.ndim != 2 or logits.shape[0] != batch.shape[0]:
            raise ValueError(f"model output shape {tuple(logits.shape)} is not (batch, classes)")
        out[start:start + len(batch)] = logits.argmax(dim=1).cpu().numpy()
    return out


def top1(preds: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy over every validation image (no drop_last, no subsampling)."""
    preds = np.asarray(preds)
    if preds.shape != labels.shape or not np.issubdtype(preds.dtype, np.integer):
        raise EvalFailure("predict_error", f"predictions {preds.shape} {preds.dtype}, "
                                           f"expected {labels.shape} integers")
    return float(np.mean(preds.astype(np.int64) == labels))


def official_eval(ckpt: Path, data_dir: Path, script_dir: Path, as_json: bool) -> None:
    """Score ckpt on all validation images (prints; exits 3 on a classified failure)."""
    trusted = Path(data_dir).resolve() / EVAL_DIR
    labels = np.load(trusted / "labels.npy")
    taskkit.official_eval(
        task=TASK, metric=METRIC, split=EVAL_SPLIT, ckpt=ckpt, script_dir=script_dir,
        inputs_npz=trusted / "inputs.npz", predict="predict_batches",
        score=lambda pred: top1(pred, labels), as_json=as_json,
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
    print(f"{TASK}: prepared {len(manifest['files'])} files in {args.data_dir}")


if __name__ == "__main__":
    main()
