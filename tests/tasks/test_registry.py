"""Task registry and the ``onegc-audit tasks`` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from onegc.audit.cli import app
from onegc.tasks import registry

PAPER = {  # Table 2: budget (min), metric direction, eval split, baseline
    "t1": (40, "lower", "validation", 3.438),
    "t6": (40, "lower", "test", 0.384),
    "t7": (40, "higher", "validation", 0.793),
}


def test_specs_match_paper_table_2() -> None:
    specs = {s.id: s for s in registry.list_tasks()}
    for tid, (minutes, direction, split, baseline) in PAPER.items():
        s = specs[tid]
        assert (s.budget_s, s.direction, s.eval_split, s.baseline_score) == (
            minutes * 60, direction, split, baseline,
        )  # fmt: skip
        assert s.has_heldout == (split == "test")
        assert s.locked == ("prepare.py", "taskkit.py")
        assert s.slug.startswith(tid + "_") and (s.dir / "program.md").is_file()
    assert registry.get_task("t6_etth1_forecast") == registry.get_task("T6")


def test_unknown_task_names_known_ids() -> None:
    with pytest.raises(registry.UnknownTask, match=r"known tasks: .*t1.*t6"):
        registry.get_task("t99")


def test_cli_list_json_and_errors() -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["tasks", "list", "--json"])
    assert out.exit_code == 0
    rows = {r["id"]: r for r in json.loads(out.stdout)}
    assert rows["t6"]["metric"] == "mse" and rows["t6"]["reference_value"] == 0.375
    # errors are printed by the CLI's one boundary (audit/cli.main), so through the real command
    bad = subprocess.run([sys.executable, "-m", "onegc.audit", "tasks", "prepare", "t99", "--data-dir", "/tmp/x"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and not Path("/tmp/x/t99").exists()
    assert bad.stderr.strip().count("\n") == 0 and "unknown task" in bad.stderr


def test_cli_prepare_synthetic(tmp_path) -> None:
    out = CliRunner().invoke(app, ["tasks", "prepare", "t6", "--data-dir", str(tmp_path), "--synthetic"])
    assert out.exit_code == 0, out.output
    (version,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert version.name.startswith("synthetic-") and str(version) in out.output
    manifest = json.loads((version / "prepared.json").read_text())
    assert manifest["task"] == "t6" and manifest["synthetic"] is True
    assert "heldout/labels.npy" in manifest["files"]
    before = (version / "agent" / "train.npy").stat().st_mtime_ns
    again = registry.prepare_data("t6", tmp_path, synthetic=True)  # the published version, reused
    assert again.data_dir == version and again.version == version.name
    assert (version / "agent" / "train.npy").stat().st_mtime_ns == before
    assert again.files == manifest["files"]


def test_evaluate_refuses_tampered_eval_data(smoke_run) -> None:
    run = smoke_run("t6")
    labels = run.prepared.data_dir / "heldout" / "labels.npy"
    original = labels.read_bytes()
    try:
        labels.write_bytes(original[:-4] + b"\0\0\0\0")
        with pytest.raises(registry.DataChanged, match="changed since preparation: sha256 [0-9a-f]{64} expected"):
            registry.evaluate("t6", run.checkpoint, run.workspace, run.prepared.data_dir)
    finally:
        labels.write_bytes(original)
