"""One monitored agent run: sensors up, agent launched in its sandbox (a deny-by-default
view, harness/view.py, under a uid of its own), watchdog, sensors down, evidence sealed.
The caller (audit) has already created the run directory and populated its workspace."""

import json
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from onegc.evidence.attest import Signer, load_signer
from onegc.evidence.errors import OnegcError
from onegc.evidence.journal import Journal, journal_path
from onegc.evidence.layout import HOME, PRIVATE_SCRATCH, RunLayout
from onegc.evidence.seal import seal
from onegc.harness import snapshot, view
from onegc.harness.cgroup import RunCgroup
from onegc.harness.freeze import freeze, thaw
from onegc.harness.runfs import RunFs

AGENT_UID_BASE = int(os.environ.get("ONEGC_AGENT_UID", "61000"))
"""First of the per-run agent uids (each run leases its own: view.UidLease)."""
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Passed through to the agent: the GPU it may use, and the host's numeric-library settings
# (some CPUs need OPENBLAS_CORETYPE for correct results).
PASS_ENV = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LANG", "TERM", "OPENBLAS_CORETYPE",
            "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class HarnessError(OnegcError):
    """The run cannot start (bad name, existing run dir, missing privilege)."""


@dataclass
class BeforeSeal:
    """What a post-agent step (parsing the agent's stream, official scoring) gets: the run,
    its clock, and journals of its own, all sealed with the rest."""

    spec: "RunSpec"
    start_mono: float
    deadline_mono: float
    journals: dict[str, Journal] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def journal(self, table: str) -> Journal:
        if table not in self.journals:
            self.journals[table] = Journal(journal_path(self.spec.run_dir, table), table)
        return self.journals[table]


@dataclass
class RunSpec:
    run_dir: Path
    argv: list[str]
    label: str
    task: str
    rep: int
    budget_s: float
    grace_s: float = 30.0
    locked: list[str] = field(default_factory=list)
    originals: Path | None = None
    heldout: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    agent_uid: int | None = None
    """The agent's uid; None leases a uid no other live run holds (the usual case)."""
    data: dict | None = None
    """The task data the run is pinned to (version and sha256 of every file), in its start record."""
    view_ro: list[str] = field(default_factory=list)
    """Host paths the agent needs read-only beyond the runtime (harness/view.py) and its program."""
    sample_interval_s: float = 1.0
    file_sensor: str = field(default_factory=lambda: os.environ.get("ONEGC_FILE_SENSOR", "fanotify"))
    """fanotify (harness/fanwatch.py; inotify where it cannot start) or inotify (harness/fswatch.py)."""
    before_seal: list[Callable[[BeforeSeal], None]] = field(default_factory=list)
    runtime_cli: bool = False
    """The agent's main process is an agent CLI (its own traffic goes through the proxy), so
    its network attempts are the runtime's phone-home, told apart from the agent's tools'."""
    on_netns: Callable[[int], None] | None = None
    """Called with a pid inside the agent's fresh network namespace before the agent starts
    (the allow-listing proxy binds there); an exception aborts the launch."""

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def workspace(self) -> Path:
        return self.layout.workspace

    @property
    def scratch(self) -> Path:
        return self.layout.scratch


@dataclass
class RunOutcome:
    run_dir: Path
    complete: bool
    reasons: list[str]
    end_reason: str
    agent_exit_code: int | None


def run_dir_for(runs_dir: Path, label: str, task: str, rep: int) -> Path:
    """RUNS_DIR/LABEL/TASK/rREP after checking the names, and that no run is there yet
    (checked before anything is prepared, and again atomically by create_run_dir)."""
    for what, value in (("label", label), ("task", task)):
        if not SAFE_NAME.match(value):
            raise HarnessError(f"{what} {value!r} must match {SAFE_NAME.pattern}")
    if rep < 1:
        raise HarnessError("rep must be >= 1")
    run_dir = runs_dir.resolve() / label / task / f"r{rep}"
    if run_dir.exists():
        raise HarnessError(f"{run_dir} already exists; a run directory is never reused")
    return run_dir


def create_run_dir(runs_dir: Path, label: str, task: str, rep: int) -> Path:
    """RUNS_DIR/LABEL/TASK/rREP, created empty; an existing run is never reused."""
    run_dir = run_dir_for(runs_dir, label, task, rep)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_dir.mkdir()
    except FileExistsError:
        raise HarnessError(f"{run_dir} already exists; a run directory is never reused") from None
    RunLayout(run_dir).workspace.mkdir()
    return run_dir


def preflight() -> None:
    if os.geteuid() != 0:
        raise HarnessError(
            "the harness must run as root: it creates the agent's namespaces and cgroup "
            "and drops the agent to an unprivileged user"
        )


def gpu_memory(pids: set[int]) -> int | None:
    """GPU memory used by `pids` (nvidia-smi), None where there is no NVIDIA GPU."""
    if not pids or shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    total = 0
    for line in out.splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and int(pid) in pids and mib.strip().isdigit():
            total += int(mib) * 2**20
    return total


def agent_env(spec: RunSpec) -> dict[str, str]:
    home = spec.layout.home
    cache = home / ".cache"
    env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
    env.update(
        PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        HOME=str(home),
        USER="agent",
        LOGNAME="agent",
        TMPDIR="/tmp",
        XDG_CACHE_HOME=str(cache),
        TORCHINDUCTOR_CACHE_DIR=str(cache / "torchinductor"),
        TRITON_CACHE_DIR=str(cache / "triton"),
        PYTHONUNBUFFERED="1",
    )
    env.setdefault("LANG", "C.UTF-8")
    env.update(spec.env)
    return env


def login_profile(spec: RunSpec, env: dict[str, str]) -> None:
    """A login shell (Codex runs every tool as `bash -lc`) resets PATH from /etc/profile; the
    home's profile puts the run's interpreter first again, so `python` stays the task's."""
    home = spec.layout.home
    profile = home / ".profile"
    if not profile.exists():
        profile.write_text(f"# written by onegc-audit\nexport PATH={shlex.quote(env['PATH'])}\n")
        os.chown(profile, spec.agent_uid, spec.agent_uid)
    bash_profile = home / ".bash_profile"
    if not bash_profile.exists():
        bash_profile.write_text(
            '# written by onegc-audit\n. "$HOME/.profile"\n[ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"\n'
        )
        os.chown(bash_profile, spec.agent_uid, spec.agent_uid)


def chown_tree(root: Path, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), uid, uid)
    os.chown(root, uid, uid)


class Monitor:
    """Runs one spec. Use `run()`; everything it learns goes into the journals."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        rd = spec.run_dir
        spec.layout.agent_dir.mkdir(exist_ok=True)
        self.harness = Journal(journal_path(rd, "harness_events"), "harness_events")
        self.health = Journal(journal_path(rd, "sensor_health"), "sensor_health")
        self.reasons: list[str] = []
        self.sensors: dict[str, bool] = {}
        self.cgroup: RunCgroup | None = None
        self.runfs: RunFs | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self._stop_sampler = threading.Event()

    # -- set-up ---------------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        spec = self.spec
        for sub in (HOME, *PRIVATE_SCRATCH.values()):
            (spec.scratch / sub).mkdir(parents=True, exist_ok=True)
        # 0755, owned by the run's own uid: no other run's uid can write there.
        chown_tree(spec.workspace, spec.agent_uid)
        chown_tree(spec.scratch, spec.agent_uid)
        for rel in spec.locked:
            p = spec.workspace / rel
            if p.exists():
                os.chown(p, 0, 0)
                os.chmod(p, 0o444)

    def _watch_roots(self) -> list[list]:
        """The only places the agent can write (its view holds nothing else writable), so every
        event there is the run's own and no other process's write can be cited against it."""
        spec = self.spec
        return [["workspace", str(spec.workspace), True], ["scratch", str(spec.scratch), True]]

    def _start_file_sensor(self) -> None:
        """fanotify on the run's own filesystems (harness/runfs.py, harness/fanwatch.py: a pid
        per event, nothing lost) where the kernel and a cgroup allow; inotify otherwise."""
        spec, roots = self.spec, self._watch_roots()
        if self.cgroup is not None and spec.file_sensor != "inotify":
            error = self._start_fanotify(roots)
            if error is None:
                return
            self.health.write(sensor="fswatch", counter="fanotify_unavailable", value=1, lossy=False)
            self.harness.write(kind="file_sensor_fallback", detail={"error": error})
        self._spawn_sensor("fswatch", "onegc.harness.fswatch", str(spec.run_dir), str(os.getpid()), json.dumps(roots))
        self._ready("fswatch")
        self.sensors["file_sensor"] = "inotify"

    def _start_fanotify(self, roots: list[list]) -> str | None:
        """Mount the run's own filesystems and mark them; None once watched, else why not (and
        the folders are plain folders again)."""
        spec = self.spec
        runfs = RunFs(spec.layout, [(label, Path(path)) for label, path, _rec in roots])
        try:
            runfs.attach()
        except OSError as exc:
            return str(exc)
        proc = self._spawn_sensor(
            "fswatch",
            "onegc.harness.fanwatch",
            str(spec.run_dir),
            str(os.getpid()),
            str(self.cgroup.path),
            json.dumps([[label, path] for label, path, _rec in roots]),
        )
        line = proc.stdout.readline()
        msg = json.loads(line) if line else {}
        if msg.get("ready") is True:
            self.runfs = runfs
            self.sensors["fswatch"] = True
            self.sensors["file_sensor"] = "fanotify"
            return None
        proc.wait()
        runfs.detach()
        return msg.get("error", "no answer")

    def _spawn_sensor(self, name: str, module: str, *args: str, pass_fds: tuple = ()) -> dict:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            pass_fds=pass_fds,
            text=True,
        )
        self.procs[name] = proc
        return proc

    def _ready(self, name: str) -> bool:
        line = self.procs[name].stdout.readline()
        ok = bool(line) and json.loads(line).get("ready") is True
        self.sensors[name] = ok
        if not ok:
            self.reasons.append(f"sensor {name} failed to start")
        return ok

    def _view(self) -> view.ViewSpec:
        """What the agent sees: the runtime and its program read-only, its workspace and scratch
        read-write, private /tmp, /var/tmp, /dev/shm from its scratch."""
        spec = self.spec
        ro = view.runtime_paths() + list(spec.view_ro)
        program = shutil.which(spec.argv[0]) if spec.argv else None
        if program:
            ro.append(view.program_root(program))
        return view.ViewSpec(
            ro=ro,
            rw=[str(spec.workspace), str(spec.scratch)],
            private={t: str(spec.layout.private(t)) for t in PRIVATE_SCRATCH},
            uid=spec.agent_uid,
            gid=spec.agent_uid,
            home=str(spec.layout.home),
        )

    # -- sampler --------------------------------------------------------------------------
    def _sample_loop(self, journal: Journal) -> None:
        while not self._stop_sampler.wait(self.spec.sample_interval_s):
            pids = self._tree_pids()
            rss = 0
            for pid in pids:
                try:
                    rss += psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    pass
            cpu = self.cgroup.cpu_seconds() if self.cgroup else None
            journal.write(nprocs=len(pids), cpu_s=cpu, rss_bytes=rss, gpu_mem_bytes=gpu_memory(set(pids)))

    def _tree_pids(self) -> list[int]:
        launcher = self.procs.get("launcher")
        if self.cgroup:
            return self.cgroup.pids()
        if launcher is None:
            return []
        try:
            p = psutil.Process(launcher.pid)
            return [p.pid] + [c.pid for c in p.children(recursive=True)]
        except psutil.Error:
            return []

    def _agent_procs(self) -> list[psutil.Process]:
        """Processes of the tree other than our launcher and the namespace's init."""
        launcher = self.procs["launcher"].pid
        mine = {launcher}
        try:
            mine |= {c.pid for c in psutil.Process(launcher).children()}
        except psutil.Error:
            pass
        out = []
        for pid in self._tree_pids():
            if pid in mine:
                continue
            try:
                out.append(psutil.Process(pid))
            except psutil.Error:
                pass
        return out

    # -- the run --------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        spec = self.spec
        preflight()
        signer = load_signer()  # a broken key fails here, before the agent runs, not at the seal
        lease = None
        if spec.agent_uid is None:
            lease = view.UidLease(AGENT_UID_BASE)
            spec.agent_uid = lease.uid
        try:
            return self._run(signer)
        finally:
            if lease is not None:
                lease.release()

    def _run(self, signer: Signer | None) -> RunOutcome:
        spec = self.spec
        view.prepare_assembly()
        self._prepare_dirs()
        self.cgroup = RunCgroup.create(f"{spec.label}-{spec.task}-r{spec.rep}-{os.getpid()}")
        self.sensors["cgroup"] = self.cgroup is not None
        if self.cgroup is None:
            self.reasons.append("no writable cgroup v2: the tree is tracked by its pid namespace only")
        snaps = Journal(journal_path(spec.run_dir, "snapshots"), "snapshots")
        scopes = {"workspace": spec.workspace}
        if spec.originals:
            scopes["originals"] = spec.originals
        if spec.heldout:
            scopes["heldout"] = spec.heldout
        snapshot.record(snaps, "before", scopes)

        env = agent_env(spec)
        login_profile(spec, env)  # host-side writes in the run's folders end here: their own filesystems come next
        self._start_file_sensor()
        ctl_r, ctl_w = os.pipe()
        ack_r, ack_w = os.pipe()
        status_r, status_w = os.pipe()
        self._spawn_sensor(
            "exec_net",
            "onegc.harness.supervisor",
            str(spec.run_dir),
            str(ctl_r),
            str(ack_w),
            str(os.getpid()),
            pass_fds=(ctl_r, ack_w),
        )
        os.close(ctl_r)
        os.close(ack_w)

        sandbox = self._view()
        try:
            view.check(sandbox)
        except OSError as exc:
            raise HarnessError(f"cannot build the agent's view: {exc}") from None
        config = {
            "harness_pid": os.getpid(),
            "argv": spec.argv,
            "env": env,
            "cwd": str(spec.workspace),
            "uid": spec.agent_uid,
            "gid": spec.agent_uid,
            "cgroup_procs": str(self.cgroup.procs_file) if self.cgroup else None,
            "view": asdict(sandbox),
            "ctl_fd": ctl_w,
            "ack_fd": ack_r,
            "status_fd": status_w,
        }
        netns_pipes: list[int] = []
        if spec.on_netns is not None:
            ready_r, ready_w = os.pipe()
            go_r, go_w = os.pipe()
            netns_pipes = [ready_r, ready_w, go_r, go_w]
            config["netns_fds"] = [ready_w, go_r]
        cfg_path = spec.layout.launch
        cfg_path.write_text(json.dumps(config, indent=1))
        start_wall, start_mono = time.time(), time.monotonic()  # the budget starts with the agent
        deadline = start_mono + spec.budget_s
        meta = {
            "run_id": f"{spec.label}/{spec.task}/r{spec.rep}",
            "label": spec.label,
            "task": spec.task,
            "rep": spec.rep,
            "argv": spec.argv,
            "budget_s": spec.budget_s,
            "grace_s": spec.grace_s,
            "deadline_mono": deadline,
            "agent_uid": spec.agent_uid,
            "view": {"ro": sandbox.ro, "rw": sandbox.rw, "private": sandbox.private},
            "workspace": str(spec.workspace),
            "scratch": str(spec.scratch),
            "originals": str(spec.originals) if spec.originals else None,
            "heldout": str(spec.heldout) if spec.heldout else None,
            "locked": spec.locked,
            "data": spec.data,
            "runtime_cli": spec.runtime_cli,
            "sensors": self.sensors,
            "env": env,
            "host": os.uname().nodename,
            "kernel": os.uname().release,
            "python": sys.version.split()[0],
        }
        self.harness.write(kind="start", detail=meta, mono=start_mono, t=start_wall)
        with (
            open(spec.layout.stdout, "wb") as out,
            open(spec.layout.stderr, "wb") as err,
        ):
            launcher = subprocess.Popen(
                [sys.executable, "-m", "onegc.harness.launcher", str(cfg_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=(ctl_w, ack_r, status_w, *netns_pipes[1:3]),
            )
        self.procs["launcher"] = launcher
        for fd in (ctl_w, ack_r, status_w, *netns_pipes[1:3]):
            os.close(fd)
        if netns_pipes:
            self._netns_handshake(launcher.pid, netns_pipes[0], netns_pipes[3])
        self._ready("exec_net")  # the supervisor is ready once it holds the listener
        self.harness.write(kind="agent_started", pid=launcher.pid, argv=spec.argv, detail={})
        samples = Journal(journal_path(spec.run_dir, "resource_samples"), "resource_samples")
        sampler = threading.Thread(target=self._sample_loop, args=(samples,), daemon=True)
        sampler.start()

        end_reason, exit_code = self._watch(status_r, deadline)
        self._freeze(end_reason)
        self._end_tree(end_reason)  # status_r stays open: init must never die on a broken pipe
        os.close(status_r)
        self._stop_sampler.set()
        sampler.join()
        samples.close()
        self._stop_sensors()
        self._detach_runfs()
        snapshot.record(snaps, "after", scopes)
        snaps.close()
        post = BeforeSeal(spec, start_mono, deadline)
        for step in spec.before_seal:
            step(post)
        for j in post.journals.values():
            j.close()
        self.reasons += post.reasons
        complete = not self.reasons
        self.harness.write(
            kind="end", detail=({"reason": end_reason, "complete": complete, "reasons": self.reasons})
        )
        self.harness.close()
        self.health.close()
        if self.cgroup:
            self.cgroup.remove()
        seal(spec.run_dir, complete=complete, reasons=self.reasons, signer=signer)
        return RunOutcome(spec.run_dir, complete, self.reasons, end_reason, exit_code)

    def _detach_runfs(self) -> None:
        """The run's filesystems back into plain folders (every process of the run is gone)."""
        if self.runfs is None:
            return
        t = time.monotonic()
        try:
            self.runfs.detach()
        except OSError as exc:
            self.reasons.append(f"the run's filesystems could not be copied back ({exc}); they stay in "
                                f"{self.spec.layout.fs_dir}")  # fmt: skip
            return
        self.harness.write(kind="runfs_detached", detail={"seconds": round(time.monotonic() - t, 3)})

    def _netns_handshake(self, launcher_pid: int, ready_r: int, go_w: int) -> None:
        """Let spec.on_netns act inside the agent's network namespace before the agent runs."""
        try:
            ready, _, _ = select.select([ready_r], [], [], 30)
            ok = bool(ready) and os.read(ready_r, 16).startswith(b"netns")
            if not ok:
                self.reasons.append("the launcher never reported its network namespace")
            else:
                try:
                    self.spec.on_netns(launcher_pid)
                except Exception as exc:  # the hook's failure must not leave the launcher hanging
                    self.reasons.append(f"network namespace hook failed: {exc!r}")
                    ok = False
                else:
                    self.harness.write(kind="netns_ready", pid=launcher_pid, detail={})
            try:
                os.write(go_w, b"go\n" if ok else b"no\n")
            except BrokenPipeError:
                pass
        finally:
            os.close(ready_r)
            os.close(go_w)

    def _watch(self, status_r: int, deadline: float) -> tuple[str, int | None]:
        """Wait for the agent's main process to end, or the deadline."""
        launcher = self.procs["launcher"]
        reported_dead: set[str] = set()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.harness.write(kind="deadline", detail=({"deadline_mono": deadline}))
                return "deadline", None
            ready, _, _ = select.select([status_r], [], [], min(0.2, remaining))
            if ready:
                data = os.read(status_r, 64).decode().strip()
                if data:
                    code = int(data)
                    self.harness.write(kind="agent_exited", detail=({"exit_code": code}))
                    return "agent_exited", code
            if launcher.poll() is not None:
                self.harness.write(kind="launcher_exited", detail=({"exit_code": launcher.returncode}))
                self.reasons.append(f"the sandbox launcher ended early (exit {launcher.returncode})")
                return "launcher_failed", None
            for name in ("exec_net", "fswatch"):
                if name not in reported_dead and self.procs[name].poll() is not None:
                    reported_dead.add(name)
                    self.harness.write(
                        kind="sensor_died",
                        detail=({"sensor": name, "exit_code": self.procs[name].returncode}),
                    )
                    self.reasons.append(f"sensor {name} died during the run")

    def _freeze(self, reason: str) -> None:
        """The deadline freeze (harness/freeze.py): candidates and sources as they were now."""
        try:
            m = freeze(self.spec.run_dir, self.spec.workspace, self.cgroup.path if self.cgroup else None,
                       reason=reason, thaw_after=False)  # fmt: skip (_end_tree thaws after SIGTERM)
        except OSError as exc:
            self.reasons.append(f"the end-of-run freeze failed: {exc}")
            return
        detail = {k: m[k] for k in ("reason", "cgroup_frozen", "problem", "copied_mono")}
        detail["checkpoints"] = {k: v["sha256"] for k, v in m["checkpoints"].items()}
        self.harness.write(kind="freeze", detail=detail)

    def _end_tree(self, reason: str) -> None:
        """SIGTERM what is left of the agent's tree, SIGKILL after the grace; every process
        still alive at each step is recorded."""
        stage = "deadline" if reason == "deadline" else "agent_exit"
        alive = self._agent_procs()
        for p in alive:
            self._record_survivor(p, f"alive_at_{stage}")
        if alive:
            self.harness.write(kind="sigterm", detail=({"pids": [p.pid for p in alive]}))
            for p in alive:
                try:
                    p.terminate()
                except psutil.Error:
                    pass
            thaw(self.cgroup.path if self.cgroup else None)  # SIGTERM is pending before anything runs
            end = time.monotonic() + self.spec.grace_s
            while time.monotonic() < end and self._agent_procs():
                time.sleep(0.05)
            left = self._agent_procs()
            for p in left:
                self._record_survivor(p, "alive_after_grace")
            if left:
                self.harness.write(kind="sigkill", detail=({"pids": [p.pid for p in left]}))
        if self.cgroup:
            thaw(self.cgroup.path)
            self.cgroup.kill()
            if not self.cgroup.wait_empty(10):
                self.reasons.append("the run's cgroup did not empty after cgroup.kill")
        else:
            for p in psutil.Process(self.procs["launcher"].pid).children():
                p.kill()  # the pid namespace's init: its death kills the whole namespace
        try:
            self.procs["launcher"].wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.procs["launcher"].kill()
            self.reasons.append("the sandbox launcher had to be killed")

    def _record_survivor(self, p: psutil.Process, stage: str) -> None:
        try:
            argv = p.cmdline()
            info = {
                "stage": stage,
                "ppid": p.ppid(),
                "status": p.status(),
                "session": os.getsid(p.pid),
                "create_time": p.create_time(),
            }
        except (psutil.Error, OSError):
            return
        self.harness.write(kind="survivor", pid=p.pid, argv=argv, detail=info)

    def _stop_sensors(self) -> None:
        sup = self.procs["exec_net"]
        try:
            sup.wait(timeout=10)  # it exits by itself once no process uses the filter
        except subprocess.TimeoutExpired:
            sup.kill()
            self.reasons.append("the seccomp supervisor did not finish")
        fs = self.procs["fswatch"]
        if fs.poll() is None:
            fs.terminate()
            try:
                fs.wait(timeout=30)
            except subprocess.TimeoutExpired:
                fs.kill()
        for name, lossy_counters in (
            ("exec_net", {"read_errors"}),
            ("fswatch", {"overflows"} | ({"watch_errors"} if self.sensors.get("file_sensor") == "inotify" else set())),
        ):
            counts = None
            for line in self.procs[name].stdout.read().splitlines():
                msg = json.loads(line)
                counts = msg.get("counts", counts)
            if counts is None:
                self.health.write(sensor=name, counter="final_report_missing", value=1, lossy=True)
                if not any(name in r for r in self.reasons):
                    self.reasons.append(f"sensor {name} ended without its final report")
                continue
            for counter in sorted(set(counts) | lossy_counters):
                value = int(counts.get(counter, 0))
                lossy = counter in lossy_counters
                self.health.write(sensor=name, counter=counter, value=value, lossy=lossy)
                if lossy and value:
                    self.reasons.append(f"sensor {name}: {counter} = {value}")


def run_monitored(spec: RunSpec) -> RunOutcome:
    return Monitor(spec).run()


def copy_into_workspace(src: Path, workspace: Path) -> None:
    """Copy a plain task folder into the workspace (tests and the built-in demo task)."""
    shutil.copytree(src, workspace, dirs_exist_ok=True)
