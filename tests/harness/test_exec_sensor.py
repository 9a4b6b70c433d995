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


def test_failed_path_probes_are_marked(runs_dir):
    run = monitored(runs_dir, 'python3 -c \'import os; os.execvp("ls", ["ls"])\'')
    ls = rows(run, "SELECT path, probe FROM execs WHERE argv = ['ls'] ORDER BY seq")
    assert ls[-1] == ("/usr/bin/ls", False) or ls[-1][0].endswith("/ls") and not ls[-1][1]
    assert any(probe for _, probe in ls[:-1]), "PATH entries before the hit must be probes"


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
