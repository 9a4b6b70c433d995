"""taskkit: downloads, the checkpoint contract, classified load failures, isolation, report."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from onegc.tasks import registry

sys.path.insert(0, str(registry.KIT.parent))
import taskkit  # noqa: E402

SCRIPT = """
    import torch
    from taskkit import save_checkpoint

    def build_model(config):
        return torch.nn.Linear(config["d"], 2)

    def save(path, config=None, model=None):
        config = config or {"d": 3}
        model = build_model(config) if model is None else model
        return save_checkpoint(model, config, 0.5, task="tx", metric="m", ckpt_dir=path,
                               name="a b/../c")
    """

PREPARE = """
    import numpy as np
    import torch
    from taskkit import model_device

    def predict_rows(model, inputs):
        return model(torch.from_numpy(inputs["x"]).to(model_device(model))).numpy()
    """


@pytest.fixture()
def ws(tmp_path: Path) -> Iterator[Path]:
    """A workspace with an agent script and a tiny prepare.py, importable as run_t.py."""
    (tmp_path / "run_t.py").write_text(textwrap.dedent(SCRIPT))
    (tmp_path / "prepare.py").write_text(textwrap.dedent(PREPARE))
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("run_t", None)


def _save(ws: Path, **kw: object) -> Path:
    import run_t

    return run_t.save(ws / "checkpoints", **kw)


def test_fetch_copies_verifies_and_is_idempotent(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(b"payload")
    digest = hashlib.sha256(b"payload").hexdigest()
    dest = tmp_path / "out" / "f.bin"
    taskkit.fetch("http://unreachable.invalid/f.bin", dest, digest, source_dir=src)
    assert dest.read_bytes() == b"payload"
    (src / "f.bin").write_bytes(b"changed")  # a kept, valid dest is not re-fetched
    taskkit.fetch("http://unreachable.invalid/f.bin", dest, digest, source_dir=src)
    assert dest.read_bytes() == b"payload"
    bad = tmp_path / "out" / "g.bin"
    (src / "g.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="checksum mismatch"):
        taskkit.fetch("http://unreachable.invalid/g.bin", bad, digest, source_dir=src)
    assert not bad.exists() and not list(bad.parent.glob(".*tmp"))


def test_fetch_downloads_with_retries(tmp_path: Path) -> None:
    (tmp_path / "remote.bin").write_bytes(b"abc")
    digest = hashlib.sha256(b"abc").hexdigest()
    url = (tmp_path / "remote.bin").as_uri()
    out = taskkit.fetch(url, tmp_path / "dl" / "remote.bin", digest, source_dir="")
    assert out.read_bytes() == b"abc"
    with pytest.raises(RuntimeError, match="after 2 attempt"):
        taskkit.fetch(url + ".missing", tmp_path / "dl" / "x.bin", retries=2, source_dir="")


def test_save_checkpoint_contract(ws: Path) -> None:
    path = _save(ws)
    assert path.parent == ws / "checkpoints" and path.name == "a_b_.._c.pt"
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format"] == "onegc-ckpt-1" and ckpt["script"] == "run_t.py"
    assert (ckpt["task"], ckpt["metric"], ckpt["self_reported_score"]) == ("tx", "m", 0.5)
    assert set(ckpt["state_dict"]) == {"weight", "bias"} and ckpt["config"] == {"d": 3}
    assert not list(path.parent.glob(".*.tmp"))
    with pytest.raises(TypeError, match="config"):
        _save(ws, config={"d": 3, "f": object()})


def test_save_checkpoint_needs_build_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="build_model"):
        taskkit.save_checkpoint(torch.nn.Linear(1, 1), {}, 0.0, task="t", metric="m",
                                ckpt_dir=tmp_path)  # fmt: skip


def _edit(path: Path, **changes: object) -> Path:
    ckpt = torch.load(path, weights_only=True)
    ckpt.update(changes)
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        ("unreadable_checkpoint", lambda p, ws: p.write_bytes(b"not a checkpoint")),
        ("bad_format", lambda p, ws: _edit(p, format="other")),
        ("missing_script", lambda p, ws: _edit(p, script="run_gone.py")),
        ("missing_build_model", lambda p, ws: (ws / "run_t.py").write_text("x = 1\n")),
        ("build_model_error", lambda p, ws: _edit(p, config={"d": "three"})),
        ("missing_keys", lambda p, ws: _edit(p, state_dict={"weight": torch.zeros(2, 3)})),
        ("unexpected_keys", lambda p, ws: _edit(p, state_dict={
            "weight": torch.zeros(2, 3), "bias": torch.zeros(2), "extra": torch.zeros(1)})),
        ("shape_mismatch", lambda p, ws: _edit(p, config={"d": 4})),
        ("orig_mod_prefix", lambda p, ws: _edit(p, state_dict={
            "_orig_mod.weight": torch.zeros(2, 3), "_orig_mod.bias": torch.zeros(2)})),
    ],
)  # fmt: skip
def test_load_failures_are_classified(ws: Path, kind: str, mutate) -> None:
    path = _save(ws)
    assert isinstance(taskkit.load_model(path, ws), torch.nn.Linear)
    sys.modules.pop("onegc_agent_script", None)
    mutate(path, ws)
    with pytest.raises(taskkit.EvalFailure) as info:
        taskkit.load_model(path, ws)
    assert info.value.kind == kind, info.value.detail


def test_compiled_model_saved_as_is_is_orig_mod_prefix(ws: Path) -> None:
    import run_t

    model = run_t.build_model({"d": 3})
    path = _save(ws, model=torch.compile(model))  # compile is lazy: no backend work here
    with pytest.raises(taskkit.EvalFailure) as info:
        taskkit.load_model(path, ws)
    assert info.value.kind == "orig_mod_prefix"


def test_predict_isolated_runs_confined(ws: Path) -> None:
    path = _save(ws)
    np.savez(ws / "in.npz", x=np.ones((5, 3), np.float32))
    pred = taskkit.predict_isolated(
        path,
        ws,
        ws / "in.npz",
        predict="predict_rows",
        timeout_s=60,
        memory_mb=4096,
        prepare_py=ws / "prepare.py",
    )
    assert pred.shape == (5, 2)
    # The child reports who it is through a classified error: unprivileged, no network.
    (ws / "run_t.py").write_text(textwrap.dedent(SCRIPT) + textwrap.dedent("""
        def build_model(config):
            import os, socket
            try:
                socket.create_connection(("127.0.0.1", 9), timeout=2)
                net = "up"
            except OSError as exc:
                net = type(exc).__name__
            raise RuntimeError(f"uid={os.getuid()} net={net}")
        """))  # fmt: skip
    with pytest.raises(taskkit.EvalFailure) as info:
        taskkit.predict_isolated(
            path,
            ws,
            ws / "in.npz",
            predict="predict_rows",
            timeout_s=60,
            memory_mb=4096,
            prepare_py=ws / "prepare.py",
        )
    assert info.value.kind == "build_model_error"
    if os.geteuid() == 0:
        assert "uid=65534" in info.value.detail
        assert "net=up" not in info.value.detail and "ConnectionRefused" not in info.value.detail


def test_predict_isolated_timeout(ws: Path) -> None:
    path = _save(ws)
    np.savez(ws / "in.npz", x=np.ones((1, 3), np.float32))
    (ws / "run_t.py").write_text(textwrap.dedent(SCRIPT) + "\nimport time\ntime.sleep(60)\n")
    with pytest.raises(taskkit.EvalFailure) as info:
        taskkit.predict_isolated(
            path,
            ws,
            ws / "in.npz",
            predict="predict_rows",
            timeout_s=3,
            memory_mb=4096,
            prepare_py=ws / "prepare.py",
        )
    assert info.value.kind == "timeout"


def test_predict_stream_one_item_per_call_in_order(ws: Path) -> None:
    """Each item reaches the model alone, in order; a model that keeps every input it saw
    (state across calls) and reads /tmp left by an earlier process finds nothing ahead; usage
    (wall, CPU, calls) is recorded; a model that stalls mid-stream is stopped at the limit."""
    (ws / "run_t.py").write_text(textwrap.dedent(SCRIPT) + textwrap.dedent("""
        import os
        SEEN = []

        class Memory(torch.nn.Module):
            def forward(self, x):
                SEEN.append(float(x.sum()))
                leftover = len(os.listdir("/tmp")) if os.path.isdir("/tmp") else -1
                with open("/tmp/onegc-stream-probe", "w") as f:
                    f.write("x")
                return torch.tensor([[len(x), len(SEEN), max(SEEN), leftover]], dtype=torch.float32)

        def build_model(config):
            return Memory()
        """))  # fmt: skip
    path = _save(ws, model=torch.nn.Linear(3, 2))
    ck = torch.load(path, weights_only=True)
    ck["state_dict"] = {}
    torch.save(ck, path)
    items = [{"x": np.full((1, 3), i, np.float32)} for i in range(5)]
    taskkit.USAGE.clear()
    for _ in range(2):  # the second process must not see what the first left in /tmp
        preds = taskkit.predict_stream(path, ws, items, predict="predict_rows", timeout_s=60, memory_mb=4096,
                                       prepare_py=ws / "prepare.py")  # fmt: skip
        got = np.concatenate(preds)
        assert got[:, 0].tolist() == [1] * 5  # one item per call
        assert got[:, 1].tolist() == [1, 2, 3, 4, 5]  # in order, one process
        assert got[:, 2].tolist() == [0, 3, 6, 9, 12]  # never anything later than the current item
        if os.geteuid() == 0:
            assert got[0, 3] == 0  # a private, empty /tmp
    assert [u["calls"] for u in taskkit.USAGE] == [5, 5]
    assert all(u["wall_s"] > 0 and u["cpu_s"] > 0 for u in taskkit.USAGE)

    (ws / "run_t.py").write_text(textwrap.dedent(SCRIPT) + textwrap.dedent("""
        import time

        class Stall(torch.nn.Module):
            def forward(self, x):
                if float(x.sum()) == 0:
                    time.sleep(60)
                return x[:, :2]

        def build_model(config):
            return Stall()
        """))  # fmt: skip
    with pytest.raises(taskkit.EvalFailure) as info:
        taskkit.predict_stream(path, ws, [items[1], {"x": np.zeros((1, 3), np.float32)}], predict="predict_rows",
                               timeout_s=8, memory_mb=4096, prepare_py=ws / "prepare.py")  # fmt: skip
    assert info.value.kind == "timeout"


def test_frames_carry_arrays_without_pickle() -> None:
    arrays = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": np.zeros((0, 4), np.float32),
              "c": np.float64(2.5)}  # fmt: skip
    back = taskkit._unpack(taskkit._pack(arrays))
    for k, v in arrays.items():
        assert back[k].dtype == np.asarray(v).dtype and np.array_equal(back[k], v)
    with pytest.raises(TypeError):
        taskkit._pack({"o": np.array([object()])})
    with pytest.raises(ValueError):
        taskkit._unpack(taskkit._pack(arrays)[:-8])


def test_report_formats(capsys: pytest.CaptureFixture[str]) -> None:
    taskkit.report({"mse": 0.5}, as_json=False, extra={"task": "t6"})
    assert capsys.readouterr().out.splitlines() == ["---", "mse:  0.500000", "task:  t6"]
    taskkit.report({"mse": 0.5}, as_json=True, extra={"task": "t6", "split": "test"})
    obj = json.loads(capsys.readouterr().out)
    assert obj == {"task": "t6", "metric": "mse", "value": 0.5, "split": "test"}
    with pytest.raises(SystemExit) as info:
        taskkit.report({"error": "timeout", "detail": "slow"}, as_json=True, extra={})
    assert info.value.code == 3
    assert json.loads(capsys.readouterr().out) == {"error": "timeout", "detail": "slow"}
