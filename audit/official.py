"""The seam between the harness's scorer and the tasks: audit builds the evaluator and the
policy from the task registry, so the harness never imports the tasks."""

import json
import os
from pathlib import Path
from typing import Any

from onegc.evidence.errors import OnegcError
from onegc.harness.scoring import Evaluator, ScoringPolicy
from onegc.tasks import registry

EVAL_TIMEOUT_S = float(os.environ.get("ONEGC_EVAL_TIMEOUT_S", "900"))


def task_evaluator(task_id: str, data_dir: Path, timeout_s: float = EVAL_TIMEOUT_S) -> Evaluator:
    """``evaluate(checkpoint, script_dir)`` through the task's original, hash-checked
    prepare.py in the isolated evaluator, bounded by ``timeout_s``."""

    def evaluate(checkpoint: Path, script_dir: Path) -> dict[str, Any]:
        return registry.evaluate(task_id, checkpoint, script_dir, data_dir, timeout_s=timeout_s)

    return evaluate


def data_context(prepared: registry.PreparedData) -> dict[str, Any]:
    """What result.json records about the data a run was scored against."""
    return {
        "data_dir": str(prepared.data_dir),
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
    )


def recorded_data(run_dir: Path) -> dict[str, Any]:
    """The data context the harness's scoring recorded for this run (empty if none)."""
    path = run_dir / "result.json"
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("context") or {})
    except (ValueError, AttributeError, TypeError):  # fail closed: never "no record, any data will do"
        raise OnegcError(f"{path}: unreadable, so the data version of the run is unknown") from None
