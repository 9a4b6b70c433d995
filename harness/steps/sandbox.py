"""Step 1, prepare the sandbox: the run's folders owned by its own uid, its cgroup, the
agent's environment and the view it will see (harness/view.py)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from onegc.evidence.layout import HOME, PRIVATE_SCRATCH
from onegc.harness import view
from onegc.harness.cgroup import RunCgroup
from onegc.harness.spec import HarnessError, RunSpec
from onegc.harness.steps.state import LiveRun

# Passed through to the agent: the GPU it may use, and the host's numeric-library settings
# (some CPUs need OPENBLAS_CORETYPE for correct results).
PASS_ENV = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LANG", "TERM", "OPENBLAS_CORETYPE",
            "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # fmt: skip


def prepare(run: LiveRun) -> None:
    spec = run.spec
    view.prepare_assembly()
    _prepare_dirs(spec)
    run.cgroup = RunCgroup.create(f"{spec.label}-{spec.task}-r{spec.rep}-{os.getpid()}")
    run.sensors["cgroup"] = run.cgroup is not None
    if run.cgroup is None:
        run.reasons.append("no writable cgroup v2: the tree is tracked by its pid namespace only")
    run.env = agent_env(spec)
    login_profile(spec, run.env)  # host-side writes in the run's folders end here
    run.sandbox = agent_view(spec)
    try:
        view.check(run.sandbox)
    except OSError as exc:
        raise HarnessError(f"cannot build the agent's view: {exc}") from None


def chown_tree(root: Path, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), uid, uid)
    os.chown(root, uid, uid)


def _prepare_dirs(spec: RunSpec) -> None:
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


def agent_path() -> str:
    """The agent's PATH: the task's interpreter first (benches run their baselines with it too)."""
    return f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"


def agent_env(spec: RunSpec) -> dict[str, str]:
    home = spec.layout.home
    cache = home / ".cache"
    env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
    env.update(
        PATH=agent_path(),
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


def agent_view(spec: RunSpec) -> view.ViewSpec:
    """What the agent sees: the runtime and its program read-only, its workspace and scratch
    read-write, private /tmp, /var/tmp, /dev/shm from its scratch."""
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
