"""Task t2 -- TinyImageNet-200 image classification (LOCKED: do not modify).

Data preparation, the runtime helpers that train.py / run_{x}.py import, and the one official
evaluation (top-1 accuracy over all official validation images).

Usage:
    python prepare.py --data-dir DIR [--synthetic] [--source-dir SRC]
        Download tiny-imagenet-200.zip (or copy it from SRC / $ONEGC_SOURCE_DIR, or with
        --synthetic write a tiny archive in exactly the same layout) into DIR/source, then
        decode it into DIR/agent (what the agent sees) and DIR/labels (validation labels for
        the trusted evaluator). Idempotent: a second run only re-checks hashes.
    python prepare.py --eval CKPT --data-dir DIR --script-dir WS [--json]
        Score a checkpoint: the model is rebuilt through the recorded script's
        build_model(config) in an isolated child that only ever sees the validation images.

In a workspace the agent's scripts do `from prepare import load_split, normalize, ...`;
the prepared arrays then live in ./data.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

try:
    from taskkit import (
        EvalFailure,
        fetch,
        predict_isolated,
        report,
        sha256_file,
    )
    from taskkit import save_checkpoint as _kit_save_checkpoint
except ImportError:  # run from the source folder tasks/t2_*/: the kit sits in ../_kit
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_kit"))
    from taskkit import (
        EvalFailure,
        fetch,
        predict_isolated,
        report,
        sha256_file,
    )
    from taskkit import save_checkpoint as _kit_save_checkpoint

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

DATA_DIR = Path("data")  # where the prepared agent data sits inside a workspace
AGENT_FILES = ("train_x.npy", "train_y.npy", "val_x.npy", "val_y.npy", "classes.tsv")
LABELS_FILE = "labels/val_y.npy"  # trusted copy of the validation labels (0600 when root)

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
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    if rgb.size != (IMG_SIZE, IMG_SIZE):
        raise ValueError(f"{what}: expected {IMG_SIZE}x{IMG_SIZE}, got {rgb.size}")
    return np.asarray(rgb, dtype=np.uint8)


def _k(name: str) -> int:
    match = re.search(r"_(\d+)\.JPEG$", name)
    if match is None:
        raise ValueError(f"unexpected image name {name!r}")
    return int(match.group(1))


@dataclass
class Archive:
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
        train_x = np.stack([_decode(zf.read(n), n) for _, _, n in train])
        val_x = np.stack([_decode(zf.read(m), m) for _, m, _ in val])
    return Archive(
        wnids=wnids,
        words=[words.get(w, "") for w in wnids],
        train_x=train_x,
        train_y=np.array([c for c, _, _ in train], dtype=np.int64),
        val_x=val_x,
        val_y=np.array([c for _, _, c in val], dtype=np.int64),
    )


def _save_npy(path: Path, arr: np.ndarray, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _already_prepared(data_dir: Path, synthetic: bool) -> bool:
    manifest = data_dir / "prepared.json"
    if not manifest.exists():
        return False
    meta = json.loads(manifest.read_text())
    if meta.get("task") != TASK or meta.get("synthetic") != synthetic:
        return False
    files = meta.get("files", {})
    return all((data_dir / rel).is_file() and sha256_file(data_dir / rel) == digest
               for rel, digest in files.items())


def prepare(data_dir: Path, synthetic: bool = False, source_dir: Path | None = None) -> dict:
    """Fetch or synthesise the archive, decode it, write agent/ + labels/ + prepared.json."""
    data_dir = Path(data_dir)
    if _already_prepared(data_dir, synthetic):
        return json.loads((data_dir / "prepared.json").read_text())
    src = data_dir / "source" / ARCHIVE
    if synthetic:
        write_synthetic_archive(src)
    else:
        src.parent.mkdir(parents=True, exist_ok=True)
        if src.exists() and _md5(src) != ARCHIVE_MD5:
            src.unlink()  # e.g. a synthetic archive left from an earlier run
        fetch(URL, src, None, source_dir=source_dir)
        if src.stat().st_size != ARCHIVE_BYTES or _md5(src) != ARCHIVE_MD5:
            src.unlink()
            raise ValueError(f"{ARCHIVE}: size/md5 mismatch with the official archive")
    data = read_archive(src)
    n_train, n_val = len(data.train_y), len(data.val_y)
    if not synthetic and (len(data.wnids), n_train, n_val) != (NUM_CLASSES, REAL_TRAIN, REAL_VAL):
        raise ValueError(f"unexpected archive: {len(data.wnids)} classes, {n_train}/{n_val}")
    agent = data_dir / "agent"
    labels = data_dir / "labels"
    agent.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    root = os.geteuid() == 0
    for key in ("train_x", "train_y", "val_x", "val_y"):
        _save_npy(agent / f"{key}.npy", getattr(data, key))
    rows = [f"{i}\t{w}\t{n}\n" for i, (w, n) in enumerate(zip(data.wnids, data.words, strict=True))]
    (agent / "classes.tsv").write_text("".join(rows))
    if root:
        os.chmod(labels, 0o700)
    _save_npy(data_dir / LABELS_FILE, data.val_y, 0o600 if root else 0o644)
    files = {f"source/{ARCHIVE}": sha256_file(src)}
    for rel in [f"agent/{f}" for f in AGENT_FILES] + [LABELS_FILE]:
        files[rel] = sha256_file(data_dir / rel)
    meta = {"task": TASK, "synthetic": synthetic, "files": files,
            "counts": {"train": n_train, "val": n_val, "classes": len(data.wnids)}}
    tmp = data_dir / "prepared.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, data_dir / "prepared.json")
    return meta


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


def save_checkpoint(model: torch.nn.Module, config: dict, score: float,
                    name: str | None = None) -> Path:
    """Save a scored checkpoint into checkpoints/ (the output contract, Rule 7)."""
    return _kit_save_checkpoint(model, config, score, task=TASK, metric=METRIC, name=name)


def evaluate_top1(model: torch.nn.Module, data_dir: Path | str = DATA_DIR,
                  limit: int | None = None) -> float:
    """Self-evaluation on the validation split with the same prediction code as the scorer.

    `limit` (first N images) is for smoke runs only; the official score uses every image.
    """
    x, y = load_split("val", data_dir)
    x, y = x[:limit], y[:limit]
    preds = predict_batches(model, {"x": x})
    return top1(preds, np.asarray(y))


# ---------------------------------------------------------------------------------------------
# Evaluation (DO NOT CHANGE -- this is the fixed metric)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_batches(model: torch.nn.Module, inputs) -> np.ndarray:
    """Child side: predicted class id per image (int64), in input order, fixed batches.

    The model maps normalised float NCHW images to (N, 200) logits; argmax is taken here.
    """
    x = inputs["x"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
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
    preds = np.asarray(preds).reshape(-1)
    if preds.shape != labels.shape:
        raise ValueError(f"{preds.shape[0]} predictions for {labels.shape[0]} images")
    return float(np.mean(preds.astype(np.int64) == labels))


def official_eval(ckpt: Path, data_dir: Path, script_dir: Path, as_json: bool) -> int:
    """Score ckpt on all validation images; the model child never sees the labels."""
    start = time.time()
    labels = np.load(data_dir / LABELS_FILE)
    with tempfile.TemporaryDirectory(prefix="onegc-t2-eval-") as tmp:
        os.chmod(tmp, 0o755)
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, x=np.load(data_dir / "agent" / "val_x.npy"))
        os.chmod(inputs, 0o644)
        extra = {"task": TASK, "metric": METRIC, "split": EVAL_SPLIT, "checkpoint": str(ckpt)}
        try:
            preds = predict_isolated(ckpt, script_dir, inputs, predict="predict_batches",
                                     timeout_s=EVAL_TIMEOUT_S, memory_mb=EVAL_MEMORY_MB)
            value = top1(preds, labels)
        except EvalFailure as exc:
            report({}, as_json=as_json, extra={**extra, "error": exc.kind, "detail": exc.detail})
            return 3
        except ValueError as exc:
            report({}, as_json=as_json,
                   extra={**extra, "error": "predict_error", "detail": str(exc)})
            return 3
    report({METRIC: value}, as_json=as_json,
           extra={**extra, "n": int(labels.shape[0]), "eval_seconds": time.time() - start})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--source-dir", type=Path, default=None)
    parser.add_argument("--eval", type=Path, default=None, metavar="CKPT")
    parser.add_argument("--script-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.eval is not None:
        if args.script_dir is None:
            parser.error("--eval needs --script-dir")
        return official_eval(args.eval, args.data_dir, args.script_dir, args.json)
    meta = prepare(args.data_dir, args.synthetic, args.source_dir)
    print(json.dumps({"task": TASK, "synthetic": meta["synthetic"], **meta.get("counts", {})}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
