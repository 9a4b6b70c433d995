"""T4 -- ogbg-molhiv (OGB): data preparation, graph batching helpers, official evaluation.

LOCKED: the agent must not modify this file (paper Rule 1); scoring always uses the registry's
original copy (Rule 8).

Usage:
    python prepare.py --data-dir DIR [--synthetic] [--source-dir SRC]
        Download OGB's hiv.zip (copied from SRC or $ONEGC_SOURCE_DIR when a file of that name is
        there), or synthesise a small hiv.zip with exactly the same layout, unzip it into
        DIR/source/ogbg_molhiv/ the way the ogb package does, read the raw csv.gz graph files
        with numpy (no ogb, no torch_geometric) and write
            DIR/agent/      train.npz, valid.npz (graphs of the official scaffold split)
            DIR/heldout/    test_inputs.npz (graphs, no labels), test_labels.npy, test_index.npy
            DIR/prepared.json  {task, synthetic, files: {relpath: sha256}}
        DIR/source and DIR/heldout are root-only (0700/0600) when run as root, because they hold
        the test labels. Idempotent: a second run with the same arguments only re-verifies.
    python prepare.py --eval CKPT --data-dir DIR --script-dir WS [--json]
        The one official score: OGB's ROC-AUC on the scaffold test split. The model is rebuilt
        from WS's script in an isolated child process that sees the test graphs only.

Graph arrays (.npz), graphs concatenated in order: x (N, 9) atom features, edge_index (2, E)
per-graph LOCAL node ids with every bond in both directions, interleaved (u,v),(v,u) exactly as
OGB's read_csv_graph_raw(add_inverse_edge=True), edge_attr (E, 3), num_nodes (G,), num_edges
(G,), graph_index (G,) original OGB graph ids, y (G, 1) labels 0/1 (agent splits only).

Agent scripts (run_x.py) import the runtime helpers below, e.g.
    from prepare import TIME_BUDGET, load_graphs, iterate_batches, evaluate_rocauc, save_checkpoint
A model takes one GraphBatch (see collate_graphs) and returns (num_graphs, 1) logits.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

try:
    from taskkit import EvalFailure, eval_limit_s, fetch, manifest_valid, save_array, write_manifest
    from taskkit import official_eval as _kit_official_eval
    from taskkit import save_checkpoint as _kit_save_checkpoint
except ImportError:  # run from the source tree (tasks/t4_molhiv_gnn/), taskkit is in ../_kit
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_kit"))
    from taskkit import EvalFailure, eval_limit_s, fetch, manifest_valid, save_array, write_manifest
    from taskkit import official_eval as _kit_official_eval
    from taskkit import save_checkpoint as _kit_save_checkpoint

# ---------------------------------------------------------------------------------------------
# Constants (fixed, do not modify)
# ---------------------------------------------------------------------------------------------

TASK_ID = "t4"
METRIC = "rocauc"
TIME_BUDGET = 3600  # seconds of wall clock for the whole task (paper Table 2: 60 min)

# ogb 1.3.6 master.csv, ogbg-molhiv: version 1, 1 task, binary, split "scaffold",
# add_inverse_edge True. OGB publishes no checksum for hiv.zip; the real-data invariants below
# (graph count and split sizes) are verified instead.
SOURCE_URL = "http://snap.stanford.edu/ogb/data/graphproppred/csv_mol_download/hiv.zip"
SOURCE_FILE = "hiv.zip"
ZIP_ROOT = "hiv"  # the folder inside hiv.zip; ogb moves it to <root>/ogbg_molhiv
DATASET_DIR = "ogbg_molhiv"
SPLIT_NAME = "scaffold"
NUM_TASKS = 1
REAL_NUM_GRAPHS = 41_127
REAL_SPLIT_SIZES = {"train": 32_901, "valid": 4_113, "test": 4_113}

# ogb.utils.features.get_atom_feature_dims() / get_bond_feature_dims()
ATOM_FEATURE_DIMS = (119, 5, 12, 12, 10, 6, 6, 2, 2)
BOND_FEATURE_DIMS = (5, 6, 2)

EVAL_BATCH_SIZE = 256
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


def _csv_gz(rows: np.ndarray) -> bytes:
    """Gzip CSV, no header, integers, as OGB's raw files are written (pandas to_csv style)."""
    rows = rows.reshape(len(rows), -1)
    text = "".join(",".join(map(str, r)) + "\n" for r in rows.tolist())
    return gzip.compress(text.encode("ascii"), mtime=0)


def write_synthetic_source(dest: Path, seed: int = 0) -> None:
    """Write a tiny hiv.zip with exactly OGB's layout (hiv/raw, hiv/split/scaffold, mapping).

    48 molecule-like graphs (3..12 atoms, a random tree plus a few ring bonds, features inside
    OGB's vocabularies) split 32/8/8; every split has both classes; one test graph is a lone
    atom with no bonds so the zero-edge path is exercised. The label depends on the atoms, so
    a model can learn something in a few steps.
    """
    rng = np.random.default_rng(seed)
    n_graphs = 48
    labels = np.zeros(n_graphs, np.int64)
    labels[rng.choice(n_graphs, 16, replace=False)] = 1
    # guarantee both classes in each split (train 0..31, valid 32..39, test 40..47)
    labels[[0, 32, 40]], labels[[1, 33, 41]] = 0, 1
    nodes, edges, node_feats, edge_feats = [], [], [], []
    for g in range(n_graphs):
        n = 1 if g == 47 else int(rng.integers(3, 13))
        feat = np.stack([rng.integers(0, d, n) for d in ATOM_FEATURE_DIMS], axis=1)
        feat[:, 0] = rng.choice([5, 6, 7, 8], n)  # C, N, O, F (atomic_num - 1)
        if labels[g]:
            feat[rng.integers(0, n), 0] = 15  # a sulphur marks the actives
        pairs = [(int(rng.integers(0, v)), v) for v in range(1, n)]  # spanning tree
        if n >= 5:  # a ring closure, never a bond the tree already has
            pairs.append((0, n - 1) if (0, n - 1) not in pairs else (1, n - 1))
        e = np.array(pairs, np.int64).reshape(-1, 2)
        efeat = np.stack([rng.integers(0, d, len(e)) for d in BOND_FEATURE_DIMS], axis=1)
        nodes.append(n)
        edges.append(e)
        node_feats.append(feat)
        edge_feats.append(efeat.reshape(-1, 3))
    split = {"train": np.arange(0, 32), "valid": np.arange(32, 40), "test": np.arange(40, 48)}
    mapping = "HIV_active,smiles,mol_id\n" + "".join(
        f"{labels[g]},{'C' * nodes[g]},id{g}\n" for g in range(n_graphs))
    members = {
        f"{ZIP_ROOT}/RELEASE_v1.txt": b"synthetic ogbg-molhiv fixture (onegc-audit)\n",
        f"{ZIP_ROOT}/mapping/mol.csv.gz": gzip.compress(mapping.encode(), mtime=0),
        f"{ZIP_ROOT}/raw/edge.csv.gz": _csv_gz(np.concatenate(edges)),
        f"{ZIP_ROOT}/raw/edge-feat.csv.gz": _csv_gz(np.concatenate(edge_feats)),
        f"{ZIP_ROOT}/raw/node-feat.csv.gz": _csv_gz(np.concatenate(node_feats)),
        f"{ZIP_ROOT}/raw/graph-label.csv.gz": _csv_gz(labels),
        f"{ZIP_ROOT}/raw/num-node-list.csv.gz": _csv_gz(np.array(nodes)),
        f"{ZIP_ROOT}/raw/num-edge-list.csv.gz": _csv_gz(np.array([len(e) for e in edges])),
    } | {f"{ZIP_ROOT}/split/{SPLIT_NAME}/{k}.csv.gz": _csv_gz(v) for k, v in split.items()}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 5, 4, 0, 0, 0)), data)
    os.replace(tmp, dest)


def extract_source(archive: Path, root: Path) -> Path:
    """Unzip hiv.zip into root/ogbg_molhiv as ogb does (extract, then rename the hiv/ folder)."""
    target = root / DATASET_DIR
    if (target / "RELEASE_v1.txt").exists():
        return target
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():  # refuse absolute paths and ".." in a downloaded archive
                if name.startswith("/") or ".." in Path(name).parts:
                    raise SystemExit(f"error: unsafe member {name!r} in {archive}")
            zf.extractall(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(Path(tmp) / ZIP_ROOT, target)
    return target


def _read_csv_gz(path: Path, columns: int, dtype: type = np.int64) -> np.ndarray:
    """Read a headerless integer csv.gz into (rows, columns); an empty file gives 0 rows."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    if not raw.strip():
        return np.zeros((0, columns), dtype)
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=dtype, ndmin=2)
    if table.shape[1] != columns:
        raise ValueError(f"{path}: expected {columns} columns, got {table.shape[1]}")
    return table


def read_raw(dataset: Path) -> dict[str, np.ndarray]:
    """The raw OGB csv.gz files as arrays; bonds still listed once, node ids per-graph local."""
    raw = dataset / "raw"
    arrays = {
        "edge": _read_csv_gz(raw / "edge.csv.gz", 2),
        "node_feat": _read_csv_gz(raw / "node-feat.csv.gz", len(ATOM_FEATURE_DIMS)),
        "edge_feat": _read_csv_gz(raw / "edge-feat.csv.gz", len(BOND_FEATURE_DIMS)),
        "label": _read_csv_gz(raw / "graph-label.csv.gz", NUM_TASKS),
        "num_nodes": _read_csv_gz(raw / "num-node-list.csv.gz", 1)[:, 0],
        "num_edges": _read_csv_gz(raw / "num-edge-list.csv.gz", 1)[:, 0],
    }
    n_graphs = len(arrays["num_nodes"])
    if (len(arrays["num_edges"]) != n_graphs or len(arrays["label"]) != n_graphs
            or arrays["num_nodes"].sum() != len(arrays["node_feat"])
            or arrays["num_edges"].sum() != len(arrays["edge"])
            or len(arrays["edge_feat"]) != len(arrays["edge"])):
        raise ValueError(f"{raw}: graph, node and edge counts disagree")
    for name, dims in (("node_feat", ATOM_FEATURE_DIMS), ("edge_feat", BOND_FEATURE_DIMS)):
        a = arrays[name]
        if len(a) and ((a < 0).any() or (a >= np.array(dims)).any()):
            raise ValueError(f"{raw}: {name} outside OGB's feature vocabularies")
    if not np.isin(arrays["label"], (0, 1)).all():
        raise ValueError(f"{raw}: graph labels must be 0/1")
    ends = np.repeat(arrays["num_nodes"], arrays["num_edges"])
    if len(ends) and ((arrays["edge"] < 0).any() or (arrays["edge"] >= ends[:, None]).any()):
        raise ValueError(f"{raw}: edge endpoints outside their graph")
    return arrays


def read_split(dataset: Path, n_graphs: int) -> dict[str, np.ndarray]:
    """The official split index files; they must be disjoint and cover every graph once."""
    folder = dataset / "split" / SPLIT_NAME
    split = {k: _read_csv_gz(folder / f"{k}.csv.gz", 1)[:, 0] for k in ("train", "valid", "test")}
    everything = np.sort(np.concatenate(list(split.values())))
    if not np.array_equal(everything, np.arange(n_graphs)):
        raise ValueError(f"{folder}: split files do not partition the {n_graphs} graphs")
    return split


def select_graphs(raw: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Graph arrays (see module docstring) for graphs idx, inverse edges added as OGB does.

    OGB: duplicated = np.repeat(edge, 2, axis=1); duplicated[0, 1::2] = duplicated[1, 0::2];
    duplicated[1, 1::2] = duplicated[0, 0::2]; edge_feat = np.repeat(edge_feat, 2, axis=0).
    """
    node_start = np.concatenate([[0], np.cumsum(raw["num_nodes"])])
    edge_start = np.concatenate([[0], np.cumsum(raw["num_edges"])])
    node_rows = np.concatenate([np.arange(node_start[g], node_start[g + 1]) for g in idx])
    edge_rows = np.concatenate([np.arange(edge_start[g], edge_start[g + 1]) for g in idx])
    edge = raw["edge"][edge_rows.astype(np.int64)].T
    both = np.repeat(edge, 2, axis=1)
    both[0, 1::2] = both[1, 0::2]
    both[1, 1::2] = both[0, 0::2]
    return {
        "x": raw["node_feat"][node_rows.astype(np.int64)].astype(np.int16),
        "edge_index": both.astype(np.int32),
        "edge_attr": np.repeat(raw["edge_feat"][edge_rows.astype(np.int64)], 2,
                               axis=0).astype(np.int16),
        "num_nodes": raw["num_nodes"][idx].astype(np.int64),
        "num_edges": 2 * raw["num_edges"][idx].astype(np.int64),
        "graph_index": idx.astype(np.int64),
    }


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
    """Download or synthesise hiv.zip, extract it, and write agent/ and heldout/."""
    data_dir = data_dir.resolve()
    if _already_prepared(data_dir, synthetic):
        print(f"{TASK_ID}: {data_dir} already prepared (hashes verified)")
        return json.loads((data_dir / "prepared.json").read_text())
    archive = data_dir / "source" / SOURCE_FILE
    archive.parent.mkdir(parents=True, exist_ok=True)
    _restrict(archive.parent)  # the source holds the test labels too
    if synthetic:
        write_synthetic_source(archive)
    else:
        try:
            fetch(SOURCE_URL, archive, None, source_dir=source_dir)
        except Exception as exc:  # noqa: BLE001 -- one line for the CLI, no traceback
            raise SystemExit(f"error: could not fetch {SOURCE_FILE}: {exc}") from exc
    dataset = extract_source(archive, archive.parent)
    _restrict(archive.parent)

    raw = read_raw(dataset)
    split = read_split(dataset, len(raw["num_nodes"]))
    sizes = {k: len(v) for k, v in split.items()}
    if not synthetic and (len(raw["num_nodes"]) != REAL_NUM_GRAPHS or sizes != REAL_SPLIT_SIZES):
        raise SystemExit(f"error: {archive} is not the canonical ogbg-molhiv "
                         f"({len(raw['num_nodes'])} graphs, split {sizes})")
    for k, idx in split.items():
        if len(np.unique(raw["label"][idx])) < 2:
            raise SystemExit(f"error: the {k} split has a single class; ROC-AUC is undefined")

    agent = data_dir / "agent"
    for k in ("train", "valid"):
        _atomic_save_npz(agent / f"{k}.npz", **select_graphs(raw, split[k]),
                         y=raw["label"][split[k]])
    heldout = data_dir / "heldout"
    heldout.mkdir(parents=True, exist_ok=True)
    _restrict(heldout)  # before anything lands in it
    _atomic_save_npz(heldout / "test_inputs.npz", **select_graphs(raw, split["test"]))
    save_array(heldout / "test_labels.npy", raw["label"][split["test"]], private=True)
    save_array(heldout / "test_index.npy", split["test"], private=True)
    _restrict(heldout)

    meta = write_manifest(data_dir, TASK_ID, synthetic)
    print(f"{TASK_ID}: prepared {sizes['train']} / {sizes['valid']} / {sizes['test']} graphs "
          f"({'synthetic' if synthetic else 'real'}) in {data_dir}")
    return meta


# ---------------------------------------------------------------------------------------------
# Runtime helpers (import these from run_x.py)
# ---------------------------------------------------------------------------------------------


class Graph(NamedTuple):
    """One molecule: x (n, 9), edge_index (2, e) local ids, edge_attr (e, 3), y (1,) or None."""

    x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray
    y: np.ndarray | None


class GraphBatch(NamedTuple):
    """Graphs glued into one disconnected graph; batch[i] is the graph id of node i."""

    x: torch.Tensor  # (N, 9) int64
    edge_index: torch.Tensor  # (2, E) int64, global node ids
    edge_attr: torch.Tensor  # (E, 3) int64
    batch: torch.Tensor  # (N,) int64
    num_graphs: int
    y: torch.Tensor | None = None  # (B, 1) float32

    def to(self, device: str | torch.device) -> GraphBatch:
        return self._replace(x=self.x.to(device), edge_index=self.edge_index.to(device),
                             edge_attr=self.edge_attr.to(device), batch=self.batch.to(device),
                             y=None if self.y is None else self.y.to(device))


def unpack_graphs(arrays: Mapping[str, np.ndarray]) -> list[Graph]:
    """Split concatenated graph arrays (an .npz) into one Graph per molecule."""
    node_end = np.cumsum(arrays["num_nodes"])
    edge_end = np.cumsum(arrays["num_edges"])
    xs = np.split(np.asarray(arrays["x"]), node_end[:-1])
    eis = np.split(np.asarray(arrays["edge_index"]), edge_end[:-1], axis=1)
    eas = np.split(np.asarray(arrays["edge_attr"]), edge_end[:-1])
    ys = np.asarray(arrays["y"]) if "y" in arrays else [None] * len(xs)
    return [Graph(x, ei, ea, y) for x, ei, ea, y in zip(xs, eis, eas, ys, strict=True)]


def collate_graphs(graphs: Sequence[Graph]) -> GraphBatch:
    """Batch variable-size graphs: concatenate, offset edge ids by the running node count."""
    counts = np.array([len(g.x) for g in graphs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    edge_index = np.concatenate(
        [g.edge_index.astype(np.int64) + off for g, off in zip(graphs, offsets, strict=True)]
        + [np.zeros((2, 0), np.int64)], axis=1)
    x = np.concatenate([g.x for g in graphs]).astype(np.int64)
    edge_attr = np.concatenate([g.edge_attr.reshape(-1, len(BOND_FEATURE_DIMS))
                                for g in graphs]).astype(np.int64)
    y = None
    if all(g.y is not None for g in graphs):
        y = torch.from_numpy(np.stack([g.y for g in graphs]).astype(np.float32)).reshape(-1, 1)
    return GraphBatch(torch.from_numpy(x), torch.from_numpy(edge_index),
                      torch.from_numpy(edge_attr),
                      torch.from_numpy(np.repeat(np.arange(len(graphs)), counts)),
                      len(graphs), y)


def load_graphs(split: str) -> list[Graph]:
    """The graphs of "train" or "valid" (labels included); the test split is held out."""
    if split not in ("train", "valid"):
        raise ValueError("split must be 'train' or 'valid' (the test split is held out)")
    with np.load(DATA_DIR / f"{split}.npz") as z:
        return unpack_graphs({k: z[k] for k in z.files})


def iterate_batches(graphs: Sequence[Graph], batch_size: int, *, shuffle: bool,
                    generator: np.random.Generator | None = None) -> Iterator[GraphBatch]:
    """Yield collated batches; shuffle=True needs a seeded numpy generator for reproducibility."""
    order = np.arange(len(graphs))
    if shuffle:
        order = (generator or np.random.default_rng()).permutation(len(graphs))
    for start in range(0, len(order), batch_size):
        yield collate_graphs([graphs[i] for i in order[start:start + batch_size]])


def save_checkpoint(model: torch.nn.Module, config: dict, score: float,
                    name: str | None = None) -> Path:
    """Save a scored checkpoint into checkpoints/ (Rule 7); score = your validation ROC-AUC."""
    return _kit_save_checkpoint(model, config, score, task=TASK_ID, metric=METRIC,
                                ckpt_dir=CHECKPOINT_DIR, name=name)


def evaluate_rocauc(model: torch.nn.Module) -> float:
    """Self-evaluation on the valid split with the same code path as the official eval."""
    with np.load(DATA_DIR / "valid.npz") as z:
        arrays = {k: z[k] for k in z.files}
    labels = arrays.pop("y")
    return eval_rocauc(labels, predict_graphs(model, arrays))


# ---------------------------------------------------------------------------------------------
# Evaluation (DO NOT CHANGE -- this is the fixed metric)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_graphs(model: torch.nn.Module, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Scores (G, 1) float64 for every graph in inputs; model(GraphBatch) -> (B, 1) logits.

    Runs in the isolated child during the official evaluation. Fixed batch size, fixed order
    and eval mode, so the result does not depend on how the agent batches.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    graphs = unpack_graphs({k: inputs[k] for k in ("x", "edge_index", "edge_attr",
                                                   "num_nodes", "num_edges")})
    out = [model(batch.to(device)).float().reshape(batch.num_graphs, -1).cpu()
           for batch in iterate_batches(graphs, EVAL_BATCH_SIZE, shuffle=False)]
    if not out:
        return np.zeros((0, NUM_TASKS))
    return torch.cat(out).numpy().astype(np.float64)


def roc_auc_score(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Binary ROC-AUC computed step for step as sklearn.metrics.roc_auc_score does.

    Scores sorted descending (stable mergesort), one ROC point per distinct score (so tied
    scores count half), collinear points dropped, (0, 0) prepended, trapezoidal area.
    """
    y_true = np.asarray(y_true).ravel() == 1
    y_score = np.asarray(y_score, dtype=np.float64).ravel()
    if not np.isfinite(y_score).all():
        raise ValueError("predictions contain NaN or infinity")
    if y_true.all() or not y_true.any():
        raise ValueError("ROC-AUC needs both classes")
    order = np.argsort(y_score, kind="mergesort")[::-1]
    y_score, y_true = y_score[order], y_true[order]
    threshold_idxs = np.r_[np.where(np.diff(y_score))[0], y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    if len(fps) > 2:  # sklearn's drop_intermediate
        keep = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps = fps[keep], tps[keep]
    tpr = np.r_[0.0, tps] / tps[-1]
    fpr = np.r_[0.0, fps] / fps[-1]
    return float(np.trapezoid(tpr, fpr))


def eval_rocauc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """OGB's Evaluator('ogbg-molhiv') rocauc: mean over task columns that have both classes.

    Per column, NaN labels are dropped (is_labeled = y_true == y_true); columns without a
    positive and a negative are skipped; no usable column at all is an error, as in OGB.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim != 2 or y_pred.shape != y_true.shape:
        raise ValueError(f"y_true and y_pred must be 2-D of one shape, got {y_true.shape} and "
                         f"{y_pred.shape}")
    scores = []
    for i in range(y_true.shape[1]):
        if np.sum(y_true[:, i] == 1) > 0 and np.sum(y_true[:, i] == 0) > 0:
            is_labeled = y_true[:, i] == y_true[:, i]
            scores.append(roc_auc_score(y_true[is_labeled, i], y_pred[is_labeled, i]))
    if not scores:
        raise RuntimeError("No positively labeled data available. Cannot compute ROC-AUC.")
    return sum(scores) / len(scores)


def official_eval(ckpt: Path, data_dir: Path, script_dir: Path, as_json: bool) -> None:
    """Score ckpt on the scaffold test split; the labels never leave this (trusted) process.

    The model child sees a copy of test_inputs.npz only; DIR (sources, labels) and the
    workspace are hidden from it. Malformed predictions are a classified predict_error.
    """
    data_dir = data_dir.resolve()
    heldout = data_dir / "heldout"
    labels = np.load(heldout / "test_labels.npy")

    def score(pred: np.ndarray) -> float:
        try:
            return eval_rocauc(labels, pred)
        except (ValueError, RuntimeError) as exc:
            raise EvalFailure("predict_error", str(exc)) from exc

    _kit_official_eval(task=TASK_ID, metric=METRIC, split="test", ckpt=ckpt,
                       script_dir=script_dir, inputs_npz=heldout / "test_inputs.npz",
                       predict="predict_graphs", score=score, as_json=as_json,
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
