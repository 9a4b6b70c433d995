"""Task t3 baseline: DINOv3 ConvNeXt-Tiny encoder + lightweight FPN decoder on VOC 2012.

Copy this file to run_{x}.py and edit the copy. Keep `build_model(config)` at module level
and save checkpoints through `prepare.save_checkpoint`: the official scorer rebuilds the
model from the recorded config with this script's build_model (random init, no weight file
needed) and loads the whole state dict, backbone included, strictly.

Baseline (paper section 3.2): the pretrained DINOv3 ConvNeXt-T from weights/ (the ViT-S/16
is there too: CONFIG["backbone"] = "vits16"), an FPN over its four stages, fine-tuned end
to end for 15 epochs with AdamW (lr 1e-4), batch 16, horizontal flips, CE ignoring 255.
Env: ONEGC_SMOKE=1 runs a few CPU steps with a narrow backbone and no weight file;
ONEGC_TIME_BUDGET_S caps the training loop.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from prepare import (
    IGNORE_INDEX,
    NUM_CLASSES,
    dinov3_backbone,
    evaluate_miou,
    find_weights,
    load_dinov3,
    load_split,
    normalize,
    save_checkpoint,
    smoke,
    time_budget_s,
)
from torch import nn

# ---------------------------------------------------------------------------------------------
# Hyperparameters (module-level constants, autoresearch style)
# ---------------------------------------------------------------------------------------------

CONFIG: dict = {"backbone": "convnext_tiny", "backbone_args": {}, "fpn_dim": 128,
                "num_classes": NUM_CLASSES}
SMOKE_CONFIG: dict = {**CONFIG, "backbone_args": {"depths": [1, 1, 1, 1],
                                                  "dims": [8, 16, 32, 64]}, "fpn_dim": 16}
EPOCHS = 15
BATCH_SIZE = 16
LR = 1e-4
WEIGHT_DECAY = 1e-2
EVAL_EVERY_EPOCHS = 5
SEED = 42
SMOKE_STEPS, SMOKE_BATCH = 2, 2

# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class FPNHead(nn.Module):
    """Lateral 1x1 convs, top-down sum, 3x3 smoothing; all levels summed at the finest one."""

    def __init__(self, in_channels: list[int], dim: int, num_classes: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim),
                          nn.ReLU(inplace=True)) for _ in in_channels)
        self.fuse = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(dim, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        lat = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(lat) - 2, -1, -1):
            lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="bilinear",
                                            align_corners=False)
        size = lat[0].shape[-2:]
        fused = sum(F.interpolate(conv(x), size=size, mode="bilinear", align_corners=False)
                    for conv, x in zip(self.smooth, lat, strict=True))
        return self.classifier(self.fuse(fused))


class SegModel(nn.Module):
    """Backbone -> FPN -> logits upsampled to the input size."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.backbone = dinov3_backbone(config["backbone"], **config["backbone_args"])
        self.head = FPNHead(self.backbone.channels, int(config["fpn_dim"]),
                            int(config["num_classes"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_model(config: dict) -> nn.Module:
    """Rebuild the network from a checkpoint's config (called by the official scorer)."""
    return SegModel(config)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def main() -> None:
    """Fine-tune end to end; checkpoint every EVAL_EVERY_EPOCHS epochs when val mIoU improves."""
    t0 = time.time()
    torch.manual_seed(SEED)
    is_smoke = smoke()
    config = SMOKE_CONFIG if is_smoke else CONFIG
    device = torch.device("cuda" if torch.cuda.is_available() and not is_smoke else "cpu")
    model = build_model(config)
    if is_smoke:
        print("smoke run: narrow backbone, random init (no weight file)")
    else:
        weights = find_weights(config["backbone"])
        load_dinov3(model.backbone, weights)
        print(f"loaded {weights}")
    model = model.to(device)
    x_np, y_np = load_split("train")
    x_train = torch.from_numpy(np.array(x_np)).to(device)
    y_train = torch.from_numpy(np.array(y_np)).to(device)
    batch = SMOKE_BATCH if is_smoke else BATCH_SIZE
    steps_per_epoch = max(1, len(x_train) // batch)
    total = SMOKE_STEPS if is_smoke else EPOCHS * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    gen = torch.Generator(device=device).manual_seed(SEED)
    budget, best = time_budget_s(), -1.0
    train_start, step, path = time.time(), 0, None
    model.train()
    while step < total and time.time() - train_start < budget:
        if step % steps_per_epoch == 0:
            perm = torch.randperm(len(x_train), generator=gen, device=device)
        i = step % steps_per_epoch
        idx = perm[i * batch:(i + 1) * batch]
        x, y = normalize(x_train[idx]), y_train[idx].long()
        flip = torch.rand(len(idx), generator=gen, device=device) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        y = torch.where(flip.view(-1, 1, 1), y.flip(2), y)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(x).float(), y, ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 20 == 0 or is_smoke:
            loss_val = loss.item()
            if not math.isfinite(loss_val) or loss_val > 100:
                print("FAIL")
                sys.exit(1)
            print(f"step {step}/{total} loss {loss_val:.4f}")
        epoch, epoch_end = divmod(step, steps_per_epoch)
        if epoch_end == 0 and epoch % EVAL_EVERY_EPOCHS == 0 and step < total:
            score = evaluate_miou(model)  # intermediate checkpoints survive a budget cut
            model.train()
            print(f"epoch {epoch} val miou {score:.4f}")
            if score > best:
                best, path = score, save_checkpoint(model, config, score)
    training_seconds = time.time() - train_start
    score = evaluate_miou(model, limit=2 if is_smoke else None)
    if score > best:
        path = save_checkpoint(model, config, score)
    print("---")
    print(f"miou:             {score:.6f}")
    print(f"training_seconds: {training_seconds:.1f}")
    print(f"total_seconds:    {time.time() - t0:.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {sum(p.numel() for p in model.parameters()) / 1e6:.2f}")
    print(f"checkpoint:       {path}")


if __name__ == "__main__":
    main()
