"""T5 -- Forest Cover Type (UCI covtype): data preparation, runtime helpers, official evaluation.

LOCKED: the agent must not modify this file (paper Rule 1); scoring always uses the registry's
original copy (Rule 8).

Usage:
    python prepare.py --data-dir DIR [--synthetic] [--source-dir SRC]
        Download covtype.data.gz (sha256-checked; copied from SRC or $ONEGC_SOURCE_DIR when a
        file of that name is there), or synthesise a small file in exactly the same format, then
        split it stratified 80/10/10 with pinned seeds, standardise with a scaler fit on train
        only and write
            DIR/source/covtype.data.gz   the canonical gzip CSV (54 integer features + label 1..7)
            DIR/agent/                   train.npz, val.npz, scaler.npz (what a workspace gets)
            DIR/heldout/                 test_inputs.npz, test_labels.npy, test_index.npy
            DIR/prepared.json            {task, synthetic, files: {relpath: sha256}}
        DIR/source and DIR/heldout are root-only (0700/0600) when run as root, because they hold
        the test labels. Idempotent: a second run with the same arguments only re-verifies.
    python prepare.py --eval CKPT --data-dir DIR --script-dir WS [--json]
        The one official score: accuracy over every row of the held-out test split. The model is
        rebuilt from WS's script in an isolated child process that sees the test inputs only.

Agent scripts (run_x.py) import the runtime helpers below, e.g.
    from prepare import TIME_BUDGET, load_split, evaluate_accuracy, save_checkpoint
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

try:
    from taskkit import EvalFailure, eval_limit_s, fetch, manifest_valid, save_array, write_manifest
    from taskkit import official_eval as _kit_official_eval
    from taskkit import save_checkpoint as _kit_save_checkpoint
except ImportError:  # run from the source tree (tasks/t5_covertype_mlp/), taskkit is in ../_kit
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_kit"))
    from taskkit import EvalFailure, eval_limit_s, fetch, manifest_valid, save_array, write_manifest
    from taskkit import official_eval as _kit_official_eval
    from taskkit import save_checkpoint as _kit_save_checkpoint

# ---------------------------------------------------------------------------------------------
# Constants (fixed, do not modify)
# ---------------------------------------------------------------------------------------------

TASK_ID = "t5"
METRIC = "accuracy"
TIME_BUDGET = 2400  # seconds of wall clock for the whole task (paper Table 2: 40 min)

SOURCE_FILE = "covtype.data.gz"
SOURCE_URLS = (  # figshare (what sklearn uses) sometimes answers 403; UCI is the fallback
    "https://ndownloader.figshare.com/files/5976039",
    "https://archive.ics.uci.edu/ml/machine-learning-databases/covtype/covtype.data.gz",
)
SOURCE_SHA256 = "614360d0257557dd1792834a85a1cdebfadc3c4f30b011d56afee7ffb5b15771"

NUM_FEATURES = 54  # 10 quantitative + 4 wilderness one-hot + 40 soil one-hot
NUM_CLASSES = 7  # Cover_Type 1..7 on disk, 0..6 everywhere after loading
# Real-file invariants: checked so a corrupt or different file can never be scored silently.
REAL_ROWS = 581_012
REAL_CLASS_COUNTS = (211_840, 283_301, 35_754, 2_747, 9_493, 17_367, 20_510)
REAL_SPLIT_SIZES = (464_809, 58_101, 58_102)  # train / val / test

# The split: stratified 80/20 (train / rest), then the rest stratified 50/50 (val / test),
# each part of size ceil(fraction * n) as sklearn's train_test_split would size it.
HOLDOUT_FRACTION = 0.2
TEST_FRACTION_OF_HOLDOUT = 0.5
SPLIT_SEED = 20_240_501

EVAL_BATCH_SIZE = 8192
EVAL_TIMEOUT_S = 600
EVAL_MEMORY_MB = 32_768

HERE = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("ONEGC_DATA_DIR") or HERE / "data")  # workspace copy of agent/
CHECKPOINT_DIR = HERE / "checkpoints"

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _restrict(path: Path) -> None:
    """Make path root-only when we are root: the model child runs as another uid (Rule 8)."""
    if not _is_root():
        return
    path.chmod(0o700 if path.is_dir() else 0o600)
    if path.is_dir():
        for p in path.rglob("*"):
            p.chmod(0o700 if p.is_dir() else 0o600)


def _atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz via a temp file + os.replace so a crash never leaves a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp.npz")
    os.close(fd)
    np.savez(tmp, **arrays)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; agent files must stay readable by the agent
    os.replace(tmp, path)


def write_synthetic_source(dest: Path, rows: int = 700, seed: int = 0) -> None:
    """Write a small covtype.data.gz in the exact UCI format, learnable from elevation.

    Same encoding as the real file: gzip text, no header, 55 comma-separated integers per row
    (10 quantitative, 4 one-hot wilderness, 40 one-hot soil, Cover_Type 1..7), '\\n' endings.
    Every class appears at least 10 times so the stratified split has something to stratify.
    """
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(1, NUM_CLASSES + 1).repeat(10),
                             rng.integers(1, NUM_CLASSES + 1, rows - 10 * NUM_CLASSES)])
    rng.shuffle(labels)
    n = len(labels)
    quant = np.stack([
        1859 + (labels - 1) * 280 + rng.integers(0, 300, n),  # Elevation (m), class-dependent
        rng.integers(0, 361, n),  # Aspect
        rng.integers(0, 67, n),  # Slope
        rng.integers(0, 1398, n),  # Horizontal_Distance_To_Hydrology
        rng.integers(-173, 602, n),  # Vertical_Distance_To_Hydrology
        rng.integers(0, 7118, n),  # Horizontal_Distance_To_Roadways
        rng.integers(0, 255, n),  # Hillshade_9am
        rng.integers(0, 255, n),  # Hillshade_Noon
        rng.integers(0, 255, n),  # Hillshade_3pm
        rng.integers(0, 7174, n),  # Horizontal_Distance_To_Fire_Points
    ], axis=1)
    wilderness = np.eye(4, dtype=np.int64)[rng.integers(0, 4, n)]
    soil = np.eye(40, dtype=np.int64)[(labels * 5 + rng.integers(0, 5, n)) % 40]
    table = np.concatenate([quant, wilderness, soil, labels[:, None]], axis=1)
    text = "".join(",".join(map(str, row)) + "\n" for row in table.tolist())
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with gzip.open(tmp, "wb") as fh:
        fh.write(text.encode("ascii"))
    os.replace(tmp, dest)


def read_covtype(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse covtype.data.gz into X (n, 54) int64 and y (n,) int64 in 0..6 (file has 1..7)."""
    with gzip.open(path, "rt", encoding="ascii") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != NUM_FEATURES + 1:
        raise ValueError(f"{path}: expected {NUM_FEATURES + 1} columns, got {table.shape[1]}")
    y = table[:, -1]
    if y.min() < 1 or y.max() > NUM_CLASSES:
        raise ValueError(f"{path}: Cover_Type outside 1..{NUM_CLASSES}")
    return table[:, :-1], y - 1


def stratified_split(y: np.ndarray, test_fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (rest, test) keeping class proportions, pinned by seed.

    The test part has ceil(test_fraction * n) rows, as in sklearn's train_test_split. Per-class
    test counts are the largest-remainder rounding of the proportional share, so they sum to
    exactly that; rows are drawn per class from a seeded permutation. Both outputs are sorted.
    """
    n = len(y)
    n_test = math.ceil(test_fraction * n)
    classes, counts = np.unique(y, return_counts=True)
    share = counts * n_test / n
    alloc = np.floor(share).astype(np.int64)
    leftover = n_test - int(alloc.sum())
    alloc[np.argsort(-(share - alloc), kind="stable")[:leftover]] += 1
    rng = np.random.default_rng(seed)
    rest, test = [], []
    for cls, k in zip(classes, alloc, strict=True):
        members = rng.permutation(np.flatnonzero(y == cls))
        test.append(members[:k])
        rest.append(members[k:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(test))


def split_indices(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pinned train / val / test row indices (80/10/10, stratified)."""
    train, holdout = stratified_split(y, HOLDOUT_FRACTION, SPLIT_SEED)
    val_pos, test_pos = stratified_split(y[holdout], TEST_FRACTION_OF_HOLDOUT, SPLIT_SEED + 1)
    return train, holdout[val_pos], holdout[test_pos]


def fit_scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """StandardScaler on all 54 columns (the paper's literal reading), fit on train rows only.

    Population std (ddof=0) and scale 1 for constant columns, as sklearn does.
    """
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0.0] = 1.0
    return mean, scale


def _already_prepared(data_dir: Path, synthetic: bool) -> bool:
    """True when DIR holds this exact preparation; refuse to mix tasks or real/synthetic."""
    manifest = data_dir / "prepared.json"
    if manifest.exists():
        meta = json.loads(manifest.read_text())
        if (meta.get("task"), meta.get("synthetic")) != (TASK_ID, synthetic):
            kind = "synthetic" if meta.get("synthetic") else "real"
            raise SystemExit(f"error: {data_dir} already holds {kind} {meta.get('task')} data; "
                             "use another --data-dir")
    return manifest_valid(data_dir, TASK_ID, synthetic)


def prepare(data_dir: Path, synthetic: bool, source_dir: Path | None) -> dict:
    """Download or synthesise the source file, split, scale and write agent/ and heldout/."""
    data_dir = data_dir.resolve()
    if _already_prepared(data_dir, synthetic):
        print(f"{TASK_ID}: {data_dir} already prepared (hashes verified)")
        return json.loads((data_dir / "prepared.json").read_text())
    source = data_dir / "source" / SOURCE_FILE
    source.parent.mkdir(parents=True, exist_ok=True)
    _restrict(source.parent)  # the source holds the test labels too
    if synthetic:
        write_synthetic_source(source)
    else:
        last: Exception | None = None
        for url in SOURCE_URLS:
            try:
                fetch(url, source, SOURCE_SHA256, source_dir=source_dir)
                break
            except Exception as exc:  # noqa: BLE001 -- try the next mirror, report the last
                last = exc
        else:
            raise SystemExit(f"error: could not fetch {SOURCE_FILE}: {last}")
    _restrict(source.parent)

    x, y = read_covtype(source)
    train, val, test = split_indices(y)
    if not synthetic:
        counts = tuple(int(c) for c in np.bincount(y, minlength=NUM_CLASSES))
        sizes = (len(train), len(val), len(test))
        if len(y) != REAL_ROWS or counts != REAL_CLASS_COUNTS or sizes != REAL_SPLIT_SIZES:
            raise SystemExit(f"error: {source} is not the canonical file "
                             f"(rows {len(y)}, class counts {counts}, split {sizes})")
    mean, scale = fit_scaler(x[train].astype(np.float64))

    def scaled(idx: np.ndarray) -> np.ndarray:
        return ((x[idx] - mean) / scale).astype(np.float32)

    agent = data_dir / "agent"
    _atomic_save_npz(agent / "train.npz", x=scaled(train), y=y[train], index=train)
    _atomic_save_npz(agent / "val.npz", x=scaled(val), y=y[val], index=val)
    _atomic_save_npz(agent / "scaler.npz", mean=mean, scale=scale)
    heldout = data_dir / "heldout"
    heldout.mkdir(parents=True, exist_ok=True)
    _restrict(heldout)  # before anything lands in it
    _atomic_save_npz(heldout / "test_inputs.npz", x=scaled(test))
    save_array(heldout / "test_labels.npy", y[test], private=True)
    save_array(heldout / "test_index.npy", test, private=True)
    _restrict(heldout)

    meta = write_manifest(data_dir, TASK_ID, synthetic)
    print(f"{TASK_ID}: prepared {len(train)} / {len(val)} / {len(test)} rows "
          f"({'synthetic' if synthetic else 'real'}) in {data_dir}")
    return meta


# ---------------------------------------------------------------------------------------------
# Runtime helpers (import these from run_x.py)
# ---------------------------------------------------------------------------------------------


def load_split(split: str, device: str | torch.device = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised features (n, 54) float32 and class ids (n,) int64 of "train" or "val"."""
    if split not in ("train", "val"):
        raise ValueError("split must be 'train' or 'val' (the test split is held out)")
    with np.load(DATA_DIR / f"{split}.npz") as z:
        return (torch.from_numpy(z["x"]).to(device), torch.from_numpy(z["y"]).to(device))


def load_scaler() -> tuple[np.ndarray, np.ndarray]:
    """The train-fit (mean, scale), to recover raw feature values: raw = x * scale + mean."""
    with np.load(DATA_DIR / "scaler.npz") as z:
        return z["mean"], z["scale"]


def save_checkpoint(model: torch.nn.Module, config: dict, score: float,
                    name: str | None = None) -> Path:
    """Save a scored checkpoint into checkpoints/ (Rule 7); score = your validation accuracy."""
    return _kit_save_checkpoint(model, config, score, task=TASK_ID, metric=METRIC,
                                ckpt_dir=CHECKPOINT_DIR, name=name)


def evaluate_accuracy(model: torch.nn.Module) -> float:
    """Self-evaluation on the validation split with the same code path as the official eval."""
    with np.load(DATA_DIR / "val.npz") as z:
        inputs, labels = {"x": z["x"]}, z["y"]
    return accuracy(predict_classes(model, inputs), labels)


# ---------------------------------------------------------------------------------------------
# Evaluation (DO NOT CHANGE -- this is the fixed metric)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_classes(model: torch.nn.Module, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Class ids (n,) for inputs["x"] (n, 54) standardised float32; model(x) -> (B, 7) scores.

    Runs in the isolated child during the official evaluation. Fixed batch size and eval mode,
    so the result does not depend on how the agent batches.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.from_numpy(np.asarray(inputs["x"], dtype=np.float32))
    model.to(device).eval()
    out = []
    for start in range(0, len(x), EVAL_BATCH_SIZE):
        scores = model(x[start:start + EVAL_BATCH_SIZE].to(device))
        out.append(scores.argmax(dim=1).cpu())
    return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, np.int64)


def accuracy(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    """mean(y_pred == y_true) over every row; predictions must be (n,) class ids in 0..6."""
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"predictions have shape {y_pred.shape}, expected {y_true.shape}")
    if y_true.size == 0:
        raise ValueError("empty evaluation split")
    return float(np.mean(y_pred == y_true))


def official_eval(ckpt: Path, data_dir: Path, script_dir: Path, as_json: bool) -> None:
    """Score ckpt on the held-out test split; the labels never leave this (trusted) process.

    The model child sees a copy of test_inputs.npz only; DIR (sources, labels) and the
    workspace are hidden from it. Malformed predictions are a classified predict_error.
    """
    data_dir = data_dir.resolve()
    heldout = data_dir / "heldout"
    labels = np.load(heldout / "test_labels.npy")

    def score(pred: np.ndarray) -> float:
        try:
            return accuracy(pred, labels)
        except (ValueError, RuntimeError) as exc:
            raise EvalFailure("predict_error", str(exc)) from exc

    _kit_official_eval(task=TASK_ID, metric=METRIC, split="test", ckpt=ckpt,
                       script_dir=script_dir, inputs_npz=heldout / "test_inputs.npz",
                       predict="predict_classes", score=score, as_json=as_json,
                       timeout_s=eval_limit_s(EVAL_TIMEOUT_S), memory_mb=EVAL_MEMORY_MB, hide=[data_dir])


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
        official_eval(args.eval, args.data_dir, args.script_dir, args.json)
        return 0
    prepare(args.data_dir, args.synthetic, args.source_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
