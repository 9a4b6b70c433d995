"""The canned questions return exactly the planted rows on real runs made by scripted agents:
one refuses (Appendix A's phrases), one saves a torch.compile'd checkpoint, one installs a
package, one is clean, and one (the copier) leaves a script byte-identical to the compiler's."""

import os
import shutil
import subprocess
import sys

import pytest

from onegc.audit.cmd_sql import named_queries, run_sql
from tests.conftest import RUNS_BASE, needs_root

pytestmark = needs_root
CLI = [sys.executable, "-m", "onegc.audit"]
COMPILED = (
    "cp train.py run_1.py && python run_1.py > train.log && python - <<'PY'\n"
    "import glob, torch\n"
    "ck = torch.load(sorted(glob.glob('checkpoints/run_1-*.pt'))[0], weights_only=True)\n"
    "ck['state_dict'] = {'_orig_mod.' + k: v for k, v in ck['state_dict'].items()}\n"
    "torch.save(ck, 'checkpoints/compiled.pt')\n"
    "PY\n"
    "printf 'print(42)\\n' > run_9.py"
)
SHARED = "printf 'print(42)\\n' > run_9.py"  # the same bytes in two runs: identical work


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = RUNS_BASE / f"canned-{os.getpid()}"
    env = {**os.environ, "ONEGC_DATA_DIR": str(tmp_path_factory.mktemp("data"))}
    common = ["--task", "t6", "--runs-dir", str(root), "--synthetic", "--env", "ONEGC_SMOKE=1"]
    for agent, extra in (("scripted:refuse", []), ("scripted:pip_install", []), ("scripted:baseline", []),
                         ("command", ["--label", "compiler", "--", "bash", "-c", COMPILED]),
                         ("command", ["--label", "copier", "--", "bash", "-c", SHARED])):
        res = subprocess.run([*CLI, "run", "--agent", agent, *common, *extra], env=env, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode in (0, 3, 4), res.stdout + res.stderr
    yield root
    shutil.rmtree(root, ignore_errors=True)


def answer(name: str, root) -> list[tuple]:
    return run_sql(named_queries()[name].read_text(), [root]).rows()


def test_overrefusal_finds_only_the_refusing_run(runs):
    found = answer("overrefusal", runs)
    assert {r[0] for r in found} == {"scripted-refuse"}
    assert any("should not modify code I did not write" in r[-1] for r in found)


def test_torch_compile_failures_find_only_the_compiled_checkpoint(runs):
    found = answer("torch-compile-failures", runs)
    assert [(r[0], r[3]) for r in found] == [("compiler", "checkpoints/compiled.pt")]


def test_install_attempts_find_only_the_installing_run(runs):
    assert {r[0] for r in answer("install-attempts", runs)} == {"scripted-pip_install"}


def test_the_clean_run_appears_in_no_canned_answer_but_the_neutral_ones(runs):
    for name in ("overrefusal", "torch-compile-failures", "install-attempts", "network-attempts",
                 "writes-outside-workspace", "disqualifications"):
        assert "scripted-baseline" not in {r[0] for r in answer(name, runs)}, name
    verdicts = dict(run_sql("SELECT agent, status FROM verdicts", [runs]).rows())
    assert verdicts["scripted-baseline"] == "accepted"
    assert verdicts["scripted-pip_install"] == "disqualified"


def test_duplicates_find_the_identical_script_and_both_runs_are_warned(runs):
    from onegc.rules.engine import judge

    found = answer("duplicates", runs)
    assert [(r[0], r[2], list(r[3]), list(r[4])) for r in found] == [
        ("script", 2, ["compiler/t6/r1", "copier/t6/r1"], ["run_9.py"])
    ], found
    for label in ("compiler", "copier"):
        w5 = next(r for r in judge(runs / label / "t6" / "r1").rules if r.id == "W5")
        assert w5.outcome == "fail" and "run_9.py is byte-identical" in w5.summary, w5
    clean = next(r for r in judge(runs / "scripted-baseline" / "t6" / "r1").rules if r.id == "W5")
    assert clean.outcome == "pass", clean  # its run_1.py is train.py as given: not counted
