"""Task data is immutable and pinned (issue 13.2): each preparation is published whole as a
version named by its files' hashes, never rewritten; runs and scoring pin the version; a
mismatch refuses to score, naming both hashes; bad arguments prepare nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onegc.tasks import registry
from tests.tasks.conftest import run_smoke

TASK = "t6"


def _versions(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_a_published_version_is_reused_and_never_rewritten(tmp_path):
    first = registry.prepare_data(TASK, tmp_path, synthetic=True)
    assert first.data_dir.parent == tmp_path and first.version == first.data_dir.name
    assert first.version == registry.data_version(TASK, True, first.files)
    labels = first.data_dir / "heldout" / "labels.npy"
    assert not labels.stat().st_mode & 0o222 and not first.data_dir.stat().st_mode & 0o222
    again = registry.prepare_data(TASK, tmp_path, synthetic=True)
    assert again.data_dir == first.data_dir and _versions(tmp_path) == [first.version]
    # someone (root) changes a published file: the next preparation does not trust or repair it,
    # it publishes a fresh version beside it; the changed copy is left as evidence
    os.chmod(labels, 0o600)
    labels.write_bytes(labels.read_bytes()[:-4] + b"\0\0\0\0")
    fresh = registry.prepare_data(TASK, tmp_path, synthetic=True)
    assert fresh.data_dir != first.data_dir or fresh.files == first.files
    assert registry.load_prepared(TASK, fresh.data_dir).files == first.files
    assert not any(p.name.startswith(".preparing-") for p in tmp_path.iterdir())


def test_real_and_synthetic_are_different_versions(tmp_path, monkeypatch):
    if not os.environ.get("ONEGC_SHARED_DATA") and Path("/work/shared/data").is_dir():
        monkeypatch.setenv("ONEGC_SHARED_DATA", "/work/shared/data")
    if registry.offline_source(TASK) is None:
        pytest.skip("no offline copy of the real T6 data")
    real = registry.prepare_data(TASK, tmp_path, synthetic=False)
    synthetic = registry.prepare_data(TASK, tmp_path, synthetic=True)
    assert real.version.startswith("real-") and synthetic.version.startswith("synthetic-")
    assert _versions(tmp_path) == sorted([real.version, synthetic.version])
    assert registry.prepare_data(TASK, tmp_path, synthetic=False).data_dir == real.data_dir


def test_scoring_against_other_data_than_pinned_is_refused(tmp_path):
    run = run_smoke(TASK, tmp_path / "smoke")
    pinned = {k: v for k, v in run.prepared.files.items() if not k.startswith("source/")}
    ok = registry.evaluate(TASK, run.checkpoint, run.workspace, run.prepared.data_dir, pinned=pinned)
    assert "value" in ok, ok
    other = dict(pinned, **{"heldout/labels.npy": "0" * 64})  # the run was pinned to other labels
    with pytest.raises(registry.DataChanged) as err:
        registry.evaluate(TASK, run.checkpoint, run.workspace, run.prepared.data_dir, pinned=other)
    msg = str(err.value)
    assert "0" * 64 in msg and run.prepared.files["heldout/labels.npy"] in msg and "\n" not in msg


def test_bad_arguments_prepare_nothing(tmp_path):
    data = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-c", "from onegc.audit.cli import main; main()", "run", "--task", TASK,
         "--agent", "command", "--label", "bad label!", "--runs-dir", str(tmp_path / "runs"),
         "--data-dir", str(data), "--", "true"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "label" in out.stderr and out.stderr.strip().count("\n") == 0, out.stderr
    assert not data.exists() or not any(data.rglob("*")), "nothing may be prepared before the arguments are valid"


def test_run_start_record_and_result_pin_the_version(tmp_path):
    """`result.json` records the version and every file's hash (as scoring's context)."""
    prepared = registry.prepare_data(TASK, tmp_path, synthetic=True)
    from onegc.audit import official

    context = official.data_context(prepared)
    assert context["version"] == prepared.version
    assert context["files"]["heldout/labels.npy"] == prepared.files["heldout/labels.npy"]
    json.dumps(context)
