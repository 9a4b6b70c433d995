"""T6 baseline: DLinear (Zeng et al., AAAI 2023) on ETTh1, look-back 336, horizon 96.

Paper baseline (Table 2 / section 3.2): moving-average decomposition (kernel 25) into trend
and seasonal parts, each mapped by one Linear(336 -> 96) shared across the 7 channels,
batch 128. Optimiser as in LTSF-Linear's etth1.sh: Adam lr 0.005, MSE loss, learning rate
halved every epoch (lradj type1), early stopping on validation MSE with patience 3.

Copy this file to run_<x>.py to try ideas; keep build_model(config) at module level and save
checkpoints through prepare.save_checkpoint.
"""

from __future__ import annotations

import time

import torch
from prepare import (
    PRED_LEN,
    SEQ_LEN,
    batches,
    evaluate_val,
    load_split,
    save_checkpoint,
    smoke,
    time_budget_s,
)
from torch import nn

SEED = 2021
BATCH_SIZE = 128
LR = 0.005
EPOCHS = 10
PATIENCE = 3
MA_KERNEL = 25


class MovingAverage(nn.Module):
    """Moving average over time that repeats the end values, as in DLinear's series_decomp."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.pool = nn.AvgPool1d(kernel_size=kernel, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, L, C)
        pad = (self.kernel - 1) // 2
        front = x[:, :1, :].repeat(1, pad, 1)
        end = x[:, -1:, :].repeat(1, pad, 1)
        x = torch.cat([front, x, end], dim=1)
        return self.pool(x.permute(0, 2, 1)).permute(0, 2, 1)


class DLinear(nn.Module):
    """Trend + seasonal linear maps over time, shared across channels (individual=False)."""

    def __init__(self, seq_len: int, pred_len: int, kernel: int) -> None:
        super().__init__()
        self.decomp = MovingAverage(kernel)
        self.linear_seasonal = nn.Linear(seq_len, pred_len)
        self.linear_trend = nn.Linear(seq_len, pred_len)
        # DLinear initialises both maps to a uniform average of the look-back window.
        for layer in (self.linear_seasonal, self.linear_trend):
            nn.init.constant_(layer.weight, 1.0 / seq_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 336, 7) -> (B, 96, 7)
        trend = self.decomp(x)
        seasonal = x - trend
        out = self.linear_seasonal(seasonal.permute(0, 2, 1)) + self.linear_trend(
            trend.permute(0, 2, 1)
        )
        return out.permute(0, 2, 1)


def build_model(config: dict) -> nn.Module:
    """The evaluator rebuilds the model from the checkpoint's config through this function."""
    return DLinear(config["seq_len"], config["pred_len"], config["kernel"])


def main() -> None:
    torch.manual_seed(SEED)
    config = {"seq_len": SEQ_LEN, "pred_len": PRED_LEN, "kernel": MA_KERNEL}
    model = build_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    train = load_split("train")
    epochs, max_steps = (1, 5) if smoke() else (EPOCHS, None)
    budget = time_budget_s()
    t0 = time.monotonic()
    best, best_state, bad_epochs, step = float("inf"), None, 0, 0
    for epoch in range(epochs):
        model.train()
        for x, y in batches(train, BATCH_SIZE, shuffle=True, seed=SEED + epoch):
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if not torch.isfinite(loss) or loss.item() > 100:
                print("FAIL: loss diverged")
                raise SystemExit(1)
            if (max_steps and step >= max_steps) or time.monotonic() - t0 > budget:
                break
        val = evaluate_val(model)
        print(f"epoch {epoch + 1}: train_loss {loss.item():.4f} val_mse {val:.4f}", flush=True)
        if val < best:
            best, bad_epochs = val, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
            if bad_epochs >= PATIENCE:
                break
        if time.monotonic() - t0 > budget:
            break
        for group in opt.param_groups:  # lradj type1: halve every epoch
            group["lr"] = LR * 0.5 ** (epoch + 1)
    assert best_state is not None
    model.load_state_dict(best_state)
    path = save_checkpoint(model, config, best)
    print("---")
    print(f"val_mse:          {best:.6f}")
    print(f"training_seconds: {time.monotonic() - t0:.1f}")
    print(f"num_steps:        {step}")
    print(f"checkpoint:       {path}")


if __name__ == "__main__":
    main()
