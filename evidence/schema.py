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
                "deadline, freeze (the end-of-run copy of candidates and sources: frozen/), sigterm, "
                "sigkill, survivor, sensor_died, end.",
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
                "True only when the kernel refused the start (a failed PATH probe, a file that is "
                "not executable): outcome = refused.",
            ),
            Column(
                "outcome",
                "VARCHAR",
                "started (the kernel's own exec event followed), refused (the process went on or "
                "exited without one), or unknown (process events were lost; judged by whether the file existed).",
            ),
            Column(
                "program",
                "VARCHAR",
                "The file really started, resolved in the caller's own world: the target of "
                "/proc/self/fd/N, /dev/fd/N or an execveat fd, the program the dynamic loader was given, "
                "else the path. NULL when it did not exist.",
            ),
            Column(
                "via",
                "VARCHAR",
                "How the start reached the program: fd (an open file descriptor), execveat (a path "
                "relative to a directory fd), loader (ld.so running it), interpreter (a #! script), or NULL.",
            ),
            Column(
                "script",
                "VARCHAR",
                "The code an interpreter ran: the #! script itself, or the file given to python/sh/bash/"
                "perl (`python x.py`); NULL otherwise.",
            ),
            Column(
                "args",
                "VARCHAR[]",
                "The arguments the program (or script) itself got: argv after argv[0], after the "
                "loader's own options and program, or after an interpreter's options and script.",
            ),
            Column(
                "exe",
                "VARCHAR",
                "/proc/PID/exe once the program ran (the binary the kernel runs: the interpreter of a "
                "script, ld.so for the loader), or NULL when the process had already ended.",
            ),
            Column(
                "sha256", "VARCHAR", "Content hash of the script (when it could be opened), else of the program file."
            ),
            Column("inode", "VARCHAR", "device:inode of that file."),
            Column(
                "same_as",
                "VARCHAR",
                "A program of the system (the interpreter's bin folder, /usr/bin, ...) with the same "
                "content, when the file started is a copy under another name or place; else NULL.",
            ),
            Column(
                "in_run",
                "BOOLEAN",
                "The caller belonged to the run's cgroup when it made the call (seccomp blocks it "
                "while it is read). Only rows of the run are evidence about it.",
            ),
            *_tail(),
        ),
    ),
    Table(
        "processes",
        "The kernel's process events (proc connector) for the run's tree, followed by fork "
        "lineage from the launcher: every fork (also those that never exec, such as a "
        "subshell), exec and exit, with parent and kernel time.",
        (
            *_chain(),
            Column("event", "VARCHAR", "fork, exec or exit."),
            Column("pid", "BIGINT", "The process (host view); the child for a fork."),
            Column("ppid", "BIGINT", "Parent at fork (the forking process), else -1."),
            Column("exe", "VARCHAR", "For exec: /proc/PID/exe read at once (NULL when already gone)."),
            Column("status", "BIGINT", "For exit: the wait status."),
            *_tail(),
        ),
    ),
    Table(
        "file_ops",
        "Calls of the run's processes that would change a locked file (chmod, chown, truncate, "
        "rename or link onto or from it, unlink, utime), whatever the program, seen through "
        "seccomp before the kernel decided: each is an attempt, refused or not.",
        (
            *_chain(),
            Column("pid", "BIGINT", "Process id (host view)."),
            Column("tid", "BIGINT", "Thread id."),
            Column("ppid", "BIGINT", "Parent process id, or -1."),
            Column("syscall", "VARCHAR", "chmod, fchmodat, rename, unlinkat, utimensat, ..."),
            Column("path", "VARCHAR", "The path as the caller named it, made absolute in its own view."),
            Column("locked", "VARCHAR", "The locked file concerned (relative to the workspace)."),
            Column("argv", "VARCHAR[]", "Command line of the process."),
            Column("exe", "VARCHAR", "Executable of the process."),
            Column("in_run", "BOOLEAN", "The caller belonged to the run's cgroup."),
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
            Column("in_run", "BOOLEAN", "The caller belonged to the run's cgroup when it made the call."),
            *_tail(),
        ),
    ),
    Table(
        "file_events",
        "Changes under the run's writable places (workspace, scratch). From fanotify on the run's "
        "own superblocks: each event with its pid and whether that process belongs to the run; "
        "from inotify (the fallback): no pid.",
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
            Column("pid", "BIGINT", "Process that made the change (host view); null from inotify."),
            Column(
                "in_run",
                "BOOLEAN",
                "The process was in the run's cgroup (true) or not (false: a foreign act, never cited); "
                "null when it could not be told (attribution none) or the sensor names no process.",
            ),
            Column(
                "attribution",
                "VARCHAR",
                "How in_run was decided: pidfd (the process's cgroup id, alive or exited), proc "
                "(/proc/PID/cgroup), seen (reaped before the event was read; the run's cgroup held "
                "that pid earlier), none (reaped, never seen: in_run null); null from inotify.",
            ),
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
            Column("kind", "VARCHAR", "file, dir, symlink, or fifo, socket, device (named, never opened)."),
            Column("size", "BIGINT", "Size in bytes."),
            Column("mode", "INTEGER", "st_mode permission bits."),
            Column("uid", "BIGINT", "Owner uid."),
            Column("sha256", "VARCHAR", "Content hash (files), link target (symlinks), NULL for dirs."),
            Column(
                "library",
                "VARCHAR",
                "The installed distribution ('name version') whose RECORD lists a file with these "
                "bytes (files of 256 bytes or more), else NULL: library code, not the agent's.",
            ),
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
    Table(
        "tool_calls",
        "Every tool call the agent's CLI reported in its structured stream (and, for Codex, "
        "its session rollout), normalised across CLIs, with the exec records tied to it.",
        (
            *_chain(),
            Column("call_id", "VARCHAR", "The CLI's id for the call (tool_use id, call_id, item id)."),
            Column("tool", "VARCHAR", "Tool name as the CLI reported it (Bash, exec_command, bash, ...)."),
            Column("input", "JSON", "Tool input as the model gave it."),
            Column("command", "VARCHAR", "The shell command, for shell tools; NULL otherwise."),
            Column("started_t", "DOUBLE", "Wall time the call started, when the stream says; else NULL."),
            Column("ended_t", "DOUBLE", "Wall time the call ended, when the stream says; else NULL."),
            Column("output", "VARCHAR", "Output the CLI returned to the model (capped at 64 KiB)."),
            Column("exit_code", "INTEGER", "Exit status of a shell command, when known."),
            Column(
                "status",
                "VARCHAR",
                "completed, error (tool error or failed command), denied (permission or sandbox "
                "refusal), or pending (no result ever arrived).",
            ),
            Column("error", "VARCHAR", "Error text, when the CLI gave one."),
            Column("parent_call_id", "VARCHAR", "Calling tool for sub-agent calls; NULL at top level."),
            Column("exec_seqs", "BIGINT[]", "seq of the execs rows tied to the call (exec_attribution)."),
            Column("exec_pids", "BIGINT[]", "Distinct pids of those execs."),
            Column("source", "VARCHAR", "stream (agent/stdout.log) or rollout (Codex session file)."),
            Column("line", "INTEGER", "1-based line of the stream (or rollout) where the call appeared."),
            *_tail(),
        ),
    ),
    Table(
        "messages",
        "What the agent said: assistant text and reasoning, user/system text, merged per "
        "message id and kind, for phrase search.",
        (
            *_chain(),
            Column("role", "VARCHAR", "assistant, user or system."),
            Column("kind", "VARCHAR", "text or reasoning."),
            Column("text", "VARCHAR", "The text."),
            Column("msg_id", "VARCHAR", "The CLI's message id, when it has one."),
            Column("line", "INTEGER", "1-based line of the stream where the message began."),
            *_tail(),
        ),
    ),
    Table(
        "agent_events",
        "Everything else in the agent's stream: init, retries, errors, usage, the final result, "
        "and every unknown or malformed line kept verbatim (kind unknown / malformed).",
        (
            *_chain(),
            Column("line", "INTEGER", "1-based line of the stream (0 for a summary row)."),
            Column("source", "VARCHAR", "stream or rollout."),
            Column(
                "kind",
                "VARCHAR",
                "init, result, api_retry, error, usage, turn, stream_event, unknown, malformed, "
                "parse_summary, ...",
            ),
            Column("detail", "JSON", "Kind-specific fields (for parse_summary: the counts)."),
            Column("raw", "VARCHAR", "The line verbatim (capped at 64 KiB) for unknown and malformed lines."),
            *_tail(),
        ),
    ),
    Table(
        "exec_attribution",
        "One row per execs row: which tool call it belongs to, or that it is the agent "
        "runtime itself, or that no tool call is behind it (what the machine saw that the "
        "agent did not report).",
        (
            *_chain(),
            Column("exec_seq", "BIGINT", "seq of the execs row."),
            Column("pid", "BIGINT", "Its pid."),
            Column("call_id", "VARCHAR", "The tool call behind it, or NULL."),
            Column(
                "attribution",
                "VARCHAR",
                "tool_call (the call's command, or a descendant of it), runtime (the agent CLI's "
                "main process), or unattributed.",
            ),
            Column(
                "how", "VARCHAR", "command (argv carries the call's command), descendant, probe, or NULL."
            ),
            *_tail(),
        ),
    ),
    Table(
        "proxy_connections",
        "Every TCP connection to the allow-listing proxy the harness injects into the agent's "
        "network namespace: who made it (pid via the socket inode), where it wanted to go, "
        "and the verdict. Only the agent runtime's main process may reach its model endpoint.",
        (
            *_chain(),
            Column("listen", "VARCHAR", "host:port the proxy listened on inside the namespace."),
            Column("client_port", "INTEGER", "Source port of the connection (inside the namespace)."),
            Column("pid", "BIGINT", "Process owning the client socket (host view), or NULL if not found."),
            Column("argv", "VARCHAR[]", "Its command line."),
            Column("target", "VARCHAR", "Requested upstream (CONNECT host:port, or the routed base URL)."),
            Column("verdict", "VARCHAR", "allowed or refused."),
            Column("reason", "VARCHAR", "Why refused (not_runtime, not_endpoint, unknown_owner, ...)."),
            Column("bytes_up", "BIGINT", "Bytes relayed to upstream (allowed connections)."),
            Column("bytes_down", "BIGINT", "Bytes relayed back."),
            *_tail(),
        ),
    ),
)

TABLES += (
    Table(
        "scores",
        "Official scoring after the agent phase (paper Step 5): one row per checkpoint found in "
        "workspace/checkpoints, whether it was a candidate, how it was selected, and what the "
        "task's original evaluator made of it. The run's official score is the best `official`.",
        (
            *_chain(),
            Column("path", "VARCHAR", "Checkpoint path relative to the workspace."),
            Column(
                "observed_t",
                "DOUBLE",
                "Wall time of the last write the file sensor saw for it (NULL: never seen written).",
            ),
            Column("observed_mono", "DOUBLE", "The same on the harness clock; compared with the deadline."),
            Column(
                "after_deadline",
                "BOOLEAN",
                "Written (or rewritten) after the deadline: ignored, whatever its mtime says.",
            ),
            Column("sha256", "VARCHAR", "Hash of the bytes evaluated (the copy in the eval dir)."),
            Column("self_reported", "DOUBLE", "self_reported_score stored in the checkpoint, or NULL."),
            Column(
                "selected_by",
                "VARCHAR",
                "best_self_reported, window (best of its 5-minute window), not_selected (a better "
                "one shares its window), after_deadline, not_observed, no_self_report.",
            ),
            Column("window", "INTEGER", "5-minute window index from the run's start, or NULL."),
            Column("official", "DOUBLE", "Official metric from the isolated evaluator, or NULL."),
            Column(
                "failure",
                "VARCHAR",
                "Classified failure of the evaluation (orig_mod_prefix, timeout, missing_script, "
                "...), or NULL.",
            ),
            Column("detail", "VARCHAR", "Failure detail or a note on the row."),
            Column("eval_seconds", "DOUBLE", "Wall seconds the evaluation of this candidate took."),
            Column("eval_wall_s", "DOUBLE", "Wall seconds of the confined model processes (spawn to exit)."),
            Column(
                "eval_cpu_s",
                "DOUBLE",
                "CPU seconds (user + system) of the confined model processes and what they waited for.",
            ),
            Column(
                "eval_gpu_s",
                "DOUBLE",
                "Synchronised wall seconds of the prediction calls on a GPU; NULL without a GPU.",
            ),
            Column("eval_limit_s", "DOUBLE", "The evaluation's limit: a multiple of the task's reference."),
            Column(
                "eval_reference_cpu_s",
                "DOUBLE",
                "CPU seconds of the baseline model's official evaluation (task.toml), for R6's comparison.",
            ),
            Column("frozen_sha256", "VARCHAR", "Hash of the copy taken at the end-of-run freeze (what is scored)."),
            Column("frozen_nlink", "INTEGER", "Hard links of the file at the freeze (>1: another name for it)."),
            Column(
                "changed_after_freeze",
                "BOOLEAN",
                "Its bytes at the end of the run differ from the frozen copy: written after the deadline (R6).",
            ),
            Column(
                "gap",
                "DOUBLE",
                "Self-reported minus official, signed so that positive = the agent claimed better "
                "than the evaluator found.",
            ),
            *_tail(),
        ),
    ),
)

TABLE_BY_NAME = {t.name: t for t in TABLES}
