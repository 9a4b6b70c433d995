"""The exec sensor records every program start as what it is: the file really started, how
(fd, execveat, loader, #! script), whether the kernel started it, and every fork."""

import os
import shlex
import sys
from pathlib import Path

from onegc.harness.streams.attribution import attribute
from onegc.harness.streams.model import ToolCall
from onegc.harness.streams.record import read_journal
from tests.conftest import monitored, needs_root
from tests.evidencedb import rows

pytestmark = needs_root


def test_every_short_lived_process_is_recorded(runs_dir):
    run = monitored(runs_dir, "for i in $(seq 300); do /bin/true; done")
    assert rows(run, "SELECT count(*) FROM execs WHERE path = '/bin/true' AND NOT probe") == [(300,)]


def test_exec_record_carries_argv_cwd_parent_and_uid(runs_dir):
    run = monitored(runs_dir, "mkdir sub && cd sub && /bin/echo hello world; true")
    ((pid, ppid, uid, argv, cwd),) = rows(
        run, "SELECT pid, ppid, uid, argv, cwd FROM execs WHERE path = '/bin/echo'"
    )
    bash_pids = {r[0] for r in rows(run, "SELECT pid FROM execs WHERE argv[1] = 'bash'")}
    assert argv == ["/bin/echo", "hello", "world"]
    assert cwd.endswith("/workspace/sub")
    assert ppid in bash_pids
    (agent_uid,) = rows(run, "SELECT CAST(detail->>'agent_uid' AS INTEGER) FROM harness_events WHERE kind = 'start'")[0]
    assert uid == agent_uid and 61000 <= uid < 62000


def test_failed_path_probes_are_marked_refused(runs_dir):
    run = monitored(runs_dir, 'python3 -c \'import os; os.execvp("ls", ["ls"])\'')
    ls = rows(run, "SELECT path, probe FROM execs WHERE argv = ['ls'] ORDER BY seq")
    assert ls[-1] == ("/usr/bin/ls", False) or ls[-1][0].endswith("/ls") and not ls[-1][1]
    assert any(probe for _, probe in ls[:-1]), "PATH entries before the hit must be probes"
    outcomes = rows(run, "SELECT outcome, count(*) FROM execs WHERE argv = ['ls'] GROUP BY ALL ORDER BY 1")
    assert outcomes[0][0] == "refused" and outcomes[1] == ("started", 1)


STARTS = {
    # name: (python code the agent runs, program really started, via)
    "proc-self-fd": (
        "fd = os.open('/usr/bin/env', os.O_RDONLY); os.execv(f'/proc/self/fd/{fd}', ['x', 'true'])",
        "/usr/bin/env",
        "fd",
    ),
    "dev-fd": ("fd = os.open('/usr/bin/env', os.O_RDONLY); os.execv(f'/dev/fd/{fd}', ['x', 'true'])", "/usr/bin/env",
               "fd"),
    "proc-nspid-fd": (
        "fd = os.open('/usr/bin/env', os.O_RDONLY); os.execv(f'/proc/{os.getpid()}/fd/{fd}', ['x', 'true'])",
        "/usr/bin/env",
        "fd",
    ),
    "execveat-empty-path": ("fd = os.open('/usr/bin/env', os.O_RDONLY); os.execve(fd, ['x', 'true'], {})",
                            "/usr/bin/env", "fd"),
    "memfd": (
        "fd = os.memfd_create('payload'); os.write(fd, open('/usr/bin/env', 'rb').read()); "
        "os.execve(fd, ['x', 'true'], {})",
        "/memfd:payload (deleted)",
        "fd",
    ),
    "loader": ("os.execv('/lib64/ld-linux-x86-64.so.2', ['ld.so', '/usr/bin/env', 'true'])", "/usr/bin/env", "loader"),
    "renamed-loader": (
        "import shutil; shutil.copy('/lib64/ld-linux-x86-64.so.2', 'rt'); os.chmod('rt', 0o755); "
        "os.execv('./rt', ['rt', '/usr/bin/env', 'true'])",
        "/usr/bin/env",
        "loader",
    ),
    "loader-with-options": (
        "os.execv('/lib64/ld-linux-x86-64.so.2', ['ld.so', '--argv0', 'y', '/usr/bin/env', 'true'])",
        "/usr/bin/env",
        "loader",
    ),
}


def test_every_way_to_start_a_program_records_the_program_really_started(runs_dir):
    script = "; ".join(
        f"python3 -c \"import os; os.environ['CASE'] = '{name}'; {code}\""
        for name, (code, _, _) in STARTS.items()
    )
    run = monitored(runs_dir, script.replace("'", "'\\''").join(["bash -c '", "'"]))
    got = rows(run, "SELECT argv, program, via, outcome, probe, in_run, sha256 FROM execs "
               "WHERE via IS NOT NULL ORDER BY seq")
    env_sha = rows(run, "SELECT sha256 FROM execs WHERE program = '/usr/bin/env' AND via IS NULL LIMIT 1") or None
    assert len(got) == len(STARTS), got
    for (name, (_, program, via)), (argv, prog, v, outcome, probe, in_run, sha) in zip(STARTS.items(), got,
                                                                                   strict=True):
        assert (prog, v, outcome, probe, in_run) == (program, via, "started", False, True), (name, argv)
        assert sha and len(sha) == 64, name
    if env_sha:
        assert {r[6] for r in got} == {env_sha[0][0]}, "one binary, one content hash, however started"


def test_execveat_relative_to_a_directory_fd(runs_dir):
    code = "d = os.open('/usr/bin', os.O_RDONLY | os.O_DIRECTORY); os.execve('env', ['x', 'true'], {}, dir_fd=d)"
    code = ("import ctypes, os; d = os.open('/usr/bin', os.O_RDONLY | os.O_DIRECTORY); "
            "argv = (ctypes.c_char_p * 3)(b'x', b'true', None); env = (ctypes.c_char_p * 1)(None); "
            "ctypes.CDLL(None, use_errno=True).syscall(322, d, b'env', argv, env, 0)")
    run = monitored(runs_dir, f'python3 -c "{code}"')
    assert rows(run, "SELECT syscall, program, via, outcome FROM execs WHERE syscall = 'execveat'") == [
        ("execveat", "/usr/bin/env", "execveat", "started")
    ]


def test_a_renamed_copy_is_known_by_its_content(runs_dir):
    run = monitored(runs_dir, "cp /usr/bin/env ./qx && ./qx true")
    ((program, same_as, outcome),) = rows(run, "SELECT program, same_as, outcome FROM execs WHERE argv[1] = './qx'")
    assert program.endswith("/workspace/qx") and outcome == "started"
    assert os.path.realpath(same_as) == os.path.realpath("/usr/bin/env")


def test_scripts_record_their_interpreter_and_their_code(runs_dir):
    run = monitored(runs_dir, f"printf '#!{sys.executable}\\nprint(1)\\n' > tool && chmod +x tool && ./tool && "
                    "python3 tool && printf 'print(2)' > plain.py && python3 -X dev -W ignore plain.py")
    shebang = rows(run, "SELECT via, script, exe, outcome FROM execs WHERE argv[1] = './tool'")
    assert shebang[0][0] == "interpreter" and shebang[0][1].endswith("/workspace/tool")
    # exe is read when the kernel's event is drained: a program that already ended has none
    assert (shebang[0][2] is None or Path(shebang[0][2]).name.startswith("python")) and shebang[0][3] == "started"
    scripts = [r[0] for r in rows(run, "SELECT script FROM execs WHERE argv[1] = 'python3' AND NOT probe ORDER BY seq")]
    assert [Path(s).name for s in scripts] == ["tool", "plain.py"]


def test_probe_means_only_a_start_the_kernel_refused(runs_dir):
    run = monitored(runs_dir, "printf 'x' > data.txt; ./data.txt; ./missing; true")
    assert rows(run, "SELECT argv[1], outcome, probe FROM execs WHERE argv[1] LIKE './%' ORDER BY seq") == [
        ("./data.txt", "refused", True),
        ("./missing", "refused", True),
    ]


def test_forks_without_exec_are_recorded_and_attributed_to_their_call(runs_dir):
    command = "echo a | (cut -c1 | tr a b) > out.txt"
    run = monitored(runs_dir, f"bash -c {shlex.quote(command)}; true")  # the outer shell plays the runtime
    forks = rows(run, "SELECT count(*) FROM processes WHERE event = 'fork'")[0][0]
    execs_ = rows(run, "SELECT count(DISTINCT pid) FROM execs WHERE NOT probe")[0][0]
    assert forks > execs_, "the subshells fork without exec: only the kernel's events show them"
    call = ToolCall("c1", "Bash", command=command)
    got = attribute(read_journal(run, "execs"), [call], read_journal(run, "processes"))
    by_prog = {Path(r["argv"][0]).name: a for r, a in zip(read_journal(run, "execs"), got, strict=True)}
    assert by_prog["cut"].attribution == "tool_call" and by_prog["tr"].attribution == "tool_call"
    assert by_prog["cut"].call_id == "c1" == by_prog["tr"].call_id
    # without the kernel's lineage the subshell hides them: the evidence is what makes the difference
    blind = attribute(read_journal(run, "execs"), [ToolCall("c1", "Bash", command=command)])
    assert {a.attribution for a in blind if a.pid in (by_prog["cut"].pid, by_prog["tr"].pid)} == {"unattributed"}


def test_pip_install_attempt_is_recorded_with_argv(runs_dir):
    run = monitored(runs_dir, "python3 -m pip install --no-index --quiet six-not-here || true")
    found = rows(
        run, "SELECT argv FROM execs WHERE list_contains(argv, 'pip') AND list_contains(argv, 'install')"
    )
    assert found and found[0][0][-1] == "six-not-here"


def test_login_shells_keep_the_runs_interpreter_first(runs_dir):
    """Codex runs its tools through `bash -lc`, which resets PATH from /etc/profile."""
    import sys
    from pathlib import Path

    run = monitored(runs_dir, "bash -lc 'command -v python' > which.txt")
    assert (run / "workspace" / "which.txt").read_text().strip() == str(Path(sys.executable).parent / "python")
