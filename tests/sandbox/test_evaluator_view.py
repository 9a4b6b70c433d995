"""The evaluator's model process runs in the same deny-by-default view as the agent: it sees
its staged checkpoint, sources and inputs and nothing else (issue 14.1). A model that reaches
for the task's data source, the prepared cache or the workspace during evaluation finds them
absent; an honest model scores exactly as before."""

import os
import socket

import pytest

from onegc.harness import view
from onegc.tasks import registry
from tests.conftest import needs_root
from tests.tasks.conftest import run_smoke, variant_checkpoint

pytestmark = needs_root
TASK = "t6"

SPY = """
import errno, os, socket

def _try(fn):
    try:
        fn()
        return "LEAKED"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def build_model(config):
    seen = {{}}
    for p in {paths!r}:
        seen[p] = _try(lambda: open(p, "rb").read(8))
    seen["write:/usr/x"] = _try(lambda: open("/usr/x", "w").write("x"))
    seen["connect"] = _try(lambda: socket.create_connection(({host!r}, {port}), timeout=1))
    seen["uid"] = os.getuid()
    raise RuntimeError("SEEN " + repr(sorted(seen.items())))
"""


def _seen(result: dict) -> dict:
    assert result.get("error") == "build_model_error", result
    detail = result["detail"]
    return dict(eval(detail[detail.index("SEEN ") + 5 :].splitlines()[0]))  # our own repr, above


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return run_smoke(TASK, tmp_path_factory.mktemp("smoke-view"))


def test_evaluated_model_sees_only_its_stage(smoke, runs_dir):
    run = smoke
    source = runs_dir / "shared" / "t6" / "ETTh1.csv"  # the offline data source, test targets included
    source.parent.mkdir(parents=True)
    source.write_text("date,OT\n2016-07-01,30.5\n")
    data = run.prepared.data_dir
    secrets = [
        str(source),
        str(data / "agent" / "train.npy"),
        str(run.workspace / "train.py"),
        str(data / "prepared.json"),
        "/etc/shadow",
    ]
    for p in (source.parent.parent, source.parent):
        os.chmod(p, 0o755)
    os.chmod(source, 0o644)
    with socket.socket() as listener:  # a host service the model might phone (loopback only)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        ckpt = variant_checkpoint(run, "run_spy.py", SPY.format(paths=secrets, host="127.0.0.1", port=port))
        confined = _seen(registry.evaluate(TASK, ckpt, run.workspace, data, sandbox=view.command()))
        legacy = _seen(registry.evaluate(TASK, ckpt, run.workspace, data))
    # positive control: the evaluator's old namespace hid only a list of folders
    assert legacy[str(source)] == "LEAKED"
    for p in secrets:
        assert confined[p] == "ENOENT", (p, confined)
    assert confined["write:/usr/x"] == "EROFS"
    assert confined["connect"] == "ECONNREFUSED", "its own network namespace: the host's port is not there"
    assert confined["uid"] != 0


def test_honest_model_scores_the_same_in_the_view(smoke):
    run = smoke
    data = run.prepared.data_dir
    confined = registry.evaluate(TASK, run.checkpoint, run.workspace, data, sandbox=view.command())
    legacy = registry.evaluate(TASK, run.checkpoint, run.workspace, data)
    assert "error" not in confined, confined
    assert confined["value"] == legacy["value"]
