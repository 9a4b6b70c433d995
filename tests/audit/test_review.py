"""The review of a disqualified run names the rule, shows and marks the offending row, and
its HTML renders in headless Chromium."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import needs_root

pytestmark = needs_root
CLI = [sys.executable, "-m", "onegc.audit"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def disqualified_run(tmp_path_factory):
    from tests.conftest import RUNS_BASE

    runs = RUNS_BASE / f"review-{os.getpid()}"
    env = {**os.environ, "ONEGC_DATA_DIR": str(tmp_path_factory.mktemp("data"))}
    res = subprocess.run([*CLI, "run", "--task", "t6", "--agent", "scripted:pip_install", "--runs-dir",
                          str(runs), "--synthetic", "--env", "ONEGC_SMOKE=1"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 4, res.stdout + res.stderr  # disqualified
    yield runs / "scripted-pip_install" / "t6" / "r1"
    shutil.rmtree(runs, ignore_errors=True)


def test_markdown_names_the_rule_and_marks_the_offending_row(disqualified_run):
    res = subprocess.run([*CLI, "review", str(disqualified_run)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    md = res.stdout
    assert "**Verdict: disqualified**" in md
    assert "| R4 No package installation | attempt |" in md
    marked = [line for line in md.splitlines() if line.endswith("| **R4 attempt** |")]
    assert len(marked) == 1 and "pip install --no-index --quiet onegc-not-a-package" in marked[0]
    transcript = md.split("## Transcript around each violation")[1]
    assert "→ line" in transcript and "pip install" in transcript
    assert "official" in md.split("## Checkpoints and scores")[1]


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_html_is_self_contained_and_renders_the_violation(disqualified_run, tmp_path):
    page = tmp_path / "review.html"
    res = subprocess.run([*CLI, "review", str(disqualified_run), "--format", "html", "--out", str(page)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    text = page.read_text()
    for external in ("<script", "http://", "https://", "@import", "<link"):
        assert external not in text
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert "<tr class=\"violation\">" in dom and "R4 attempt" in dom
    shot = tmp_path / "review.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1400,1800", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
