"""The run's own filesystems: each writable root (workspace, scratch) is a fresh ext4 on a loop
device (a tmpfs where the runs themselves are kept on a tmpfs), mounted over the root's folder
for the length of the run.

Why: fanotify tells a pid per event and loses nothing only with a mark on a whole superblock
(FAN_MARK_FILESYSTEM with an unlimited queue). A superblock of the run's own means the sensor
sees the run's writable places and nothing else of the machine, whatever other runs and host
processes do. An overlay of the folder onto itself did this before, but overlay doubles the
work of every file operation (1.7x on creates, bench/sensors.py); a fresh ext4 on a sparse
image in the run's folder costs about what the disk itself costs, and making one takes 20 ms.

The image is mounted over the root in the harness's own mount namespace, so the folder shows
what the agent sees while it runs (``tail -f workspace/train.log`` works) and the agent's view
binds it as before. At the end (every process of the run gone) the content is copied back
into a plain folder that replaces the root, and the image is removed: after the run the run
folder is ordinary files, as readers expect. If that copy fails the image stays under
``fs/`` of the run folder (unsealed, like the workspace) and the run is incomplete.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from onegc.evidence.layout import RunLayout
from onegc.harness.kernel import (
    MNT_DETACH,
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NOSUID,
    TMPFS_MAGIC,
    fstatfs,
    mount,
    umount,
)

MIN_IMAGE = 1 << 30
"""Smallest image: a run folder on a nearly full disk still gets a usable filesystem."""
MAX_IMAGE = 1 << 44
"""16 TiB: ext4's limit with 4 KiB blocks. The image is sparse: only what is written is used."""
MKFS_OPTS = ["-q", "-F", "-m", "0", "-O", "^has_journal"]
"""No reserved blocks, no journal (nothing outlives the run but the copied files)."""
MOUNT_OPTS = "loop,noatime,noinit_itable,nosuid,nodev"
"""noinit_itable: no background zeroing of inode tables while the agent works; nosuid and nodev on
the host side too (the agent's view adds them to its own binds)."""


class RunFsError(OSError):
    """A run's filesystem could not be made, mounted or copied back."""


def _run(argv: list[str]) -> None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunFsError(f"{argv[0]}: {exc}") from None
    if out.returncode != 0:
        raise RunFsError(f"{' '.join(argv[:2])}: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")


def image_size(folder: Path) -> int:
    """As large as the free space of the folder's disk (the agent could fill that disk anyway)."""
    st = os.statvfs(folder)
    return max(MIN_IMAGE, min(MAX_IMAGE, st.f_bavail * st.f_frsize))


def on_tmpfs(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return fstatfs(fd).f_type == TMPFS_MAGIC
    finally:
        os.close(fd)


@dataclass
class RunFs:
    """The mounted filesystems of one run: attach() before the agent starts, detach() after."""

    layout: RunLayout
    roots: list[tuple[str, Path]]
    mounted: list[tuple[str, Path]] = field(default_factory=list)

    @property
    def base(self) -> Path:
        return self.layout.fs_dir

    def attach(self) -> None:
        """Give every root a fresh filesystem holding what the folder holds now."""
        tools = {name: shutil.which(name) for name in ("mkfs.ext4", "mount", "cp")}
        missing = [name for name, path in tools.items() if path is None]
        if missing:
            raise RunFsError(f"cannot make the run's filesystems: {', '.join(missing)} not found")
        self.base.mkdir(mode=0o700, exist_ok=True)
        size, in_memory = image_size(self.base), on_tmpfs(self.base)
        try:
            for label, root in self.roots:
                self._attach_one(label, root, tools, size, in_memory)
        except BaseException:
            self._unmount_all()
            shutil.rmtree(self.base, ignore_errors=True)
            raise

    def _attach_one(self, label: str, root: Path, tools: dict[str, str], size: int, in_memory: bool) -> None:
        img, stage = self.base / f"{label}.img", self.base / label
        st = os.stat(root)
        stage.mkdir(mode=0o700)
        if in_memory:  # runs kept in memory: a tmpfs of the run's own costs what theirs does
            mode = f"mode={st.st_mode & 0o7777:o},uid={st.st_uid},gid={st.st_gid},size={size}"
            mount("tmpfs", str(stage), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOATIME, mode)
        else:
            with open(img, "xb") as fh:
                fh.truncate(size)
            # one -E (mke2fs keeps only the last): lazy inode tables, the root owned as the folder is
            _run([tools["mkfs.ext4"], *MKFS_OPTS, "-E", f"lazy_itable_init=1,root_owner={st.st_uid}:{st.st_gid}",
                  str(img)])  # fmt: skip
            _run([tools["mount"], "-o", MOUNT_OPTS, str(img), str(stage)])
        try:
            if (stage / "lost+found").is_dir():
                (stage / "lost+found").rmdir()  # the agent's folder holds only what it held
            _run([tools["cp"], "-a", "--", f"{root}/.", f"{stage}/"])
            os.chmod(stage, st.st_mode & 0o7777)
            mount(str(stage), str(root), None, MS_BIND)
        finally:
            umount(str(stage), MNT_DETACH)  # the bind over the root keeps the filesystem alive
        self.mounted.append((label, root))

    def detach(self) -> None:
        """Copy every filesystem back into a plain folder that takes the root's place; unmount;
        remove the images."""
        cp = shutil.which("cp") or "cp"
        for label, root in list(self.mounted):
            out = self.base / f"{label}.out"
            out.mkdir(mode=0o700)
            _run([cp, "-a", "--", f"{root}/.", f"{out}/"])
            umount(str(root), MNT_DETACH)
            self.mounted.remove((label, root))
            before = self.base / f"{label}.before"
            os.rename(root, before)  # the folder as it was at attach(), now under the mount no more
            os.rename(out, root)
            shutil.rmtree(before)
            (self.base / f"{label}.img").unlink(missing_ok=True)
        shutil.rmtree(self.base, ignore_errors=True)

    @classmethod
    def recover(cls, layout: RunLayout) -> list[str]:
        """After a harness died mid-run: put every image left in ``fs/`` back into its folder
        as detach() would (mounting it first where the mount went with the harness's
        namespace). Returns the roots recovered."""
        roots = [(label, getattr(layout, label)) for label in ("workspace", "scratch")
                 if (layout.fs_dir / f"{label}.img").is_file() or os.path.ismount(getattr(layout, label))]  # fmt: skip
        runfs = cls(layout, roots)
        mount_bin = shutil.which("mount") or "mount"
        for label, root in roots:
            if not os.path.ismount(root):
                _run([mount_bin, "-o", MOUNT_OPTS, str(layout.fs_dir / f"{label}.img"), str(root)])
            runfs.mounted.append((label, root))
        for stale in layout.fs_dir.glob("*.out"):  # a copy the dead harness had begun
            shutil.rmtree(stale)
        runfs.detach()
        return [label for label, _root in roots]

    def _unmount_all(self) -> None:
        for _label, root in self.mounted:
            try:
                umount(str(root), MNT_DETACH)
            except OSError:
                pass
        self.mounted.clear()
