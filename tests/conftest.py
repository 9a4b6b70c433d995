"""Shared fixtures: real monitored runs in a runs dir the unprivileged agent can reach."""

import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from onegc.harness.monitor import run_monitored
from onegc.harness.spec import RunSpec, create_run_dir

# Not under /tmp: /tmp, /var/tmp and /dev/shm are made private to the agent.
RUNS_BASE = Path(os.environ.get("ONEGC_TEST_RUNS", "/var/lib/onegc-audit/test-runs"))

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the harness needs root (namespaces, cgroup)")


@pytest.fixture(scope="session", autouse=True)
def private_signing_keys(tmp_path_factory) -> Iterator[None]:
    """The suite's own key folder (empty: runs are unsigned unless a test makes a key), so
    that no test writes a key into the user's ~/.config or signs with one it finds there."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ONEGC_KEY_DIR", str(tmp_path_factory.mktemp("onegc-keys") / "keys"))
        yield


@pytest.fixture
def runs_dir() -> Iterator[Path]:
    path = RUNS_BASE / uuid.uuid4().hex[:12]
    path.mkdir(parents=True)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def monitored(
    runs_dir: Path,
    script: str,
    *,
    budget_s: float = 30,
    grace_s: float = 1,
    rep: int = 1,
    files: dict[str, str] | None = None,
    locked: tuple[str, ...] = ("prepare.py",),
    heldout: Path | None = None,
    originals: Path | None = None,
    view_ro: list[Path] | None = None,
) -> Path:
    """Run `bash -c script` as the agent in a small workspace; returns the sealed run dir."""
    run_dir = create_run_dir(runs_dir, "tester", "t0", rep)
    ws = run_dir / "workspace"
    contents = {"prepare.py": "LABELS = 'locked'\n", "train.py": "print('training')\n", **(files or {})}
    for name, text in contents.items():
        (ws / name).write_text(text)
    spec = RunSpec(
        run_dir,
        ["bash", "-c", script],
        "tester",
        "t0",
        rep,
        budget_s=budget_s,
        grace_s=grace_s,
        locked=list(locked),
        heldout=heldout,
        originals=originals,
        view_ro=[str(p) for p in view_ro or ()],
    )
    run_monitored(spec)
    return run_dir


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[dict]]]:
    """A model API stand-in on 127.0.0.1 (the one test double: a service we do not own):
    (its base URL, the requests it received with their headers)."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
            body = json.dumps({"ok": True, "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api", seen
    server.shutdown()
