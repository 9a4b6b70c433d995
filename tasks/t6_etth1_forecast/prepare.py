"""T6 -- ETTh1 multivariate forecasting, look-back 336, horizon 96 (1GC-7RC).

LOCKED (paper Rule 1): agents must not modify this file. Scripts import its runtime helpers.

Usage:
    python prepare.py --data-dir DIR [--synthetic] [--source-dir SRC]    # one-time data prep
    python prepare.py --eval CKPT --data-dir DIR --script-dir WS [--json]  # the official score

Data follow the standard LTSF protocol (``Dataset_ETT_hour``): all 7 numeric columns in and
out, 12/4/4-month borders, a StandardScaler fit on the training rows only (population std),
stride-1 windows. DIR/agent holds the scaled train and validation rows; the test rows go to
DIR/heldout (owner-only) and never into a workspace. The official metric is the MSE over
ALL 2,785 test windows on scaled data, computed by the trusted process from predictions of
the isolated model process, so it never depends on a batch size (no drop_last).
The test windows overlap (window j's target rows are inside window j+1..j+431's inputs), so
the official evaluation streams them: ONE window per call, in time order, each sent to the
model process only after it answered the previous one. The model process never holds a
row later than the window it is predicting, so neither looking at other windows nor
state kept across calls can see a target before it is predicted.

Model contract: ``build_model(config)`` returns a module mapping a float32 tensor
(B, 336, 7) to (B, 96, 7).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    import taskkit
except ImportError:  # run from the source folder tasks/t6_etth1_forecast/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_kit"))
    import taskkit

from taskkit import EvalFailure

# ---------------------------------------------------------------------------
# Constants (fixed, do not modify)
# ---------------------------------------------------------------------------

TASK = "t6"
METRIC = "mse"
TIME_BUDGET = 2400  # seconds of training (paper Table 2: 40 min)
SEQ_LEN = 336  # look-back
PRED_LEN = 96  # horizon
COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
N_FEATURES = len(COLUMNS)
MONTH = 30 * 24  # LTSF "month" of hourly rows
TRAIN_END = 12 * MONTH  # 8,640
VAL_END = TRAIN_END + 4 * MONTH  # 11,520
TEST_END = TRAIN_END + 8 * MONTH  # 14,400; rows after it are never used
# Row ranges [begin, end); val/test begin SEQ_LEN early so their first window has history.
SPLITS = {
    "train": (0, TRAIN_END),
    "val": (TRAIN_END - SEQ_LEN, VAL_END),
    "test": (VAL_END - SEQ_LEN, TEST_END),
}
N_TEST_WINDOWS = TEST_END - SPLITS["test"][0] - SEQ_LEN - PRED_LEN + 1  # 2,785
SOURCE_NAME = "ETTh1.csv"
SOURCE_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/ETTh1.csv"
SOURCE_SHA256 = "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"
SYNTH_ROWS = TEST_END + 20  # the borders are fixed, so synthetic data need >= 14,400 rows
EVAL_BATCH = 256
EVAL_TIMEOUT_S = 600
EVAL_MEMORY_MB = 8192
DATA_DIR = Path(os.environ.get("ONEGC_DATA_DIR") or Path(__file__).resolve().parent / "data")

# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def write_synthetic_csv(path: Path, rows: int = SYNTH_ROWS, seed: int = 0) -> Path:
    """A small ETTh1 look-alike in the exact on-disk format (header, date format, 7 floats)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows, dtype=np.float64)[:, None]
    phase = rng.uniform(0, 2 * np.pi, size=(1, N_FEATURES))
    level = rng.uniform(1, 20, size=(1, N_FEATURES))
    data = (
        level
        + 2.0 * np.sin(2 * np.pi * t / 24 + phase)
        + 1.0 * np.sin(2 * np.pi * t / (24 * 7) + 2 * phase)
        + 0.0002 * t
        + 0.3 * rng.standard_normal((rows, N_FEATURES))
    )
    start = datetime(2016, 7, 1)
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("date", *COLUMNS))
        for i, row in enumerate(data):
            stamp = (start + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S")
            w.writerow((stamp, *(repr(float(v)) for v in row)))
    os.replace(tmp, path)
    return path


def read_csv(path: Path) -> np.ndarray:
    """The 7 numeric columns as float64 (rows, 7); the date column is unused (DLinear)."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if tuple(header) != ("date", *COLUMNS):
            raise ValueError(f"{path.name}: unexpected header {header}")
        data = np.array([[float(v) for v in row[1:]] for row in reader], dtype=np.float64)
    if data.shape[0] < TEST_END:
        raise ValueError(f"{path.name}: {data.shape[0]} rows, the LTSF borders need {TEST_END}")
    return data


def scale(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """StandardScaler fit on the training rows only (ddof=0), applied to the whole series."""
    train = data[: SPLITS["train"][1]]
    mean, std = train.mean(axis=0), train.std(axis=0)
    return (data - mean) / std, mean, std


def prepare(data_dir: Path, synthetic: bool, source_dir: Path | None = None) -> dict[str, Any]:
    """Fetch (or synthesise) ETTh1.csv into DIR/source, then write agent/ and heldout/."""
    data_dir = Path(data_dir).resolve()
    if taskkit.manifest_valid(data_dir, TASK, synthetic):
        return json.loads((data_dir / taskkit.MANIFEST).read_text())
    src = data_dir / "source" / SOURCE_NAME
    if synthetic:
        write_synthetic_csv(src)
    else:
        taskkit.fetch(SOURCE_URL, src, SOURCE_SHA256, source_dir=source_dir)
    scaled, mean, std = scale(read_csv(src))
    scaled = scaled.astype(np.float32)
    agent = data_dir / "agent"
    for split in ("train", "val"):
        b, e = SPLITS[split]
        taskkit.save_array(agent / f"{split}.npy", scaled[b:e])
    meta = {"columns": COLUMNS, "mean": mean.tolist(), "std": std.tolist(), "splits": SPLITS}
    taskkit.write_atomic(agent / "meta.json", json.dumps(meta, indent=1).encode())
    heldout = taskkit.private_dir(data_dir / "heldout")
    b, e = SPLITS["test"]
    # Inputs: every row a test window reads; labels: every row a test window predicts.
    inputs = heldout / "inputs.npz"
    tmp = heldout / ".inputs.tmp.npz"
    np.savez(tmp, series=scaled[b : e - PRED_LEN])
    os.chmod(tmp, 0o600)
    os.replace(tmp, inputs)
    taskkit.save_array(heldout / "labels.npy", scaled[b + SEQ_LEN : e], private=True)
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


def load_split(split: str, data_dir: Path | str = DATA_DIR) -> np.ndarray:
    """Scaled rows (n, 7) float32 of "train" or "val" (val starts 336 rows early)."""
    if split not in ("train", "val"):
        raise ValueError("the agent data hold only the 'train' and 'val' splits")
    return np.load(Path(data_dir) / f"{split}.npy")


def num_windows(n_rows: int) -> int:
    """Stride-1 windows in a series of n_rows (LTSF ``__len__``)."""
    return n_rows - SEQ_LEN - PRED_LEN + 1


def input_windows(series: np.ndarray) -> np.ndarray:
    """All (SEQ_LEN, 7) input windows, stride 1, as a zero-copy view (n, 336, 7)."""
    view = np.lib.stride_tricks.sliding_window_view(series, SEQ_LEN, axis=0)
    return view.transpose(0, 2, 1)


def target_windows(targets: np.ndarray) -> np.ndarray:
    """All (PRED_LEN, 7) target windows of the rows after the first look-back (n, 96, 7)."""
    view = np.lib.stride_tricks.sliding_window_view(targets, PRED_LEN, axis=0)
    return view.transpose(0, 2, 1)


def batches(
    series: np.ndarray, batch_size: int, *, shuffle: bool, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (x (B,336,7), y (B,96,7)) float32 tensors over all windows of a split."""
    n = num_windows(len(series))
    x_all, y_all = input_windows(series[:-PRED_LEN]), target_windows(series[SEQ_LEN:])
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        yield torch.from_numpy(x_all[idx].copy()), torch.from_numpy(y_all[idx].copy())


def evaluate_val(model: torch.nn.Module, data_dir: Path | str = DATA_DIR) -> float:
    """Self-evaluation: MSE over every validation window, same code as the official one."""
    series = load_split("val", data_dir)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        pred = predict_windows(model, {"series": series[:-PRED_LEN]})
    model.train(was_training)
    return mse(pred, target_windows(series[SEQ_LEN:]))


def save_checkpoint(model: torch.nn.Module, config: dict, score: float, **kw: Any) -> Path:
    """Save a scored checkpoint into checkpoints/ (the output contract, Rule 7)."""
    return taskkit.save_checkpoint(model, config, score, task=TASK, metric=METRIC, **kw)


# ---------------------------------------------------------------------------
# Evaluation (DO NOT CHANGE -- this is the fixed metric)
# ---------------------------------------------------------------------------


def predict_windows(model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Forecasts (n, 96, 7) for every stride-1 window of ``inputs["series"]``, in order."""
    windows = input_windows(inputs["series"].astype(np.float32))
    device = taskkit.model_device(model)
    out = []
    for i in range(0, len(windows), EVAL_BATCH):
        x = torch.from_numpy(np.ascontiguousarray(windows[i : i + EVAL_BATCH])).to(device)
        y = model(x)
        if tuple(y.shape) != (len(x), PRED_LEN, N_FEATURES):
            raise ValueError(f"model output {tuple(y.shape)}, expected (B, 96, 7)")
        out.append(y.float().cpu().numpy())
    return np.concatenate(out)


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over all windows, steps and channels, in float64."""
    if pred.shape != target.shape:
        raise EvalFailure("predict_error", f"predictions {pred.shape}, expected {target.shape}")
    if not np.isfinite(pred).all():
        raise EvalFailure("predict_error", "non-finite predictions")
    return float(np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2))


def test_items(series: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
    """The official presentation: each test window alone, in time order (see the docstring)."""
    for j in range(num_windows(len(series) + PRED_LEN)):
        yield {"series": np.ascontiguousarray(series[j : j + SEQ_LEN], dtype=np.float32)}


def official_eval(ckpt: Path, data_dir: Path, script_dir: Path, as_json: bool) -> None:
    """Score a checkpoint on all 2,785 held-out test windows (prints, exits 3 on failure)."""
    heldout = Path(data_dir).resolve() / "heldout"
    targets = target_windows(np.load(heldout / "labels.npy"))
    if len(targets) != N_TEST_WINDOWS:
        raise RuntimeError(f"{len(targets)} test windows, expected {N_TEST_WINDOWS}")
    with np.load(heldout / "inputs.npz") as npz:
        series = npz["series"]

    def produce(time_left: Any) -> np.ndarray:
        preds = taskkit.predict_stream(
            ckpt, script_dir, test_items(series), predict="predict_windows",
            timeout_s=time_left(), memory_mb=EVAL_MEMORY_MB, hide=[data_dir],
        )  # fmt: skip
        return np.concatenate(preds) if preds else np.zeros((0, PRED_LEN, N_FEATURES))

    taskkit.official_eval(
        task=TASK, metric=METRIC, split="test", ckpt=ckpt, script_dir=script_dir,
        predict="predict_windows", produce=produce,
        score=lambda pred: mse(pred, targets), as_json=as_json,
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
