"""Task t2 baseline: residual CNN (64-128-256-512) on TinyImageNet-200 (paper section 3.2).

Copy this file to run_{x}.py and edit the copy. Keep `build_model(config)` at module level
and save checkpoints through `prepare.save_checkpoint`: the official scorer rebuilds the
model from the recorded config with this script's build_model and loads it strictly.

Baseline: stem conv + four residual stages (64, 128, 256, 512 channels; stride 2 between
stages), global average pooling, one linear head; random crop (8 px zero padding),
horizontal flip, colour jitter; SGD + cosine, 5 epochs at batch 256.
Env: ONEGC_SMOKE=1 runs a few CPU steps of a narrower copy; ONEGC_TIME_BUDGET_S caps the
training loop.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from prepare import (
    MEAN,
    NUM_CLASSES,
    STD,
    evaluate_top1,
    load_split,
    save_checkpoint,
    smoke,
    time_budget_s,
)
from torch import nn

# ---------------------------------------------------------------------------------------------
# Hyperparameters (module-level constants, autoresearch style)
# ---------------------------------------------------------------------------------------------

CONFIG: dict = {"channels": [64, 128, 256, 512], "blocks_per_stage": 1,
                "num_classes": NUM_CLASSES}
SMOKE_CONFIG: dict = {**CONFIG, "channels": [16, 32, 64, 128]}  # same design, CPU-sized
EPOCHS = 5
BATCH_SIZE = 256
LR = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
WARMUP_STEPS = 100
PAD = 8
JITTER = 0.4  # brightness / contrast / saturation strength
SEED = 42
SMOKE_STEPS, SMOKE_BATCH, SMOKE_EVAL = 2, 4, 64

# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """Two 3x3 convs with BN and an identity (or strided 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResCNN(nn.Module):
    """Stem + residual stages; the first stage keeps 64x64, each later one halves it."""

    def __init__(self, channels: list[int], blocks_per_stage: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        cin = channels[0]
        for i, cout in enumerate(channels):
            for j in range(blocks_per_stage):
                layers.append(ResBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_model(config: dict) -> nn.Module:
    """Rebuild the network from a checkpoint's config (called by the official scorer)."""
    return ResCNN(list(config["channels"]), int(config["blocks_per_stage"]),
                  int(config["num_classes"]))


# ---------------------------------------------------------------------------------------------
# Augmentation (on the training device, batched)
# ---------------------------------------------------------------------------------------------


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW with colour jitter, padded random crop and flip."""
    n, dev = x.shape[0], x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(n, 1, 1, 1, generator=gen, device=dev) * (hi - lo) + lo)

    img = x.permute(0, 3, 1, 2).float().div_(255.0)
    gray_w = torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)
    img = img * u(1 - JITTER, 1 + JITTER)  # brightness
    mean = (img * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    img = (img - mean) * u(1 - JITTER, 1 + JITTER) + mean  # contrast
    gray = (img * gray_w).sum(1, keepdim=True)
    img = ((img - gray) * u(1 - JITTER, 1 + JITTER) + gray).clamp_(0, 1)  # saturation
    size = img.shape[-1]
    img = F.pad(img, (PAD, PAD, PAD, PAD))  # zero (black) padding, as RandomCrop(padding=8)
    rows = torch.randint(0, 2 * PAD + 1, (n, 1), generator=gen, device=dev)
    cols = torch.randint(0, 2 * PAD + 1, (n, 1), generator=gen, device=dev)
    ar = torch.arange(size, device=dev).view(1, -1)
    ridx = (rows + ar).view(n, 1, size, 1).expand(n, 3, size, size + 2 * PAD)
    img = img.gather(2, ridx)
    cidx = (cols + ar).view(n, 1, 1, size).expand(n, 3, size, size)
    img = img.gather(3, cidx)
    flip = torch.rand(n, generator=gen, device=dev) < 0.5
    img = torch.where(flip.view(n, 1, 1, 1), img.flip(3), img)
    m = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1)
    s = torch.tensor(STD, device=dev).view(1, 3, 1, 1)
    return (img - m) / s


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def lr_at(step: int, total: int) -> float:
    """Linear warmup, then cosine decay to zero at the last step."""
    if step < WARMUP_STEPS:
        return LR * (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, total - WARMUP_STEPS)
    return LR * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def main() -> None:
    """Train with the whole training set on the device, then self-evaluate and checkpoint."""
    t0 = time.time()
    torch.manual_seed(SEED)
    is_smoke = smoke()
    device = torch.device("cuda" if torch.cuda.is_available() and not is_smoke else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    x_np, y_np = load_split("train")
    x_train = torch.from_numpy(np.array(x_np)).to(device)
    y_train = torch.from_numpy(np.array(y_np)).to(device)
    batch = SMOKE_BATCH if is_smoke else BATCH_SIZE
    steps_per_epoch = max(1, len(x_train) // batch)
    total = SMOKE_STEPS if is_smoke else EPOCHS * steps_per_epoch
    config = SMOKE_CONFIG if is_smoke else CONFIG
    model = build_model(config).to(device).to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": WEIGHT_DECAY},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=LR, momentum=MOMENTUM, nesterov=True)
    gen = torch.Generator(device=device).manual_seed(SEED)
    budget = time_budget_s()
    train_start, step = time.time(), 0
    model.train()
    while step < total and time.time() - train_start < budget:
        if step % steps_per_epoch == 0:  # new epoch: fresh permutation, no drop of batches
            perm = torch.randperm(len(x_train), generator=gen, device=device)
        i = step % steps_per_epoch
        idx = perm[i * batch:(i + 1) * batch]
        inputs = augment(x_train[idx], gen).contiguous(memory_format=torch.channels_last)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(inputs), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0 or is_smoke:
            loss_val = loss.item()
            if not math.isfinite(loss_val) or loss_val > 100:
                print("FAIL")
                sys.exit(1)
            print(f"step {step}/{total} loss {loss_val:.4f}")
    training_seconds = time.time() - train_start
    score = evaluate_top1(model, limit=SMOKE_EVAL if is_smoke else None)
    path = save_checkpoint(model, config, score)
    print("---")
    print(f"top1:             {score:.6f}")
    print(f"training_seconds: {training_seconds:.1f}")
    print(f"total_seconds:    {time.time() - t0:.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {sum(p.numel() for p in model.parameters()) / 1e6:.2f}")
    print(f"checkpoint:       {path}")


if __name__ == "__main__":
    main()
