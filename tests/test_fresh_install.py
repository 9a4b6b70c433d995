"""A fresh install as a newcomer makes it: a brand-new virtualenv, `pip install -e .` with no
extras and no torch, then `onegc-audit --help` and every typical mistake of the README's
commands (tests/audit/test_cli_errors.py), through the installed console script.

The install must not reach the network from a test, so pip installs inside a network namespace
holding only loopback, from a wheelhouse of the declared dependencies that `.ci/run` builds
before the tests (`ONEGC_TEST_WHEELHOUSE`); what is not declared is not there, so an undeclared
import fails here. Without a wheelhouse the test skips, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.audit.test_cli_errors import check, make_inputs, mistakes
from tests.conftest import needs_root

REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = os.environ.get("ONEGC_TEST_WHEELHOUSE")

pytestmark = [
    needs_root,
    pytest.mark.slow,
    pytest.mark.skipif(not WHEELHOUSE, reason="no ONEGC_TEST_WHEELHOUSE (.ci/run builds one)"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)"),
]


def offline(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run argv in a new network namespace: only loopback, so nothing can be fetched."""
    return subprocess.run(["unshare", "-n", "--", *argv], capture_output=True, text=True, **kw)


def test_fresh_venv_installs_and_every_mistake_is_one_line(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)  # not this venv's packages
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "COLUMNS": "200"}
    pip = offline(
        [str(venv / "bin" / "pip"), "install", "--no-index", "--find-links", str(WHEELHOUSE), "-e", str(REPO)],
        env=env, timeout=900,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    tool = venv / "bin" / "onegc-audit"

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        return offline([str(tool), *argv], cwd=tmp_path, env=env, timeout=300, stdin=subprocess.DEVNULL)

    helped = run(["--help"])
    assert helped.returncode == 0 and "Usage" in helped.stdout and not helped.stderr, helped.stderr
    # every module of the package imports with the declared dependencies alone (torch is the
    # user's own install: only the task files, which run in the agent's workspace, need it)
    code = (
        "import importlib, pkgutil, onegc\n"
        "for m in pkgutil.walk_packages(onegc.__path__, 'onegc.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "print('imported')\n"
    )
    imported = offline([str(venv / "bin" / "python"), "-c", code], env=env, timeout=300, cwd=tmp_path)
    assert imported.returncode == 0 and imported.stdout.split() == ["imported"], imported.stderr[-3000:]

    cases = mistakes(make_inputs(tmp_path))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: run(case[1]), cases))
    for (name, _, code_, word), proc in zip(cases, results, strict=True):
        try:
            check(proc, code_, word)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
