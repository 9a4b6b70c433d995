"""The agent's view holds its interpreter and its run wherever they live: a venv and a runs dir
under /tmp are bound into the view's private /tmp, and nothing else of the host's /tmp is."""

import os
import site
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import needs_root

pytestmark = needs_root
REPO = Path(__file__).resolve().parents[2]


def test_harness_run_from_a_venv_and_runs_dir_under_tmp_still_runs_its_agent(tmp_path):
    venv = tmp_path / "venv"  # pytest's tmp_path lies under /tmp
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    assert str(venv).startswith("/tmp/")
    marker = Path("/tmp") / f"onegc-host-only-{uuid.uuid4().hex[:8]}"
    marker.write_text("host secret\n")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (new_site,) = venv.glob("lib/python*/site-packages")  # onegc (the harness side) from our venv
    (new_site / "onegc-from.pth").write_text(f"import site; site.addsitedir({site.getsitepackages()[0]!r})\n")
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from pathlib import Path\n"
        "from tests.conftest import monitored\n"
        f"run = monitored(Path({str(runs_dir)!r}), 'python -c \"import sys; print(sys.executable)\" "
        f"> where.txt; ls /tmp > tmp.txt; cat {marker} > leak.txt 2>&1')\n"
        "print(run)\n"
    )
    try:
        res = subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(marker)
    assert res.returncode == 0, res.stderr
    ws = Path(res.stdout.strip().splitlines()[-1]) / "workspace"
    assert (ws / "where.txt").read_text().strip() == str(venv / "bin" / "python")
    assert (ws / "tmp.txt").read_text().split() == [tmp_path.parts[2]]  # only what was bound in
    assert "No such file" in (ws / "leak.txt").read_text()
