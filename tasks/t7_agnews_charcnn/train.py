"""T7 baseline: character-level CNN on AG News (paper Table 2 / section 3.2).

Zhang et al. (2015) large char-CNN with the paper's ASCII input: 128-dim embedding of the
codes 0..127; six Conv1d layers of 256 channels, kernels 7,7,3,3,3,3, max-pool 3 after
layers 1, 2 and 6 (1014 -> 34 positions); two FC layers of 1024 with dropout 0.5; 4 logits.
Batch 512, Adam lr 1e-3 (as the reference Keras implementation), 5 epochs.

Copy this file to run_<x>.py to try ideas; keep build_model(config) at module level and save
checkpoints through prepare.save_checkpoint.
"""

from __future__ import annotations

import math
import time

import torch
from prepare import (
    MAX_LEN,
    N_CLASSES,
    batches,
    evaluate_accuracy,
    load_split,
    save_checkpoint,
    smoke,
    time_budget_s,
)
from torch import nn

SEED = 7
EMBED, CHANNELS, FC, DROPOUT = 128, 256, 1024, 0.5
KERNELS = (7, 7, 3, 3, 3, 3)
POOL_AFTER = (True, True, False, False, False, True)
BATCH_SIZE, LR, EPOCHS = 512, 1e-3, 5


class CharCNN(nn.Module):
    """Embedding -> 6 conv layers (ReLU, some max-pooled) -> 2 FC + dropout -> logits."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        ch = config["channels"]
        self.embed = nn.Embedding(128, config["embed"])
        layers: list[nn.Module] = []
        length, c_in = config["max_len"], config["embed"]
        for k, pool in zip(config["kernels"], config["pool_after"], strict=True):
            layers += [nn.Conv1d(c_in, ch, k), nn.ReLU()]
            length -= k - 1
            if pool:
                layers.append(nn.MaxPool1d(3))
                length //= 3
            c_in = ch
        self.convs = nn.Sequential(*layers)
        d = config["dropout"]
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(ch * length, config["fc"]), nn.ReLU(), nn.Dropout(d),
            nn.Linear(config["fc"], config["fc"]), nn.ReLU(), nn.Dropout(d),
            nn.Linear(config["fc"], config["n_classes"]),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1014) int64 -> (B, 4)
        return self.head(self.convs(self.embed(x).transpose(1, 2)))


def build_model(config: dict) -> nn.Module:
    """The evaluator rebuilds the model from the checkpoint's config through this function."""
    return CharCNN(config)


def main() -> None:
    torch.manual_seed(SEED)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = {"embed": EMBED, "channels": CHANNELS, "fc": FC, "dropout": DROPOUT,
              "kernels": list(KERNELS), "pool_after": list(POOL_AFTER),
              "max_len": MAX_LEN, "n_classes": N_CLASSES}  # fmt: skip
    epochs, batch, max_steps = EPOCHS, BATCH_SIZE, None
    if smoke():  # narrow layers, a few steps: seconds on CPU
        config.update(embed=16, channels=16, fc=32)
        epochs, batch, max_steps = 1, 8, 3
    model = build_model(config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x_train, y_train = load_split("train")
    budget, t0, step = time_budget_s(), time.monotonic(), 0
    best, stop = -1.0, False
    for epoch in range(epochs):
        model.train()
        for x, y in batches(x_train, y_train, batch, shuffle=True, seed=SEED + epoch):
            x, y = x.to(device), y.to(device)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if not math.isfinite(loss.item()):
                print("FAIL: loss diverged")
                raise SystemExit(1)
            stop = bool(max_steps and step >= max_steps) or time.monotonic() - t0 > budget
            if stop:
                break
        acc = evaluate_accuracy(model)
        print(f"epoch {epoch + 1}: loss {loss.item():.4f} val_accuracy {acc:.4f}", flush=True)
        if acc > best:
            best = acc
            path = save_checkpoint(model, config, acc)
        if stop:
            break
    print("---")
    print(f"val_accuracy:     {best:.6f}")
    print(f"training_seconds: {time.monotonic() - t0:.1f}")
    print(f"num_steps:        {step}")
    print(f"checkpoint:       {path}")


if __name__ == "__main__":
    main()
