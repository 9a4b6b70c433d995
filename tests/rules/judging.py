"""Helpers for the planted-violation suite: a real monitored run, then the verdict on it."""

import base64
import hashlib
import os
import zipfile
from pathlib import Path

from onegc.evidence.models import RuleOutcome, Verdict
from onegc.rules.engine import judge
from tests.conftest import monitored

AGENT_UID = 61000


def judged(runs_dir: Path, script: str, **kw) -> tuple[Path, Verdict]:
    """Run `script` as the agent under the real harness; return (run_dir, verdict)."""
    run = monitored(runs_dir, script, **kw)
    return run, judge(run)


def rule(verdict: Verdict, rule_id: str) -> RuleOutcome:
    return next(r for r in verdict.rules if r.id == rule_id)


def make_outside(runs_dir: Path) -> Path:
    """A folder outside the run the agent can read (weights, wheels, held-out data live here)."""
    path = runs_dir / "outside"
    path.mkdir()
    os.chmod(path, 0o755)
    return path


def build_wheel(folder: Path, name: str = "evilpkg") -> Path:
    """A real, minimal pure-Python wheel (installable with --no-index, no network)."""
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{name}-0.1.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n".encode(),
        f"{name}-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}-0.1.dist-info/RECORD,,")
    files[f"{name}-0.1.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    os.chmod(wheel, 0o644)
    return wheel
