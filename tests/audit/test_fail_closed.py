"""Fail closed: when a lookup the verdict needs fails (the task's direction, the budget, the
locked-file list), the verdict is `incomplete`, never a score picked by a default."""

import json
import os
import subprocess
import sys

import pytest

from onegc.audit.cmd_verify import task_direction
from onegc.evidence.seal import RESCORE_DIR, seal_addendum
from onegc.rules.engine import judge
from tests.conftest import monitored, needs_root

pytestmark = needs_root


def _with_scored_rescore(run, value=0.25):
    """A sealed rescore that scored the run (as `onegc-audit score` leaves it)."""
    folder = run / RESCORE_DIR / ".stamp.partial"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"outcome": "scored", "value": value,
                                                    "checkpoint": "checkpoints/best.pt"}))
    seal_addendum(folder, {"kind": "rescore", "who": "test", "why": "fail-closed test"})
    folder.rename(run / RESCORE_DIR / "20260101T000000Z-abcdef")
    return run


def test_broken_registry_makes_a_scored_run_incomplete_never_a_guessed_best(runs_dir, monkeypatch):
    script = "mkdir -p checkpoints && echo w > checkpoints/best.pt"
    files = {"train.py": "def build_model(config):\n    return None\n"}
    run = _with_scored_rescore(monitored(runs_dir, script, files=files))
    known = judge(run, direction_for=lambda task: "lower")
    assert known.status == "accepted" and known.score.official == 0.25, known.reasons
    from onegc.tasks import registry

    def broken(task):
        raise RuntimeError("registry unreadable")

    monkeypatch.setattr(registry, "get_task", broken)
    assert task_direction("t6") is None
    verdict = judge(run, direction_for=task_direction)
    assert verdict.status == "incomplete" and verdict.score is None
    assert any("direction of task 't0' is unknown" in r for r in verdict.reasons)
    assert judge(run).status == "incomplete"  # no lookup at all is no better
    cli = [sys.executable, "-c", "from onegc.audit.cli import main; main()"]
    res = subprocess.run([*cli, "verify", str(run)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ONEGC_KEY_DIR": str(runs_dir / "none")})
    assert res.returncode == 5 and "unknown" in res.stdout  # t0 is not in the registry: the same


def test_a_record_without_locked_files_or_deadline_is_incomplete(runs_dir):
    run = monitored(runs_dir, "echo hi > a.txt", locked=())
    verdict = judge(run, direction_for=lambda task: "lower")
    assert verdict.status == "incomplete"
    assert any("no locked files" in r for r in verdict.reasons)


def test_rescoring_without_a_recorded_data_version_needs_it_named(tmp_path):
    """A run whose result.json records no data files is never scored against whatever data
    is lying around; an unreadable record is an error, not "no record"."""
    from onegc.audit import cmd_score
    from onegc.evidence.errors import OnegcError
    from onegc.tasks import registry

    task = registry.get_task("t6")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(OnegcError, match="records no data version"):
        cmd_score._data(task, run, None)
    (run / "result.json").write_text("{not json")
    with pytest.raises(OnegcError, match="data version of the run is unknown"):
        cmd_score._data(task, run, None)
