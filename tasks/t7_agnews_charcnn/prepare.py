"""T7 -- AG News 4-class text classification at the character level (1GC-7RC).

LOCKED (paper Rule 1): agents must not modify this file. Scripts import its runtime helpers.

Usage:
    python prepare.py --data-dir DIR [--synthetic] [--source-dir SRC]    # one-time data prep
    python prepare.py --eval CKPT --data-dir DIR --script-dir WS [--json]  # the official score

Source: Xiang Zhang's ag_news_csv ``train.csv`` (120,000 rows) and ``test.csv`` (7,600 rows),
CSV without header, 3 quoted columns (class 1..4, title, description), internal quotes
doubled. As in the paper (Table 2, 7,600 eval rows) and the reference Keras char-CNN, the
official test file is the VALIDATION split the harness scores; the agent sees it too.

Encoding (pinned): text = title + " " + description taken verbatim (backslashes and entity
leftovers kept), each character to its ASCII code 0..127, any non-ASCII character to 127,
truncated to 1,014 characters and zero-padded at the end, not reversed. Labels 1..4 -> 0..3.
The official metric is accuracy over all 7,600 validation rows; the model process returns
logits and the trusted process compares their argmax with the labels.

Model contract: ``build_model(config)`` returns a module mapping int64 codes (B, 1014) to
logits (B, 4).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    import taskkit
except ImportError:  # run from the source folder tasks/t7_agnews_charcnn/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_kit"))
    import taskkit

from taskkit import EvalFailure

# ---------------------------------------------------------------------------
# Constants (fixed, do not modify)
# ---------------------------------------------------------------------------

TASK = "t7"
METRIC = "accuracy"
TIME_BUDGET = 2400  # seconds of training (paper Table 2: 40 min)
MAX_LEN = 1014
N_CLASSES = 4
CLASSES = ("World", "Sports", "Business", "Sci/Tech")
PAD_ID = 0
NON_ASCII_ID = 127
_MIRROR = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv"
SOURCES = {
    "train.csv": (
        f"{_MIRROR}/train.csv",
        # third-party checksum (tasks.md); the test checksum was computed from the file
        "76a0a2d2f92b286371fe4d4044640910a04a803fdd2538e0f3f29a5c6f6b672e",
    ),
    "test.csv": (
        f"{_MIRROR}/test.csv",
        "521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699",
    ),
}
SYNTH_ROWS = {"train.csv": 40, "test.csv": 10}  # per class
EVAL_BATCH = 256
EVAL_TIMEOUT_S = 600
EVAL_MEMORY_MB = 8192
DATA_DIR = Path(os.environ.get("ONEGC_DATA_DIR") or Path(__file__).resolve().parent / "data")

# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

_TOPIC_WORDS = (
    ("minister", "election", "troops", "embassy", "summit"),
    ("coach", "season", "playoff", "striker", "medal"),
    ("shares", "profit", "merger", "investors", "quarterly"),
    ("software", "internet", "satellite", "researchers", "chip"),
)


def write_synthetic_csv(path: Path, per_class: int, seed: int) -> Path:
    """AG-News-format rows (all fields quoted, "" inside, stray backslashes, #39; leftovers)."""
    rng = np.random.default_rng(seed)
    filler = ["the", "a", "of", "to", "in", "on", "says", "new", "after", "over"]
    rows = []
    for label in range(1, N_CLASSES + 1):
        topic = _TOPIC_WORDS[label - 1]
        for i in range(per_class):
            words = list(rng.choice(topic, size=4)) + list(rng.choice(filler, size=6))
            rng.shuffle(words)
            title = " ".join(words[:5]).title() + (" (Reuters)" if i % 3 == 0 else "")
            desc = " ".join(words[5:]) + f' "{topic[i % 5]}" it#39;s \\ up #36;{i}'
            rows.append((str(label), title, desc))
    order = rng.permutation(len(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
        w.writerows(rows[i] for i in order)
    os.replace(tmp, path)
    return path


def read_csv(path: Path) -> tuple[np.ndarray, list[str]]:
    """Labels 0..3 (int64) and texts title + " " + description, in file order."""
    labels, texts = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) != 3:
                raise ValueError(f"{path.name}: expected 3 columns, got {len(row)}")
            labels.append(int(row[0]) - 1)
            texts.append(f"{row[1]} {row[2]}")
    y = np.array(labels, dtype=np.int64)
    if y.min() < 0 or y.max() >= N_CLASSES:
        raise ValueError(f"{path.name}: labels outside 1..4")
    return y, texts


def encode(texts: list[str]) -> np.ndarray:
    """ASCII codes (n, 1014) uint8: non-ASCII -> 127, truncated, zero-padded at the end."""
    out = np.full((len(texts), MAX_LEN), PAD_ID, dtype=np.uint8)
    for i, text in enumerate(texts):
        codes = np.frombuffer(text[:MAX_LEN].encode("utf-32-le"), dtype=np.uint32)
        out[i, : len(codes)] = np.where(codes < 128, codes, NON_ASCII_ID)
    return out


def prepare(data_dir: Path, synthetic: bool, source_dir: Path | None = None) -> dict[str, Any]:
    """Fetch (or synthesise) train.csv/test.csv into DIR/source, then agent/ and eval/."""
    data_dir = Path(data_dir).resolve()
    if taskkit.manifest_valid(data_dir, TASK, synthetic):
        return json.loads((data_dir / taskkit.MANIFEST).read_text())
    src = data_dir / "source"
    for seed, (name, (url, sha)) in enumerate(SOURCES.items()):
        if synthetic:
            write_synthetic_csv(src / name, SYNTH_ROWS[name], seed)
        else:
            taskkit.fetch(url, src / name, sha, source_dir=source_dir)
    agent = data_dir / "agent"
    ev = taskkit.private_dir(data_dir / "eval")
    for name, split in (("train.csv", "train"), ("test.csv", "val")):
        y, texts = read_csv(src / name)
        x = encode(texts)
        taskkit.save_array(agent / f"{split}_x.npy", x)
        taskkit.save_array(agent / f"{split}_y.npy", y)
        if split == "val":  # trusted copy: inputs for the model process, labels private
            tmp = ev / ".inputs.tmp.npz"
            np.savez(tmp, x=x)
            os.chmod(tmp, 0o600)
            os.replace(tmp, ev / "inputs.npz")
            taskkit.save_array(ev / "labels.npy", y, private=True)
    return taskkit.write_manifest(data_dir, TASK, synthetic)


# ---------------------------------------------------------------------------
# Runtime helpers (import these from your run_x.py)
# ---------------------------------------------------------------------------


def smoke() -> bool:
    """ONEGC_SMOKE=1: a few CPU steps on tiny data, for tests."""
    return os.environ.get("ONEGC_SMOKE") == "1"


def time_budget_s() -> float:
    """Training wall-time cap: ONEGC_TIME_BUDGET_S when set, else the task budget."""
    return float(os.environ.get("ONEGC_TIME_BUDGET_S") or TIME_BUDGET)


def load_split(split: str, data_dir: Path | str = DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(codes (n, 1014) uint8, labels (n,) int64) of "train" or "val"."""
    if split not in ("train", "val"):
        raise ValueError("split must be 'train' or 'val'")
    d = Path(data_dir)
    return np.load(d / f"{split}_x.npy", mmap_mode="r"), np.load(d / f"{split}_y.npy")


def batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (codes int64 (B, 1014), labels int64 (B,)) tensors."""
    order = np.random.default_rng(seed).permutation(len(y)) if shuffle else np.arange(len(y))
    for i in range(0, len(y), batch_size):
        idx = np.sort(order[i : i + batch_size])  # sorted: faster memmap reads
        yield torch.from_numpy(x[idx].astype(np.int64)), torch.from_numpy(y[idx])


def evaluate_accuracy(model: torch.nn.Module, data_dir: Path | str = DATA_DIR) -> float:
    """Self-evaluation: accuracy on all validation rows, same code as the official one."""
    x, y = load_split("val", data_dir)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = predict_logits(model, {"x": np.asarray(x)})
    model.train(was_training)
    return accuracy(logits, y)


def save_checkpoint(model: torch.nn.Module, config: dict, score: float, **kw: Any) -> Path:
    """Save a scored checkpoint into checkpoints/ (the output contract, Rule 7)."""
    return taskkit.save_checkpoint(model, config, score, task=TASK, metric=METRIC, **kw)


# ---------------------------------------------------------------------------
# Evaluation (DO NOT CHANGE -- this is the fixed metric)
# ---------------------------------------------------------------------------


def predict_logits(model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Logits (n, 4) for every row of ``inputs["x"]``, in order."""
    x = inputs["x"]
    device = taskkit.model_device(model)
    out = []
    for i in range(0, len(x), EVAL_BATCH):
        xb = torch.from_numpy(x[i : i + EVAL_BATCH].astype(np.int64)).to(device)
        logits = model(xb)
        if tuple(logits.shape) != (len(xb), N_CLASSES):
            raise ValueError(f"model output {tuple(logits.shape)}, expected (B, 4)")
        out.append(logits.float().cpu().numpy())
    return np.concatenate(out)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax logit is the label (ties -> lowest class index)."""
    if logits.shape != (len(labels), N_CLASSES):
        raise EvalFailure("predict_error", f"logits {logits.shape}, expected ({len(labels)}, 4)")
    if not np.isfinite(logits).all():
        raise EvalFailure("predict_error", "non-finite logits")
    return float(np.mean(logits.argmax(axis=1) == labels))


def official_eval(ckpt: Path, data_dir: Path, script_dir: Path, as_json: bool) -> None:
    """Score a checkpoint on all validation rows (prints, exits 3 on failure)."""
    ev = Path(data_dir).resolve() / "eval"
    labels = np.load(ev / "labels.npy")
    taskkit.official_eval(
        task=TASK, metric=METRIC, split="validation", ckpt=ckpt, script_dir=script_dir,
        inputs_npz=ev / "inputs.npz", predict="predict_logits",
        score=lambda logits: accuracy(logits, labels), as_json=as_json,
        timeout_s=taskkit.eval_limit_s(EVAL_TIMEOUT_S), memory_mb=EVAL_MEMORY_MB, hide=[data_dir],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Command line: data preparation, or ``--eval`` for the official score."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--source-dir", type=Path)
    ap.add_argument("--eval", type=Path, metavar="CKPT")
    ap.add_argument("--script-dir", type=Path, default=Path.cwd())
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.eval is not None:
        official_eval(args.eval, args.data_dir, args.script_dir, args.json)
        return
    manifest = prepare(args.data_dir, args.synthetic, args.source_dir)
    print(f"{TASK}: prepared {len(manifest['files'])} files in {args.data_dir}")


if __name__ == "__main__":
    main()
