"""T5 baseline (paper Table 2, section 3.2): MLP 54-256-256-128-7 with BatchNorm, ReLU, dropout 0.3.

Trains on the standardised Covertype train split with batch 4096 for 40 epochs (the paper's
baseline run, Table 4 footnote), checks validation accuracy after every epoch and saves a scored
checkpoint whenever it improves. Copy this file to run_{x}.py and improve it; prepare.py is locked.

Env: ONEGC_SMOKE=1 runs a few CPU steps in seconds; ONEGC_TIME_BUDGET_S caps the training loop.
"""

from __future__ import annotations

import os
import time

import torch
from prepare import TIME_BUDGET, evaluate_accuracy, load_split, save_checkpoint
from torch import nn

SMOKE = os.environ.get("ONEGC_SMOKE") == "1"
TRAIN_SECONDS = float(os.environ.get("ONEGC_TIME_BUDGET_S", TIME_BUDGET))

CONFIG = {"in_features": 54, "hidden": [256, 256, 128], "num_classes": 7, "dropout": 0.3}
BATCH_SIZE = 64 if SMOKE else 4096
EPOCHS = 2 if SMOKE else 40
MAX_STEPS_PER_EPOCH = 4 if SMOKE else None
LEARNING_RATE = 1e-3
SEED = 42


def build_model(config: dict) -> nn.Module:
    """The output contract (Rule 7): the evaluator rebuilds the model from this and the config."""
    layers: list[nn.Module] = []
    width = config["in_features"]
    for hidden in config["hidden"]:
        layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                   nn.Dropout(config["dropout"])]
        width = hidden
    layers.append(nn.Linear(width, config["num_classes"]))
    return nn.Sequential(*layers)


def main() -> None:
    torch.manual_seed(SEED)
    device = torch.device("cuda" if torch.cuda.is_available() and not SMOKE else "cpu")
    x_train, y_train = load_split("train", device)
    model = build_model(CONFIG).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator(device="cpu").manual_seed(SEED)

    start = time.time()
    best, step, last_loss = -1.0, 0, float("nan")
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        batches = order.split(BATCH_SIZE)[:MAX_STEPS_PER_EPOCH]
        for idx in batches:
            if time.time() - start >= TRAIN_SECONDS:  # checked per step: epochs can be long
                break
            if len(idx) < 2:  # BatchNorm needs two rows
                continue
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            if not torch.isfinite(loss):
                raise SystemExit("FAIL: loss is not finite")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            last_loss = loss.item()
        val_acc = evaluate_accuracy(model)
        print(f"epoch {epoch + 1}/{EPOCHS} loss {last_loss:.4f} val_accuracy {val_acc:.4f} "
              f"({time.time() - start:.1f}s)", flush=True)
        if val_acc > best:
            best = val_acc
            save_checkpoint(model, CONFIG, best, name="baseline")
        if time.time() - start >= TRAIN_SECONDS:
            print("time budget reached", flush=True)
            break

    print("---")
    print(f"val_accuracy:     {best:.6f}")
    print(f"training_seconds: {time.time() - start:.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {sum(p.numel() for p in model.parameters()) / 1e6:.3f}")


if __name__ == "__main__":
    main()
