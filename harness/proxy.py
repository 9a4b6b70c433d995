"""The allow-listing proxy the harness injects into the agent's loopback-only network
namespace (sandbox-feasibility.md §2).

A harness thread enters the agent's namespace with setns (which moves only that thread),
binds 127.0.0.1:PORT there, and returns; connections are accepted there and dialled
upstream from the harness's own namespace. Each incoming connection is attributed to its
process through the socket inode (client port -> /proc/<ns pid>/net/tcp -> /proc/*/fd).
Only the agent runtime's main process may pass, and only to its configured endpoint: the
CLI's base URL points here, the request is re-addressed to the real upstream, and the
credentials, which the CLI never holds, are added on the way out. Everything else is
refused and recorded in `proxy_connections`.
"""

import os
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import psutil

from onegc.evidence.journal import Journal, journal_path
from onegc.harness.kernel import CLONE_NEWNET, libc

if TYPE_CHECKING:
    from onegc.harness.spec import RunSpec

MAX_HEAD = 64 * 1024
HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade", "host"}


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    if libc.setns(fd, nstype) != 0:
        err = __import__("ctypes").get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def bind_in_netns(ns_pid: int, host: str, port: int) -> socket.socket:
    """A listening socket inside the network namespace of `ns_pid`."""
    result: dict = {}

    def enter() -> None:
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(f"/proc/{ns_pid}/ns/net", os.O_RDONLY)
        try:
            setns(target)
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
                s.listen(64)
                result["sock"] = s
            finally:
                setns(own)
        except OSError as exc:
            result["error"] = exc
        finally:
            os.close(own)
            os.close(target)

    t = threading.Thread(target=enter, name="proxy-setns")
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


def socket_inode(ns_pid: int, local_port: int, remote_port: int) -> int | None:
    """Inode of the client socket 127.0.0.1:local_port -> :remote_port in that namespace."""
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{ns_pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 10:
                continue
            lport = int(f[1].rsplit(":", 1)[1], 16)
            rport = int(f[2].rsplit(":", 1)[1], 16)
            if lport == local_port and rport == remote_port:
                return int(f[9])
    return None


def inode_owner(inode: int, pids: list[int] | None = None) -> int | None:
    """The process holding socket:[inode] (the first found; fds may be shared after fork)."""
    want = f"socket:[{inode}]"
    candidates = pids if pids is not None else [int(p) for p in os.listdir("/proc") if p.isdigit()]
    for pid in candidates:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


@dataclass(frozen=True)
class Route:
    """What the runtime may reach: requests under `local_prefix` go to `upstream` + rest."""

    upstream: str
    headers: dict[str, str]
    local_prefix: str = ""


class AllowListProxy:
    def __init__(
        self,
        run_dir: Path,
        route: Route,
        runtime_pid: Callable[[], int | None],
        port: int,
        host: str = "127.0.0.1",
        tree_pids: Callable[[], list[int]] | None = None,
        upstream_timeout_s: float = 600.0,
    ) -> None:
        self.run_dir = run_dir
        self.route = route
        self.runtime_pid = runtime_pid
        self.tree_pids = tree_pids
        self.host, self.port = host, port
        self.timeout = upstream_timeout_s
        self.journal = Journal(journal_path(run_dir, "proxy_connections"), "proxy_connections")
        self.sock: socket.socket | None = None
        self.ns_pid: int | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        up = urlsplit(route.upstream)
        self._up_host = up.hostname or ""
        self._up_port = up.port or (443 if up.scheme == "https" else 80)
        self._up_tls = up.scheme == "https"
        self._up_path = up.path.rstrip("/")

    # -- life -----------------------------------------------------------------------------
    def start(self, ns_pid: int) -> None:
        """Bind inside the namespace of `ns_pid` (any process already in it) and serve."""
        self.ns_pid = ns_pid
        self.sock = bind_in_netns(ns_pid, self.host, self.port)
        t = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
        for t in list(self._threads):
            t.join(timeout=5)
        self.journal.close()

    def _accept_loop(self) -> None:
        assert self.sock is not None
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn, addr[1]), daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    # -- one connection -------------------------------------------------------------------
    def _owner(self, client_port: int) -> tuple[int | None, list[str] | None]:
        inode = socket_inode(self.ns_pid or 0, client_port, self.port)
        if inode is None:
            return None, None
        pids = self.tree_pids() if self.tree_pids else None
        pid = inode_owner(inode, pids)
        if pid is None and pids is not None:
            pid = inode_owner(inode)
        if pid is None:
            return None, None
        try:
            return pid, psutil.Process(pid).cmdline()
        except psutil.Error:
            return pid, None

    def _record(self, client_port: int, pid, argv, target, verdict, reason, up=0, down=0) -> None:
        self.journal.write(
            listen=f"{self.host}:{self.port}",
            client_port=client_port,
            pid=pid,
            argv=argv,
            target=target,
            verdict=verdict,
            reason=reason,
            bytes_up=up,
            bytes_down=down,
        )

    def _serve(self, conn: socket.socket, client_port: int) -> None:
        pid, argv = self._owner(client_port)
        head, target = b"", None
        try:
            conn.settimeout(30)
            head, rest = self._read_head(conn)
            target, path, reason = self._check_target(head)
            runtime = self.runtime_pid()
            if pid is None:
                reason = "unknown_owner"
            elif pid != runtime:
                reason = "not_runtime"
            if reason:
                self._refuse(conn, 403, reason)
                self._record(client_port, pid, argv, target, "refused", reason)
                return
            up, down = self._relay(conn, head, rest, path)
            self._record(client_port, pid, argv, target, "allowed", None, up, down)
        except (OSError, ValueError) as exc:
            self._record(client_port, pid, argv, target, "refused", f"error: {exc}"[:200])
        finally:
            conn.close()

    def _read_head(self, conn: socket.socket) -> tuple[bytes, bytes]:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                raise ValueError("connection closed before a request")
            buf += chunk
            if len(buf) > MAX_HEAD:
                raise ValueError("request head too large")
        head, _, rest = buf.partition(b"\r\n\r\n")
        return head, rest

    def _check_target(self, head: bytes) -> tuple[str | None, str, str | None]:
        """(target as recorded, upstream path, refusal reason or None)."""
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        if len(parts) != 3:
            return None, "", "bad_request"
        method, path = parts[0], parts[1]
        if method == "CONNECT":
            return path, "", "not_endpoint"  # base-URL routing only: no blind tunnels
        if "://" in path:  # absolute-form: a client using us as a generic HTTP proxy
            return path, "", "not_endpoint"
        prefix = self.route.local_prefix
        if not (
            path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "?") or not prefix
        ):
            return path, "", "not_endpoint"
        upstream_path = self._up_path + path[len(prefix) :]
        if not upstream_path.startswith("/"):
            upstream_path = "/" + upstream_path
        return f"{self.route.upstream}{path[len(prefix) :]}", upstream_path, None

    @staticmethod
    def _refuse(conn: socket.socket, code: int, reason: str) -> None:
        body = f"onegc-audit proxy: refused ({reason})\n".encode()
        try:
            conn.sendall(
                f"HTTP/1.1 {code} Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + body
            )
        except OSError:
            pass

    def _rewrite(self, head: bytes, path: str) -> bytes:
        lines = head.decode("latin-1").split("\r\n")
        method, _, version = lines[0].split()
        out = [f"{method} {path} {version}"]
        injected = {k.lower() for k in self.route.headers}
        for h in lines[1:]:
            name = h.split(":", 1)[0].strip().lower()
            if name in HOP_HEADERS or name in injected or name in ("authorization", "x-api-key"):
                continue
            out.append(h)
        default = 443 if self._up_tls else 80
        host = self._up_host if self._up_port == default else f"{self._up_host}:{self._up_port}"
        out.append(f"Host: {host}")
        out += [f"{k}: {v}" for k, v in self.route.headers.items()]
        out.append("Connection: close")
        return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")

    def _relay(self, conn: socket.socket, head: bytes, rest: bytes, path: str) -> tuple[int, int]:
        upstream = socket.create_connection((self._up_host, self._up_port), timeout=30)
        if self._up_tls:
            upstream = ssl.create_default_context().wrap_socket(upstream, server_hostname=self._up_host)
        upstream.settimeout(self.timeout)
        conn.settimeout(self.timeout)
        counts = [0, 0]
        try:
            upstream.sendall(self._rewrite(head, path) + rest)
            counts[0] += len(rest)

            def pump_up() -> None:
                try:
                    while chunk := conn.recv(65536):
                        upstream.sendall(chunk)
                        counts[0] += len(chunk)
                except OSError:
                    pass

            t = threading.Thread(target=pump_up, daemon=True)
            t.start()
            while chunk := upstream.recv(65536):
                conn.sendall(chunk)
                counts[1] += len(chunk)
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            upstream.close()
        return counts[0], counts[1]


def runtime_of(launcher_pid: int) -> Callable[[], int | None]:
    """The agent's main process: the first child of the pid namespace's init (the
    launcher's child). Cached with its start time, so a reused pid never inherits it."""
    cache: dict = {}

    def find() -> int | None:
        if "pid" in cache:
            try:
                if psutil.Process(cache["pid"]).create_time() == cache["ct"]:
                    return cache["pid"]
            except psutil.Error:
                pass
            return None
        try:
            inits = psutil.Process(launcher_pid).children()
            kids = sorted((c for i in inits for c in i.children()), key=lambda c: (c.create_time(), c.pid))
        except psutil.Error:
            return None
        if not kids:
            return None
        cache.update(pid=kids[0].pid, ct=kids[0].create_time())
        return kids[0].pid

    return find


def attach_proxy(spec: "RunSpec", route: Route, port: int) -> dict:
    """Wire a proxy into a RunSpec: bound when the agent's namespace exists (on_netns),
    stopped (and its journal closed) as the first before-seal step."""
    holder: dict = {}

    def on_netns(ns_pid: int) -> None:
        proxy = AllowListProxy(spec.run_dir, route, runtime_of(ns_pid), port)
        holder["proxy"] = proxy
        proxy.start(ns_pid)

    def stop(_: object) -> None:
        proxy = holder.get("proxy")
        if proxy is not None:
            proxy.stop()

    spec.on_netns = on_netns
    spec.runtime_cli = True  # the main process is a CLI runtime: its own traffic is not the agent's tools'
    spec.before_seal.insert(0, stop)
    return holder
