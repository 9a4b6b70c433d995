"""The seam between the harness's scorer and the tasks: audit builds the evaluator and the
policy from the task registry, so the harness never imports the tasks."""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from onegc.evidence.errors import OnegcError
from onegc.evidence.layout import RunLayout
from onegc.evidence.seal import latest_result
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


def data_label(context: dict[str, Any]) -> dict[str, Any] | None:
    """``{"kind": "real"|"synthetic", "version": ...}`` of a data context: the prepared data's
    pinned version, else (older results) a digest over the evaluated files' hashes, so two runs
    share it exactly when they were scored on the same data. None when the context does not say."""
    if "synthetic" not in context:
        return None
    files = json.dumps(sorted((context.get("files") or {}).items())).encode()
    return {
        "kind": "synthetic" if context["synthetic"] else "real",
        "version": context.get("version") or "sha256:" + hashlib.sha256(files).hexdigest()[:16],
    }


def task_policy(task: registry.TaskSpec, context: dict[str, Any] | None = None) -> ScoringPolicy:
    return ScoringPolicy(
        task=task.id,
        metric=task.metric,
        direction=task.direction,
        baseline=task.baseline_score,
        context=context or {},
        data=data_label(context or {}),
        eval_reference_cpu_s=task.eval_reference_cpu_s,
    )


def run_data(run_dir: Path) -> dict[str, Any] | None:
    """What data the run's counting result (the latest rescore, else result.json) was scored
    on; None when there is no result (an imported run) or it does not say."""
    _, result = latest_result(run_dir)
    if not isinstance(result, dict):
        return None
    return result.get("data") or data_label(result.get("context") or {})


def recorded_data(run_dir: Path) -> dict[str, Any]:
    """The data context the harness's scoring recorded for this run (empty if none)."""
    path = RunLayout(run_dir).result
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("context") or {})
    except (ValueError, AttributeError, TypeError):  # fail closed: never "no record, any data will do"
        raise OnegcError(f"{path}: unreadable, so the data version of the run is unknown") from None


def data_line(data: dict[str, Any] | None) -> str:
    """One line saying what data a score rests on, loud when it is synthetic."""
    if data is None:
        return "data: unknown (no official result says what data was used)"
    if data.get("kind") == "synthetic":
        return (
            f"data: SYNTHETIC ({data.get('version')}): generated stand-in data, so this score only shows the "
            "pipeline works and compares with nothing; real data: see README, 'Task data'"
        )
    return f"data: {data.get('kind')} ({data.get('version')})"
