"""The agent's sandbox hides the host's /tmp and /root, but never the interpreter and code
the agent needs: a checkout and venv under /tmp are carried into its private /tmp."""

import site
import subprocess
import sys
from pathlib import Path

from tests.conftest import needs_root

pytestmark = needs_root
REPO = Path(__file__).resolve().parents[2]


def test_harness_run_from_a_venv_under_tmp_still_runs_its_agent(runs_dir, tmp_path):
    venv = tmp_path / "venv"  # pytest's tmp_path lies under /tmp
    assert str(venv).startswith("/tmp/")
    # The interpreter lies under /tmp; onegc and its dependencies come from this interpreter's
    # site-packages through a .pth file (the same whether the suite runs in a venv or not: a
    # venv made from a venv's interpreter would not inherit the outer venv's packages).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site_dir,) = (venv / "lib").glob("python3*/site-packages")
    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (site_dir / "outer.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in outer))
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from pathlib import Path\n"
        "from tests.conftest import monitored\n"
        f"run = monitored(Path({str(runs_dir)!r}), 'python -c \"import sys, onegc.harness; print(sys.executable)\" "
        "> where.txt; ls /tmp > tmp.txt')\n"
        "print(run)\n"
    )
    res = subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    ws = Path(res.stdout.strip().splitlines()[-1]) / "workspace"
    assert (ws / "where.txt").read_text().strip() == str(venv / "bin" / "python")
    assert (ws / "tmp.txt").read_text().split() == [tmp_path.parts[2]]  # only what was carried in
