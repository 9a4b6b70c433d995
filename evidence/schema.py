"""The evidence tables, declared once as data (osquery-spec style).

The DuckDB DDL, the journal loader and `sql --schema` docs are all generated from these
declarations, so the record and its documentation cannot drift apart.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]

    @property
    def ddl(self) -> str:
        cols = ", ".join(f'"{c.name}" {c.type}' for c in self.columns)
        return f"CREATE TABLE {self.name} ({cols})"

    @property
    def json_columns(self) -> dict[str, str]:
        return {c.name: c.type for c in self.columns}


def _chain() -> tuple[Column, ...]:
    return (
        Column("seq", "BIGINT", "Position of the record in its journal, from 0."),
        Column("t", "DOUBLE", "Wall-clock time (Unix seconds) when the sensor saw the event."),
        Column("mono", "DOUBLE", "CLOCK_MONOTONIC seconds: the harness's clock, immune to date changes."),
    )


def _tail() -> tuple[Column, ...]:
    return (
        Column("prev", "VARCHAR", "Hash of the previous record of the same journal ('' for the first)."),
        Column("h", "VARCHAR", "sha256 over prev and this record: the hash chain."),
    )


TABLES: tuple[Table, ...] = (
    Table(
        "harness_events",
        "The run's life as the harness saw it: start, agent start/exit, deadline, signals, "
        "survivors, sensor failures, end.",
        (
            *_chain(),
            Column(
                "kind",
                "VARCHAR",
                "Event kind, e.g. start, agent_started, agent_exited, "
                "deadline, sigterm, sigkill, survivor, sensor_died, end.",
            ),
            Column("pid", "BIGINT", "Process concerned, or NULL."),
            Column("argv", "VARCHAR[]", "Command line of that process, or NULL."),
            Column("detail", "JSON", "Kind-specific fields (metadata at start, exit status, ...)."),
            *_tail(),
        ),
    ),
    Table(
        "execs",
        "Every execve/execveat of every process in the agent's tree, seen through seccomp "
        "user notification before the kernel ran it (nothing short-lived is missed).",
        (
            *_chain(),
            Column("pid", "BIGINT", "Thread-group id (process id) that called exec, as seen from the host."),
            Column("tid", "BIGINT", "Thread id that made the call."),
            Column("ppid", "BIGINT", "Parent process id, or -1 if it could not be determined."),
            Column("uid", "BIGINT", "Real uid of the caller."),
            Column("syscall", "VARCHAR", "execve or execveat."),
            Column("path", "VARCHAR", "Program path as passed, resolved against cwd/dirfd when relative."),
            Column("argv", "VARCHAR[]", "Argument vector (capped at 1024 items / 64 KiB)."),
            Column("cwd", "VARCHAR", "Working directory of the caller."),
            Column(
                "probe",
                "BOOLEAN",
                "True when the program did not exist: a failed PATH probe, not a real start.",
            ),
            *_tail(),
        ),
    ),
    Table(
        "net_attempts",
        "Every connect/sendto-with-address towards a non-loopback address by any process of "
        "the tree. The kernel refuses them (the tree's network namespace holds only loopback); "
        "the row proves the attempt and names the process.",
        (
            *_chain(),
            Column("pid", "BIGINT", "Process id (host view)."),
            Column("tid", "BIGINT", "Thread id."),
            Column("ppid", "BIGINT", "Parent process id, or -1."),
            Column("syscall", "VARCHAR", "connect or sendto."),
            Column("family", "VARCHAR", "AF_INET or AF_INET6."),
            Column("address", "VARCHAR", "Destination address."),
            Column("port", "INTEGER", "Destination port."),
            Column("argv", "VARCHAR[]", "Command line of the process."),
            Column("exe", "VARCHAR", "Executable of the process."),
            *_tail(),
        ),
    ),
    Table(
        "file_events",
        "inotify events under the watched roots (workspace, scratch, site-packages, task "
        "originals, held-out data, world-writable places). No pid: inotify does not carry one.",
        (
            *_chain(),
            Column("root", "VARCHAR", "Label of the watched root (workspace, scratch, originals, ...)."),
            Column("path", "VARCHAR", "Absolute path of the file or directory."),
            Column(
                "event",
                "VARCHAR",
                "create, modify, close_write, delete, moved_from, moved_to, "
                "attrib, delete_self, rescan_found (seen by a rescan, its history unknown), or "
                "open (a file opened, reported under the held-out root only: inotify sees no reads).",
            ),
            Column("is_dir", "BOOLEAN", "The object is a directory."),
            Column("cookie", "BIGINT", "Pairs moved_from with moved_to; 0 otherwise."),
            *_tail(),
        ),
    ),
    Table(
        "snapshots",
        "Before/after state of the workspace and the locked originals (path, size, mode, "
        "sha256), so that a lost file event can never hide a change.",
        (
            *_chain(),
            Column("phase", "VARCHAR", "before or after the agent phase."),
            Column("scope", "VARCHAR", "workspace, originals or heldout."),
            Column("path", "VARCHAR", "Path relative to the scope's root."),
            Column("kind", "VARCHAR", "file, dir or symlink."),
            Column("size", "BIGINT", "Size in bytes."),
            Column("mode", "INTEGER", "st_mode permission bits."),
            Column("uid", "BIGINT", "Owner uid."),
            Column("sha256", "VARCHAR", "Content hash (files), link target (symlinks), NULL for dirs."),
            *_tail(),
        ),
    ),
    Table(
        "resource_samples",
        "Periodic CPU and memory of the whole tree (psutil over the run's cgroup).",
        (
            *_chain(),
            Column("nprocs", "INTEGER", "Processes in the tree."),
            Column("cpu_s", "DOUBLE", "Cumulative CPU seconds of the tree (cgroup cpu.stat when available)."),
            Column("rss_bytes", "BIGINT", "Summed resident memory."),
            Column("gpu_mem_bytes", "BIGINT", "GPU memory in use (NULL without NVML)."),
            *_tail(),
        ),
    ),
    Table(
        "sensor_health",
        "One row per sensor and counter at the end of the run: events seen, dropped, "
        "overflows, errors. Any loss makes the run incomplete.",
        (
            *_chain(),
            Column("sensor", "VARCHAR", "exec_net (seccomp supervisor), fswatch, sampler, harness."),
            Column("counter", "VARCHAR", "events, overflows, dropped, errors, running, ..."),
            Column("value", "BIGINT", "The count."),
            Column("lossy", "BOOLEAN", "True when a non-zero value means evidence may be missing."),
            *_tail(),
        ),
    ),
)

TABLE_BY_NAME = {t.name: t for t in TABLES}
