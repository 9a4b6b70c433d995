"""T4 baseline (paper Table 2, section 3.2): 5-layer GIN on ogbg-molhiv in pure PyTorch.

Atom features go through one learned embedding per column (d=64, summed, as OGB's AtomEncoder),
a linear map to the hidden size 300, five GIN layers with bond embeddings (OGB's GINConv:
mlp((1+eps) x + sum_j relu(x_j + bond_emb)), BatchNorm, ReLU except after the last layer,
dropout 0.5), global mean pooling and an MLP head producing one logit. Batches come from the
locked prepare.collate_graphs() (node-offset tracking, no PyG). Adam 1e-3, batch 256, 5 epochs
(the paper's baseline run, Table 4 footnote), BCE-with-logits; the validation ROC-AUC is checked
after every epoch and a scored checkpoint is saved whenever it improves. Copy this file to
run_{x}.py and improve it; prepare.py is locked.

Env: ONEGC_SMOKE=1 runs a few CPU steps in seconds; ONEGC_TIME_BUDGET_S caps the training loop.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from prepare import (
    ATOM_FEATURE_DIMS,
    BOND_FEATURE_DIMS,
    TIME_BUDGET,
    GraphBatch,
    evaluate_rocauc,
    iterate_batches,
    load_graphs,
    save_checkpoint,
)
from torch import nn

SMOKE = os.environ.get("ONEGC_SMOKE") == "1"
TRAIN_SECONDS = float(os.environ.get("ONEGC_TIME_BUDGET_S", TIME_BUDGET))

CONFIG = {"atom_emb_dim": 64, "hidden": 300, "num_layers": 5, "dropout": 0.5, "num_tasks": 1}
BATCH_SIZE = 16 if SMOKE else 256
EPOCHS = 1 if SMOKE else 5
MAX_STEPS_PER_EPOCH = 2 if SMOKE else None
LEARNING_RATE = 1e-3
SEED = 42


class FeatureEncoder(nn.Module):
    """One embedding table per categorical column, summed (OGB's Atom/BondEncoder)."""

    def __init__(self, dims: tuple[int, ...], emb_dim: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(d, emb_dim) for d in dims)
        for table in self.tables:
            nn.init.xavier_uniform_(table.weight)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return sum(table(feats[:, i]) for i, table in enumerate(self.tables))


class GINConv(nn.Module):
    """GIN with edge features: mlp((1 + eps) * x_i + sum_j relu(x_j + e_ji))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.BatchNorm1d(2 * dim), nn.ReLU(),
                                 nn.Linear(2 * dim, dim))
        self.eps = nn.Parameter(torch.zeros(1))
        self.bond_encoder = FeatureEncoder(BOND_FEATURE_DIMS, dim)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor,
                edge_attr: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index
        messages = torch.relu(x[src] + self.bond_encoder(edge_attr))
        aggregated = torch.zeros_like(x).index_add_(0, dst, messages)
        return self.mlp((1 + self.eps) * x + aggregated)


class GIN(nn.Module):
    """5-layer GIN graph classifier; forward(GraphBatch) -> (num_graphs, num_tasks) logits."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        hidden = config["hidden"]
        self.atom_encoder = FeatureEncoder(ATOM_FEATURE_DIMS, config["atom_emb_dim"])
        self.input_proj = nn.Linear(config["atom_emb_dim"], hidden)
        self.convs = nn.ModuleList(GINConv(hidden) for _ in range(config["num_layers"]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(config["num_layers"]))
        self.dropout = nn.Dropout(config["dropout"])
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Dropout(config["dropout"]),
                                  nn.Linear(hidden, config["num_tasks"]))

    def forward(self, data: GraphBatch) -> torch.Tensor:
        h = self.input_proj(self.atom_encoder(data.x))
        for layer, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = norm(conv(h, data.edge_index, data.edge_attr))
            if layer < len(self.convs) - 1:
                h = torch.relu(h)
            h = self.dropout(h)
        # global mean pool: scatter-sum per graph divided by the node count (>= 1)
        pooled = torch.zeros(data.num_graphs, h.shape[1], device=h.device, dtype=h.dtype)
        pooled.index_add_(0, data.batch, h)
        counts = torch.bincount(data.batch, minlength=data.num_graphs).clamp(min=1)
        return self.head(pooled / counts.unsqueeze(1).to(h.dtype))


def build_model(config: dict) -> nn.Module:
    """The output contract (Rule 7): the evaluator rebuilds the model from this and the config."""
    return GIN(config)


def main() -> None:
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    device = torch.device("cuda" if torch.cuda.is_available() and not SMOKE else "cpu")
    train_graphs = load_graphs("train")
    model = build_model(CONFIG).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.BCEWithLogitsLoss()

    start = time.time()
    best, step, last_loss = -1.0, 0, float("nan")
    for epoch in range(EPOCHS):
        model.train()
        for i, batch in enumerate(iterate_batches(train_graphs, BATCH_SIZE, shuffle=True,
                                                  generator=rng)):
            if time.time() - start >= TRAIN_SECONDS:  # checked per step: epochs can be long
                break
            if MAX_STEPS_PER_EPOCH is not None and i >= MAX_STEPS_PER_EPOCH:
                break
            if batch.num_graphs < 2:  # BatchNorm needs two rows
                continue
            batch = batch.to(device)
            logits = model(batch)
            labelled = batch.y == batch.y  # OGB trains on labelled entries only
            loss = loss_fn(logits[labelled], batch.y[labelled])
            if not torch.isfinite(loss):
                raise SystemExit("FAIL: loss is not finite")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            last_loss = loss.item()
        val_auc = evaluate_rocauc(model)
        print(f"epoch {epoch + 1}/{EPOCHS} loss {last_loss:.4f} val_rocauc {val_auc:.4f} "
              f"({time.time() - start:.1f}s)", flush=True)
        if val_auc > best:
            best = val_auc
            save_checkpoint(model, CONFIG, best, name="baseline")
        if time.time() - start >= TRAIN_SECONDS:
            print("time budget reached", flush=True)
            break

    print("---")
    print(f"val_rocauc:       {best:.6f}")
    print(f"training_seconds: {time.time() - start:.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {sum(p.numel() for p in model.parameters()) / 1e6:.3f}")


if __name__ == "__main__":
    main()
