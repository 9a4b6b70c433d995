"""Network attempts: refused by the kernel (the tree's netns holds only loopback) and
recorded with their process. Targets are documentation addresses (RFC 5737 / 3849), and
every attempt is made from inside that loopback-only namespace."""

from tests.conftest import monitored, needs_root
from tests.evidencedb import rows

pytestmark = needs_root

CONNECT = """python3 - <<'PY'
import socket, sys
fam, addr = (socket.AF_INET6, '2001:db8::7') if sys.argv[-1:] == ['v6'] else (socket.AF_INET, '192.0.2.7')
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(2)
try:
    s.connect((addr, 443))
    print('CONNECTED')
except OSError as e:
    print('refused', e.errno)
PY"""


def test_tree_sees_only_loopback(runs_dir):
    run = monitored(runs_dir, "cat /proc/net/dev > netdev.txt")
    names = [
        line.split(":")[0].strip() for line in (run / "workspace" / "netdev.txt").read_text().splitlines()[2:]
    ]
    assert names == ["lo"]


def test_child_connect_is_refused_and_recorded(runs_dir):
    run = monitored(runs_dir, f"({CONNECT}\n) > out.txt")
    assert (run / "workspace" / "out.txt").read_text().startswith("refused")
    ((pid, family, address, port, argv),) = rows(
        run, "SELECT pid, family, address, port, argv FROM net_attempts"
    )
    assert (family, address, port) == ("AF_INET", "192.0.2.7", 443)
    assert argv[:2] == ["python3", "-"]
    assert rows(run, f"SELECT count(*) FROM execs WHERE pid = {pid}")[0][0] >= 1


def test_setsid_grandchild_udp_dns_and_ipv6_are_recorded(runs_dir):
    script = (
        'setsid bash -c "exec 3<>/dev/tcp/192.0.2.9/80" 2>/dev/null; '
        'python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)'
        ".sendto(b'x', ('192.0.2.53', 53))\" 2>/dev/null; "
        f"{CONNECT.replace('python3 -', 'python3 - v6', 1)}\ntrue"
    )
    run = monitored(runs_dir, script)
    got = set(rows(run, "SELECT syscall, address, port FROM net_attempts"))
    assert ("connect", "192.0.2.9", 80) in got
    assert ("sendto", "192.0.2.53", 53) in got
    assert ("connect", "2001:db8::7", 443) in got


def test_loopback_between_own_processes_works_and_is_not_an_attempt(runs_dir):
    script = """python3 - <<'PY' > out.txt
import socket, threading
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
port = srv.getsockname()[1]
threading.Thread(target=lambda: srv.accept()[0].sendall(b'pong'), daemon=True).start()
c = socket.create_connection(('127.0.0.1', port)); print(c.recv(4).decode())
PY"""
    run = monitored(runs_dir, script)
    assert (run / "workspace" / "out.txt").read_text().strip() == "pong"
    assert rows(run, "SELECT count(*) FROM net_attempts") == [(0,)]


def test_io_uring_is_refused(runs_dir):
    script = (
        'python3 -c "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); '
        "r = libc.syscall(425, 8, ctypes.create_string_buffer(120)); "
        'print(r, ctypes.get_errno())" > out.txt'
    )
    run = monitored(runs_dir, script)
    assert (run / "workspace" / "out.txt").read_text().split() == ["-1", "38"]  # ENOSYS
