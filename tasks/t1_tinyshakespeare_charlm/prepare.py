"""T1 -- TinyShakespeare character-level language modelling (1GC-7RC).

LOCKED (paper Rule 1): agents must not modify this file. Scripts import its runtime helpers.

Usage:
    python prepare.py --data-dir DIR [--synthetic] [--source-dir SRC]    # one-time data prep
    python prepare.py --eval CKPT --data-dir DIR --script-dir WS [--json]  # the official score

Data follow nanoGPT's ``shakespeare_char``: the vocabulary is ``sorted(set(text))`` over the
whole file (65 characters), ids are positions in it, the first 90% of characters are train
(1,003,854) and the rest validation (111,540), stored as raw little-endian uint16
``train.bin``/``val.bin`` with ``meta.pkl`` (vocab_size, itos, stoi).

The official metric is validation bits per byte (the text is ASCII, so per character),
computed DETERMINISTICALLY: every validation target (111,539) is scored exactly once, in
non-overlapping windows of EVAL_BLOCK=256 tokens (435 full windows plus a 179-token tail),
each window starting with an empty context. The model process returns logits; the trusted
process applies log-softmax itself and takes the targets' log-probabilities, so a model
cannot report unnormalised scores.

The validation text is one stream, and a window's input holds the targets of its own earlier
positions (teacher forcing). So the official evaluation (1) streams the windows ONE per call,
in order, each sent only after the previous one was answered: the model process never holds
text beyond the window it predicts (no next window in its batch, nothing ahead in its state);
and (2) proves causality within a window: a second, separate model process first sees every
window cut at a secret random point and continued with earlier text, and the real window's
log-probabilities before the cut must equal that process's (CAUSAL_ATOL). A model that reads
a position's target from the input changes them and gets ``non_causal``, no score.

Model contract: ``build_model(config)`` returns a module mapping token ids (B, T) int64,
T <= 256, to logits (B, T, vocab_size) (a tuple whose first item is the logits is accepted).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import secrets
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    import taskkit
except ImportError:  # run from the source folder tasks/t1_tinyshakespeare_charlm/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_kit"))
    import taskkit

from taskkit import EvalFailure

# ---------------------------------------------------------------------------
# Constants (fixed, do not modify)
# ---------------------------------------------------------------------------

TASK = "t1"
METRIC = "val_bpb"
TIME_BUDGET = 2400  # seconds of training (paper Table 2: 40 min)
TRAIN_FRACTION = 0.9
EVAL_BLOCK = 256  # context length of the official evaluation (pinned: bpb depends on it)
EVAL_BATCH = 32
SOURCE_NAME = "input.txt"
SOURCE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
SOURCE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
# The real vocabulary; synthetic text uses exactly these characters so shapes match.
ALPHABET = "\n !$&',-.3:;?" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abcdefghijklmnopqrstuvwxyz"
SYNTH_CHARS = 20_000
EVAL_TIMEOUT_S = 600
CAUSAL_ATOL = 1e-3  # nats: log-probabilities before the cut must agree this well
EVAL_MEMORY_MB = 8192
DATA_DIR = Path(os.environ.get("ONEGC_DATA_DIR") or Path(__file__).resolve().parent / "data")

# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def write_synthetic_text(path: Path, n_chars: int = SYNTH_CHARS, seed: int = 0) -> Path:
    """Play-like ASCII text (speaker lines) that uses every character of the real alphabet."""
    rng = np.random.default_rng(seed)
    lower = list("abcdefghijklmnopqrstuvwxyz")
    words = ["".join(rng.choice(lower, size=rng.integers(2, 8))) for _ in range(300)]
    speakers = ["FIRST CITIZEN", "MENENIUS", "GREMIO", "KING RICHARD III"]
    parts = ["First Citizen:\nBefore we proceed any further, hear me speak.\n\n"]
    size = len(parts[0])
    while size < n_chars:
        line = " ".join(rng.choice(words, size=rng.integers(4, 12)))
        line = line.capitalize() + rng.choice(list(".,;:?!-'")) + "\n"
        block = f"{rng.choice(speakers)}:\n{line}\n"
        parts.append(block)
        size += len(block)
    parts.append("ALL:\n$3 & 'Xerxes' quoth JQZVW? " + "".join(ALPHABET) + "\n")
    text = "".join(parts)
    taskkit.write_atomic(path, text.encode("ascii"))
    return path


def split_text(text: str) -> tuple[str, str, list[str]]:
    """nanoGPT's split: vocabulary over the whole text, first 90% train, rest validation."""
    chars = sorted(set(text))
    n = len(text)
    cut = int(n * TRAIN_FRACTION)
    return text[:cut], text[cut:], chars


def encode(text: str, chars: list[str]) -> np.ndarray:
    """Character ids as uint16 (the nanoGPT .bin format)."""
    lut = np.zeros(128, dtype=np.uint16)
    lut[[ord(c) for c in chars]] = np.arange(len(chars), dtype=np.uint16)
    return lut[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]


def prepare(data_dir: Path, synthetic: bool, source_dir: Path | None = None) -> dict[str, Any]:
    """Fetch (or synthesise) input.txt into DIR/source, then write agent/ and eval/."""
    data_dir = Path(data_dir).resolve()
    if taskkit.manifest_valid(data_dir, TASK, synthetic):
        return json.loads((data_dir / taskkit.MANIFEST).read_text())
    src = data_dir / "source" / SOURCE_NAME
    if synthetic:
        write_synthetic_text(src)
    else:
        taskkit.fetch(SOURCE_URL, src, SOURCE_SHA256, source_dir=source_dir)
    text = src.read_text(encoding="ascii")
    train, val, chars = split_text(text)
    agent = data_dir / "agent"
    agent.mkdir(parents=True, exist_ok=True)
    train_ids, val_ids = encode(train, chars), encode(val, chars)
    taskkit.write_atomic(agent / "train.bin", train_ids.tobytes())
    taskkit.write_atomic(agent / "val.bin", val_ids.tobytes())
    meta = {
        "vocab_size": len(chars),
        "itos": dict(enumerate(chars)),
        "stoi": {c: i for i, c in enumerate(chars)},
    }
    taskkit.write_atomic(agent / "meta.pkl", pickle.dumps(meta))
    # Trusted copy of the evaluation split: inputs for the model process, targets private.
    ev = taskkit.private_dir(data_dir / "eval")
    tmp = ev / ".inputs.tmp.npz"
    np.savez(tmp, tokens=val_ids[:-1].astype(np.int64), vocab_size=np.int64(len(chars)))
    os.chmod(tmp, 0o600)
    os.replace(tmp, ev / "inputs.npz")
    taskkit.save_array(ev / "labels.npy", val_ids[1:].astype(np.int64), private=True)
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


def load_meta(data_dir: Path | str = DATA_DIR) -> dict[str, Any]:
    """nanoGPT meta: vocab_size, itos, stoi."""
    with open(Path(data_dir) / "meta.pkl", "rb") as f:
        return pickle.load(f)


def load_tokens(split: str, data_dir: Path | str = DATA_DIR) -> np.ndarray:
    """Token ids of "train" or "val" as a read-only uint16 memmap."""
    if split not in ("train", "val"):
        raise ValueError("split must be 'train' or 'val'")
    return np.memmap(Path(data_dir) / f"{split}.bin", dtype=np.uint16, mode="r")


def get_batch(
    data: np.ndarray,
    batch_size: int,
    block_size: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """nanoGPT-style random windows: x = data[i:i+T], y = data[i+1:i+1+T] (int64)."""
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([torch.from_numpy(data[i : i + block_size].astype(np.int64)) for i in ix])
    y = torch.stack(
        [torch.from_numpy(data[i + 1 : i + 1 + block_size].astype(np.int64)) for i in ix]
    )
    return x.to(device), y.to(device)


def steps_per_epoch(batch_size: int, block_size: int, data_dir: Path | str = DATA_DIR) -> int:
    """The pinned epoch: len(train) / (B * T) random windows (about 61 at 64 x 256)."""
    return max(1, len(load_tokens("train", data_dir)) // (batch_size * block_size))


def evaluate_bpb(
    model: torch.nn.Module, data_dir: Path | str = DATA_DIR, max_targets: int | None = None
) -> float:
    """Self-evaluation on validation with the official code (optionally a prefix only)."""
    val = np.asarray(load_tokens("val", data_dir), dtype=np.int64)
    if max_targets is not None:
        val = val[: max_targets + 1]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = predict_logits(model, {"tokens": val[:-1]})
    model.train(was_training)
    return bpb(logits, val[1:])


def save_checkpoint(model: torch.nn.Module, config: dict, score: float, **kw: Any) -> Path:
    """Save a scored checkpoint into checkpoints/ (the output contract, Rule 7)."""
    return taskkit.save_checkpoint(model, config, score, task=TASK, metric=METRIC, **kw)


# ---------------------------------------------------------------------------
# Evaluation (DO NOT CHANGE -- this is the fixed metric)
# ---------------------------------------------------------------------------


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    out = out[0] if isinstance(out, tuple | list) else out
    if out.dim() != 3 or tuple(out.shape[:2]) != tuple(x.shape):
        raise ValueError(f"model output {tuple(out.shape)}, expected (B, T, vocab)")
    return out.float()


def predict_logits(model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Logits (n, vocab) for every position of ``inputs["tokens"]``, in non-overlapping
    EVAL_BLOCK windows (full windows batched, then the tail), each with a fresh context."""
    tokens = torch.from_numpy(np.asarray(inputs["tokens"], dtype=np.int64))
    device = taskkit.model_device(model)
    n_full = len(tokens) // EVAL_BLOCK
    full = tokens[: n_full * EVAL_BLOCK].view(n_full, EVAL_BLOCK)
    out = [
        _logits(model, full[i : i + EVAL_BATCH].to(device)).flatten(0, 1).cpu()
        for i in range(0, n_full, EVAL_BATCH)
    ]
    tail = tokens[n_full * EVAL_BLOCK :]
    if len(tail):
        out.append(_logits(model, tail[None].to(device))[0].cpu())
    return torch.cat(out).numpy()


def bpb(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log2-likelihood per target character, log-softmax applied here."""
    if logits.ndim != 2 or logits.shape[0] != len(targets) or logits.shape[1] <= targets.max():
        raise EvalFailure(
            "predict_error", f"logits {logits.shape}, expected ({len(targets)}, vocab)"
        )
    logp = torch.log_softmax(torch.from_numpy(logits).double(), dim=-1)
    nll = -logp[torch.arange(len(targets)), torch.from_numpy(targets.astype(np.int64))]
    value = float(nll.mean()) / math.log(2)
    if not math.isfinite(value):
        raise EvalFailure("predict_error", "non-finite log-likelihood")
    return value


def eval_windows(tokens: np.ndarray) -> list[np.ndarray]:
    """The official windows: non-overlapping EVAL_BLOCK slices in order, then the tail."""
    return [tokens[i : i + EVAL_BLOCK] for i in range(0, len(tokens), EVAL_BLOCK)]


def causality_probes(tokens: np.ndarray, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """Per window, a copy cut at a random point ``c`` (1 <= c < len) whose rest is replaced by
    EARLIER text of the stream (window 0: its own prefix reversed), and the cuts."""
    rng = np.random.default_rng(seed)
    probes, cuts = [], []
    for start in range(0, len(tokens), EVAL_BLOCK):
        w = tokens[start : start + EVAL_BLOCK]
        if len(w) < 2:
            probes.append(w.copy())
            cuts.append(len(w))
            continue
        c = int(rng.integers(1, len(w)))
        n = len(w) - c
        if start >= n:
            off = int(rng.integers(0, start - n + 1))
            rest = tokens[off : off + n]
        else:
            rest = np.resize(w[:c][::-1], n)
        probes.append(np.concatenate([w[:c], rest]))
        cuts.append(c)
    return probes, cuts


def check_causal(real: list[np.ndarray], probe: list[np.ndarray], cuts: list[int]) -> None:
    """Raise ``non_causal`` when a window's log-probabilities before its cut depend on what
    follows the cut (the probe process never saw the real continuation)."""
    for k, (a, b, c) in enumerate(zip(real, probe, cuts, strict=True)):
        if a.shape != b.shape or a.ndim != 2 or c == 0:
            raise EvalFailure("predict_error", f"window {k}: logits {a.shape} and {b.shape}")
        la = torch.log_softmax(torch.from_numpy(a[:c]).double(), dim=-1)
        lb = torch.log_softmax(torch.from_numpy(b[:c]).double(), dim=-1)
        diff = float((la - lb).abs().nan_to_num(float("inf")).max())
        if not diff <= CAUSAL_ATOL:
            raise EvalFailure(
                "non_causal",
                f"window {k}: log-probabilities before position {c} changed by {diff:.3g} nats when "
                "only the text after it changed: the model reads targets from its input",
            )


def official_eval(ckpt: Path, data_dir: Path, script_dir: Path, as_json: bool) -> None:
    """Score a checkpoint on every validation target (prints, exits 3 on failure)."""
    ev = Path(data_dir).resolve() / "eval"
    targets = np.load(ev / "labels.npy")
    with np.load(ev / "inputs.npz") as npz:
        tokens = npz["tokens"].astype(np.int64)
    windows = eval_windows(tokens)
    probes, cuts = causality_probes(tokens, secrets.randbits(64))

    def stream(items: list[np.ndarray], time_left: Any) -> list[np.ndarray]:
        return taskkit.predict_stream(
            ckpt, script_dir, ({"tokens": w} for w in items), predict="predict_logits",
            timeout_s=time_left(), memory_mb=EVAL_MEMORY_MB, hide=[data_dir],
        )  # fmt: skip

    def produce(time_left: Any) -> np.ndarray:
        probed = stream(probes, time_left)  # first: nothing it could leave behind names a cut
        real = stream(windows, time_left)
        check_causal(real, probed, cuts)
        return np.concatenate(real)

    taskkit.official_eval(
        task=TASK, metric=METRIC, split="validation", ckpt=ckpt, script_dir=script_dir,
        predict="predict_logits", produce=produce,
        score=lambda logits: bpb(logits, targets), as_json=as_json,
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
