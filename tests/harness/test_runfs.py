"""The run's own filesystems (harness/runfs.py): live on the host while the run lasts, plain
folders holding exactly what the agent left after it."""

import os
import stat
import subprocess

from onegc.harness.spec import RunSpec, create_run_dir
from tests.conftest import monitored, needs_root
from tests.evidencedb import rows
from tests.harness.test_file_sensor import _start, _wait_for

pytestmark = needs_root


def _fs_of(path) -> tuple[str, set[str]]:
    """The type and options of the filesystem mounted at ``path`` (findmnt)."""
    found = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", str(path)], capture_output=True, text=True)
    fstype, options = found.stdout.split()
    return fstype, set(options.split(","))


def _mounts_under(path) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(str(path))]


def test_the_agents_files_come_back_as_plain_files_with_their_kinds_modes_and_links(runs_dir):
    script = (
        "mkdir -p ckpt/deep && head -c 300000 /dev/urandom > ckpt/deep/w.bin && "
        "ln ckpt/deep/w.bin hard.bin && ln -s ckpt/deep/w.bin soft && chmod 0640 hard.bin && "
        "mkfifo pipe && truncate -s 1G sparse.bin && echo hi > $HOME/note && rm prepare.py"
    )
    run = monitored(runs_dir, script)
    ws = run / "workspace"
    assert not _mounts_under(run), _mounts_under(run)
    assert not (run / "fs").exists()
    w, hard = os.lstat(ws / "ckpt/deep/w.bin"), os.lstat(ws / "hard.bin")
    assert w.st_size == 300000 and (w.st_dev, w.st_ino) == (hard.st_dev, hard.st_ino) and w.st_nlink == 2
    assert stat.S_IMODE(hard.st_mode) == 0o640
    assert os.readlink(ws / "soft") == "ckpt/deep/w.bin"
    assert stat.S_ISFIFO(os.lstat(ws / "pipe").st_mode)
    sparse = os.lstat(ws / "sparse.bin")
    assert sparse.st_size == 1 << 30 and sparse.st_blocks * 512 < 1 << 20  # copied back sparse
    assert not (ws / "prepare.py").exists() and not (ws / "lost+found").exists()
    start = rows(run, "SELECT detail->>'agent_uid' FROM harness_events WHERE kind = 'start'")[0][0]
    assert w.st_uid == int(start)  # the agent's files keep their owner
    assert (run / "scratch" / "home" / "note").read_text() == "hi\n"
    assert rows(run, "SELECT count(*) FROM harness_events WHERE kind = 'runfs_detached'") == [(1,)]


def test_while_the_run_lives_its_folder_shows_what_the_agent_writes(runs_dir):
    """tail -f workspace/train.log works: the run's filesystem is mounted over its folder on
    the host, and the agent's write is on it (its own superblock, not the host disk's)."""
    run_dir = create_run_dir(runs_dir, "tester", "t0", 1)
    spec = RunSpec(run_dir, ["bash", "-c", "echo epoch 1 > train.log; touch started; sleep 2"], "tester", "t0", 1,
                   budget_s=60, grace_s=1)  # fmt: skip
    worker = _start(spec)
    ws = run_dir / "workspace"
    _wait_for(ws / "started")
    assert (ws / "train.log").read_text() == "epoch 1\n"
    assert os.stat(ws).st_dev != os.stat(run_dir).st_dev
    fstype, options = _fs_of(ws)
    assert fstype == "ext4" and {"nosuid", "nodev", "noatime"} <= options, (fstype, options)
    worker.join(timeout=60)
    assert os.stat(ws).st_dev == os.stat(run_dir).st_dev
    assert (ws / "train.log").read_text() == "epoch 1\n"


def test_runs_kept_on_a_tmpfs_get_a_tmpfs_of_their_own(runs_dir):
    """Where the runs root is a tmpfs, the run's own filesystems are tmpfs too (a loop ext4
    would make every create twice as dear as the runs' own memory: bench/sensors.py --tmpfs);
    still a superblock of the run's own, watched with a pid per event, copied back after."""
    mem = runs_dir / "mem"
    mem.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(mem)], check=True)
    try:
        run_dir = create_run_dir(mem, "tester", "t0", 1)
        spec = RunSpec(run_dir, ["bash", "-c", "echo a > a.txt; touch started; sleep 1.5"], "tester", "t0", 1,
                       budget_s=60, grace_s=1)  # fmt: skip
        worker = _start(spec)
        ws = run_dir / "workspace"
        _wait_for(ws / "started")
        fstype, options = _fs_of(ws)
        assert fstype == "tmpfs" and os.stat(ws).st_dev != os.stat(mem).st_dev, (fstype, options)
        assert {"nosuid", "nodev"} <= options
        worker.join(timeout=60)
        assert not _mounts_under(run_dir) and not (run_dir / "fs").exists()
        assert (ws / "a.txt").read_text() == "a\n"
        got = rows(run_dir, "SELECT DISTINCT in_run, attribution FROM file_events WHERE path LIKE '%/a.txt'")
        assert got == [(True, "pidfd")] or got == [(True, "proc")] or got == [(True, "seen")], got
    finally:
        subprocess.run(["umount", "-l", str(mem)], check=False)
