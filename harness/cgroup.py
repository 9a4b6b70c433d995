"""The run's own cgroup v2: the tree can be listed, killed (escapees included) and its CPU
counted. On machines without a writable cgroup v2 the harness falls back to being a
child subreaper and walking its process tree (recorded as a weaker sensor)."""

import time
from pathlib import Path


def cgroup2_root() -> Path | None:
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                _, mnt, fstype, *_ = line.split()
                if fstype == "cgroup2":
                    return Path(mnt)
    except OSError:
        return None
    return None


class RunCgroup:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str) -> "RunCgroup | None":
        root = cgroup2_root()
        if root is None:
            return None
        path = root / "onegc" / name
        for stale in (root / "onegc").glob("*"):  # left by killed harnesses; rmdir fails if populated
            try:
                stale.rmdir()
            except OSError:
                pass
        try:
            path.mkdir(parents=True)
            (path / "cgroup.procs").stat()
        except OSError:
            return None
        return cls(path)

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in self.procs_file.read_text().split()]
        except OSError:
            return []

    def populated(self) -> bool:
        for line in (self.path / "cgroup.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "populated":
                return value.strip() == "1"
        return bool(self.pids())

    def cpu_seconds(self) -> float | None:
        try:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
        except OSError:
            return None
        return None

    def kill(self) -> None:
        (self.path / "cgroup.kill").write_text("1")

    def wait_empty(self, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if not self.populated():
                return True
            time.sleep(0.02)
        return not self.populated()

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass
