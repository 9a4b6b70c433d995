"""Scripted agents under the real harness: what they said (tool_calls, messages) sits next
to what the machine saw (execs), tied together by exec_attribution."""

from tests.agents.conftest import run_scripted
from tests.conftest import needs_root
from tests.evidencedb import rows

pytestmark = needs_root


def test_clean_episode_ties_each_bash_call_to_its_processes(runs_dir):
    run = run_scripted(runs_dir, "clean")
    calls = rows(run, "SELECT tool, command, status, exit_code, exec_pids FROM tool_calls ORDER BY line")
    assert [(c[0], c[2]) for c in calls] == [
        ("Bash", "completed"),
        ("Write", "completed"),
        ("Bash", "completed"),
    ]
    train = calls[2]
    assert train[1] == "python run_1.py" and train[3] == 0 and train[4]
    # the python process that trained is among the call's execs
    tied = rows(
        run,
        "SELECT e.argv FROM exec_attribution a JOIN execs e ON e.seq = a.exec_seq "
        "JOIN tool_calls c ON c.call_id = a.call_id WHERE c.command = 'python run_1.py'",
    )
    assert any(argv[-1] == "run_1.py" for (argv,) in tied)
    # `cat | head` and `ls` of the first call are its descendants
    first = rows(
        run,
        "SELECT list_sort(list(e.argv[1])) FROM exec_attribution a JOIN execs e ON e.seq = a.exec_seq "
        "JOIN tool_calls c ON c.call_id = a.call_id WHERE c.command LIKE 'cat program.md%'",
    )[0][0]
    assert {"cat", "head", "ls"} <= set(first)
    assert rows(run, "SELECT count(*) FROM exec_attribution WHERE attribution = 'unattributed'") == [(0,)]
    assert rows(run, "SELECT count(*) FROM exec_attribution") == rows(run, "SELECT count(*) FROM execs")
    kinds = rows(run, "SELECT kind, text FROM messages ORDER BY line")
    assert kinds[0] == ("reasoning", "Reading the task first.")
    assert rows(run, "SELECT count(*) FROM agent_events WHERE kind IN ('unknown', 'malformed')") == [(0,)]


def test_pip_install_call_is_cited_with_its_exec_record(runs_dir):
    run = run_scripted(runs_dir, "pip_install")
    ((call_id, status, seqs),) = rows(
        run, "SELECT call_id, status, exec_seqs FROM tool_calls WHERE command LIKE '%pip install%'"
    )
    assert status == "error"
    pip = rows(
        run,
        "SELECT seq FROM execs WHERE list_contains(argv, 'pip') AND list_contains(argv, 'install') "
        "AND NOT probe",
    )
    assert pip and set(s for (s,) in pip) <= set(seqs)
    assert rows(run, f"SELECT DISTINCT attribution FROM exec_attribution WHERE call_id = '{call_id}'") == [
        ("tool_call",)
    ]


def test_a_process_no_tool_call_explains_is_unattributed(runs_dir):
    run = run_scripted(runs_dir, "untraced")
    hidden = rows(
        run,
        "SELECT a.attribution, a.call_id FROM exec_attribution a JOIN execs e ON e.seq = a.exec_seq "
        "WHERE e.argv[3] = 'echo hidden > hidden.txt' AND NOT e.probe",
    )
    assert hidden == [("unattributed", None)]
    assert rows(run, "SELECT attribution FROM exec_attribution ORDER BY exec_seq LIMIT 1") == [("runtime",)]
    summary = rows(
        run, "SELECT detail->>'unattributed_processes' FROM agent_events WHERE kind = 'parse_summary'"
    )
    assert summary == [("1",)]


def test_connect_out_is_seen_by_the_network_sensor_and_tied_to_its_call(runs_dir):
    run = run_scripted(runs_dir, "connect_out")
    attempts = rows(run, "SELECT pid, address FROM net_attempts WHERE address LIKE '192.0.2.%'")
    assert {a for _, a in attempts} >= {"192.0.2.1"}
    call_pids = rows(run, "SELECT exec_pids FROM tool_calls WHERE command LIKE '%socket.create_connection%'")[
        0
    ][0]
    assert any(pid in call_pids for pid, _ in attempts)
