"""Shared fixtures for the task tests (every task's test file reuses them).

``smoke_run(task_id)`` prepares synthetic data with the task's real prepare.py, populates a
workspace the way the harness does, runs the baseline ``train.py`` with ONEGC_SMOKE=1 as a
subprocess and returns (workspace, prepared, checkpoint); results are cached per task for
the session because the pipeline is what costs time. ``variant_checkpoint`` writes an
agent script plus a checkpoint that points at it, for failure and isolation tests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, NamedTuple

import pytest
import torch

from onegc.tasks import registry


class SmokeRun(NamedTuple):
    """A populated workspace with one checkpoint from the smoke training of train.py."""

    workspace: Path
    prepared: registry.PreparedData
    checkpoint: Path


def run_smoke(task_id: str, root: Path, timeout_s: float = 120) -> SmokeRun:
    """Synthetic prepare -> populate_workspace -> ONEGC_SMOKE=1 train.py -> newest ckpt."""
    task = registry.get_task(task_id)
    prepared = registry.prepare_data(task.id, root / "data", synthetic=True)
    workspace = root / "workspace"
    registry.populate_workspace(task, workspace, prepared)
    env = {**os.environ, **dict(task.smoke_env), "ONEGC_SMOKE": "1", "PYTHONHASHSEED": "0"}
    env.pop("ONEGC_DATA_DIR", None)
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=workspace, env=env, capture_output=True, text=True,
        timeout=timeout_s,
    )  # fmt: skip
    assert proc.returncode == 0, f"smoke train.py failed:\n{proc.stdout[-2000:]}{proc.stderr}"
    ckpts = sorted((workspace / "checkpoints").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    assert ckpts, f"train.py saved no checkpoint:\n{proc.stdout[-2000:]}"
    return SmokeRun(workspace, prepared, ckpts[-1])


@pytest.fixture(scope="session")
def smoke_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., SmokeRun]:
    """``smoke_run(task_id, tmp_path=None)``: cached per task unless a folder is given."""
    cache: dict[str, SmokeRun] = {}

    def get(task_id: str, tmp_path: Path | None = None) -> SmokeRun:
        if tmp_path is not None:
            return run_smoke(task_id, tmp_path)
        if task_id not in cache:
            cache[task_id] = run_smoke(task_id, tmp_path_factory.mktemp(f"smoke-{task_id}"))
        return cache[task_id]

    return get


def variant_checkpoint(
    run: SmokeRun,
    script_name: str,
    source: str,
    *,
    rename: Callable[[str], str] | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``source`` as ``script_name`` into the workspace and a copy of the smoke
    checkpoint that records it (keys passed through ``rename``, or ``state_dict`` instead)."""
    (run.workspace / script_name).write_text(textwrap.dedent(source))
    ckpt: dict[str, Any] = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
    ckpt["script"] = script_name
    if state_dict is not None:
        ckpt["state_dict"] = state_dict
    if rename is not None:
        ckpt["state_dict"] = {rename(k): v for k, v in ckpt["state_dict"].items()}
    out = run.workspace / "checkpoints" / f"{Path(script_name).stem}.pt"
    torch.save(ckpt, out)
    return out


def spy_source(label_file: Path) -> str:
    """An agent script whose build_model tries to read the label file during evaluation and
    reports, through the classified error detail, whether it could (LEAKED) or not."""
    return f"""
        def build_model(config):
            try:
                with open({str(label_file)!r}, "rb") as f:
                    data = f.read(16)
            except OSError as exc:
                raise RuntimeError(f"BLOCKED {{type(exc).__name__}}") from exc
            raise RuntimeError(f"LEAKED {{len(data)}} bytes")
        """


def assert_labels_unreachable(task_id: str, run: SmokeRun, label_file: Path) -> None:
    """The official evaluation of a label-reading model must see the read fail.

    Positive control first: the same code, run in this (root) test process, does read the
    file, so the assertion below can only pass because of the evaluation's isolation.
    """
    assert label_file.is_file()
    ckpt = variant_checkpoint(run, "run_spy.py", spy_source(label_file))
    spec = importlib.util.spec_from_file_location("onegc_spy", run.workspace / "run_spy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(RuntimeError, match="LEAKED"):
        module.build_model({})
    result = registry.evaluate(task_id, ckpt, run.workspace, run.prepared.data_dir)
    assert result.get("error") == "build_model_error", result
    assert "BLOCKED" in result["detail"] and "LEAKED" not in result["detail"], result


def load_prepare(task_id: str) -> ModuleType:
    """Import a task's prepare.py from the registry folder under a unique module name."""
    path = registry.get_task(task_id).dir / "prepare.py"
    spec = importlib.util.spec_from_file_location(f"onegc_prepare_{task_id}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def real_source(task_id: str, *names: str) -> Path:
    """The offline real-data folder holding ``names``, or skip the test."""
    folder = registry.offline_source(task_id)
    if folder is None or not all((folder / n).is_file() for n in names):
        pytest.skip(f"no offline real data for {task_id} ({', '.join(names)})")
    return folder


# Fixture forms of the helpers, so test modules need not import this conftest by name.


@pytest.fixture(scope="session")
def make_variant() -> Callable[..., Path]:
    """``make_variant(run, script_name, source, rename=None, state_dict=None) -> ckpt``."""
    return variant_checkpoint


@pytest.fixture(scope="session")
def labels_unreachable() -> Callable[[str, SmokeRun, Path], None]:
    """``labels_unreachable(task_id, run, label_file)`` asserts the isolation holds."""
    return assert_labels_unreachable


@pytest.fixture(scope="session")
def task_prepare() -> Callable[[str], ModuleType]:
    """``task_prepare(task_id)`` imports the registry's prepare.py of that task."""
    return load_prepare


@pytest.fixture(scope="session")
def real_data() -> Callable[..., Path]:
    """``real_data(task_id, *file_names)``: the offline source folder, or skip."""
    return real_source


def probe_pipeline(task_id: str, run: SmokeRun, oracle: str, thief: str) -> SimpleNamespace:
    """The baseline checkpoint and three probes (an oracle model, a model that tries to read
    the held-out labels, a torch.compile'd copy), evaluated officially and in parallel: one
    thread per evaluation process, so four of them share two cores without oversubscribing."""
    labels = run.prepared.heldout_dir / "test_labels.npy"
    one = {"scale": torch.ones(1)}
    ckpts = {
        "baseline": run.checkpoint,
        "oracle": variant_checkpoint(run, "run_oracle.py", oracle, state_dict=one),
        "thief": variant_checkpoint(run, "run_thief.py", thief.replace("LABELS", repr(str(labels))), state_dict=one),
        "orig_mod": variant_checkpoint(
            run, "run_compiled.py", (run.workspace / "train.py").read_text(), rename=lambda k: "_orig_mod." + k
        ),
    }
    with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(len(ckpts)) as pool:
        mp.setenv("OMP_NUM_THREADS", "1")
        futures = {
            name: pool.submit(registry.evaluate, task_id, ckpt, run.workspace, run.prepared.data_dir)
            for name, ckpt in ckpts.items()
        }
    return SimpleNamespace(
        prepared=run.prepared,
        workspace=run.workspace,
        labels=labels,
        checkpoint=run.checkpoint,
        results={name: f.result() for name, f in futures.items()},
    )


@contextlib.contextmanager
def prepare_as(module: ModuleType | None) -> Iterator[None]:
    """Make `import prepare` resolve to `module`: every task has its own prepare.py."""
    saved = sys.modules.get("prepare")
    if module is not None:
        sys.modules["prepare"] = module
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop("prepare", None)
        else:
            sys.modules["prepare"] = saved


def load_task_file(name: str, path: Path, prepare: ModuleType | None = None) -> ModuleType:
    """Import a task file by path (task files are scripts, not package modules)."""
    sys.path.insert(0, str(registry.KIT.parent))
    try:
        with prepare_as(prepare):
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # registered as a normal import would be
            spec.loader.exec_module(module)
            return module
    finally:
        sys.path.remove(str(registry.KIT.parent))
