"""The seam between the harness's scorer and the tasks: audit builds the evaluator and the
policy from the task registry, so the harness never imports the tasks."""

import json
import os
from pathlib import Path
from typing import Any

from onegc.evidence.layout import RunLayout
from onegc.harness import view
from onegc.harness.scoring import Evaluator, ScoringPolicy
from onegc.tasks import registry

# An explicit override of every task's evaluation limit (default: the task's own, a multiple
# of its reference evaluation time).
EVAL_TIMEOUT_S = float(os.environ["ONEGC_EVAL_TIMEOUT_S"]) if os.environ.get("ONEGC_EVAL_TIMEOUT_S") else None


def task_evaluator(
    task_id: str, data_dir: Path, timeout_s: float | None = EVAL_TIMEOUT_S, *, pinned: dict[str, str] | None = None
) -> Evaluator:
    """``evaluate(checkpoint, script_dir)`` through the task's original, hash-checked
    prepare.py, bounded by ``timeout_s`` (None: the task's limit, a multiple of its reference
    evaluation); the model process runs in the harness's deny-by-default view (only the
    staged checkpoint, sources and inputs, no network).
    ``pinned``: the data files' hashes the run was pinned to; a mismatch is an error, never a score."""

    def evaluate(checkpoint: Path, script_dir: Path) -> dict[str, Any]:
        sandbox = view.command() if os.geteuid() == 0 else None
        return registry.evaluate(
            task_id, checkpoint, script_dir, data_dir, timeout_s=timeout_s, sandbox=sandbox, pinned=pinned
        )

    return evaluate


def data_context(prepared: registry.PreparedData) -> dict[str, Any]:
    """What result.json records about the data a run was scored against."""
    return {
        "data_dir": str(prepared.data_dir),
        "version": prepared.version,
        "synthetic": prepared.synthetic,
        "files": {k: v for k, v in prepared.files.items() if not k.startswith("source/")},
    }


def task_policy(task: registry.TaskSpec, context: dict[str, Any] | None = None) -> ScoringPolicy:
    return ScoringPolicy(
        task=task.id,
        metric=task.metric,
        direction=task.direction,
        baseline=task.baseline_score,
        context=context or {},
        eval_reference_cpu_s=task.eval_reference_cpu_s,
    )


def recorded_data(run_dir: Path) -> dict[str, Any]:
    """The data context the harness's scoring recorded for this run (empty if none)."""
    path = RunLayout(run_dir).result
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("context") or {})
    except (ValueError, AttributeError):
        return {}
