"""T1 baseline: a small GPT on TinyShakespeare characters (paper Table 2 / section 3.2).

4 layers, 4 heads, d=256, dropout 0.1, block 256, batch 64; AdamW lr 3e-4 with 200 warmup
steps then cosine decay, gradient clipping at 1.0, 5 epochs. One epoch is pinned in
prepare.steps_per_epoch as len(train) / (batch * block) random windows (about 61 steps),
so the baseline runs about 306 steps, most of them in warmup: that is why it is far from
converged (paper: 3.438 bpb).

Copy this file to run_<x>.py to try ideas; keep build_model(config) at module level and save
checkpoints through prepare.save_checkpoint.
"""

from __future__ import annotations

import math
import time

import torch
from prepare import (
    EVAL_BLOCK,
    evaluate_bpb,
    get_batch,
    load_meta,
    load_tokens,
    save_checkpoint,
    smoke,
    steps_per_epoch,
    time_budget_s,
)
from torch import nn
from torch.nn import functional as F

SEED = 1337
N_LAYER, N_HEAD, N_EMBD, DROPOUT = 4, 4, 256, 0.1
BLOCK_SIZE = 256
BATCH_SIZE = 64
LR, MIN_LR, WARMUP, EPOCHS = 3e-4, 3e-5, 200, 5
WEIGHT_DECAY, GRAD_CLIP = 0.1, 1.0


class Block(nn.Module):
    """Pre-norm transformer block with causal self-attention."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout)
        )
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        x = x + self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer returning logits (B, T, vocab) for every position."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int,
                 n_embd: int, dropout: float) -> None:  # fmt: skip
        super().__init__()
        self.tok = nn.Embedding(vocab_size, n_embd)
        self.pos = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.tok.weight  # weight tying, as in nanoGPT
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        """nanoGPT init (std 0.02): default N(0,1) embeddings make tied logits explode."""
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(pos))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def build_model(config: dict) -> nn.Module:
    """The evaluator rebuilds the model from the checkpoint's config through this function."""
    return GPT(config["vocab_size"], config["block_size"], config["n_layer"],
               config["n_head"], config["n_embd"], config["dropout"])  # fmt: skip


def lr_at(step: int, total: int) -> float:
    """Linear warmup, then cosine decay to MIN_LR at the last step."""
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    progress = min(1.0, (step - WARMUP) / max(1, total - WARMUP))
    return MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * progress))


def main() -> None:
    torch.manual_seed(SEED)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab = load_meta()["vocab_size"]
    if smoke():  # tiny but with the full evaluation context, so the official eval runs
        config = {"vocab_size": vocab, "block_size": EVAL_BLOCK, "n_layer": 1, "n_head": 2,
                  "n_embd": 32, "dropout": DROPOUT}  # fmt: skip
        batch, block, total = 4, 32, 3
    else:
        config = {"vocab_size": vocab, "block_size": BLOCK_SIZE, "n_layer": N_LAYER,
                  "n_head": N_HEAD, "n_embd": N_EMBD, "dropout": DROPOUT}  # fmt: skip
        batch, block = BATCH_SIZE, BLOCK_SIZE
        total = EPOCHS * steps_per_epoch(batch, block)
    model = build_model(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95),
                            weight_decay=WEIGHT_DECAY)  # fmt: skip
    train = load_tokens("train")
    gen = torch.Generator().manual_seed(SEED)
    budget, t0, step = time_budget_s(), time.monotonic(), 0
    model.train()
    while step < total and time.monotonic() - t0 < budget:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total)
        x, y = get_batch(train, batch, block, device, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        step += 1
        if not math.isfinite(loss.item()) or loss.item() > 100:
            print("FAIL: loss diverged")
            raise SystemExit(1)
        if step % 50 == 0:
            print(f"step {step}/{total}: loss {loss.item():.4f}", flush=True)
    train_s = time.monotonic() - t0
    val_bpb = evaluate_bpb(model, max_targets=2048 if smoke() else None)
    path = save_checkpoint(model, config, val_bpb)
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {train_s:.1f}")
    print(f"num_steps:        {step}")
    print(f"checkpoint:       {path}")


if __name__ == "__main__":
    main()
