"""Steps 2 and 6, start and stop the sensors: the file sensor on the run's own filesystems
(harness/runfs.py, fanwatch.py; inotify, fswatch.py, where those cannot start), the seccomp
supervisor (execs, connections), the resource sampler; at the end each sensor's final counts
go into sensor_health and the run's filesystems back into plain folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from onegc.evidence.journal import Journal, journal_path
from onegc.harness.runfs import RunFs
from onegc.harness.steps.state import LiveRun


def start(run: LiveRun) -> None:
    _start_file_sensor(run)
    ctl_r, run.fds["ctl_w"] = os.pipe()
    run.fds["ack_r"], ack_w = os.pipe()
    _spawn(run, "exec_net", "onegc.harness.supervisor", str(run.spec.run_dir), str(ctl_r), str(ack_w),
           str(os.getpid()), pass_fds=(ctl_r, ack_w))  # fmt: skip
    os.close(ctl_r)
    os.close(ack_w)


def start_sampler(run: LiveRun) -> None:
    samples = Journal(journal_path(run.spec.run_dir, "resource_samples"), "resource_samples")
    run.sampler = threading.Thread(target=_sample_loop, args=(run, samples), daemon=True)
    run.sampler.start()


def stop(run: LiveRun) -> None:
    run.stop_sampler.set()
    if run.sampler is not None:
        run.sampler.join()
    _stop_sensors(run)
    _detach_runfs(run)


def ready(run: LiveRun, name: str) -> bool:
    line = run.procs[name].stdout.readline()
    ok = bool(line) and json.loads(line).get("ready") is True
    run.sensors[name] = ok
    if not ok:
        run.reasons.append(f"sensor {name} failed to start")
    return ok


def watch_roots(run: LiveRun) -> list[list]:
    """The only places the agent can write (its view holds nothing else writable), so every
    event there is the run's own and no other process's write can be cited against it."""
    spec = run.spec
    return [["workspace", str(spec.workspace), True], ["scratch", str(spec.scratch), True]]


def _start_file_sensor(run: LiveRun) -> None:
    """fanotify on the run's own filesystems (a pid per event, nothing lost) where the kernel
    and a cgroup allow; inotify otherwise."""
    spec, roots = run.spec, watch_roots(run)
    if run.cgroup is not None and spec.file_sensor != "inotify":
        error = _start_fanotify(run, roots)
        if error is None:
            return
        run.health.write(sensor="fswatch", counter="fanotify_unavailable", value=1, lossy=False)
        run.harness.write(kind="file_sensor_fallback", detail={"error": error})
    _spawn(run, "fswatch", "onegc.harness.fswatch", str(spec.run_dir), str(os.getpid()), json.dumps(roots))
    ready(run, "fswatch")
    run.sensors["file_sensor"] = "inotify"


def _start_fanotify(run: LiveRun, roots: list[list]) -> str | None:
    """Mount the run's own filesystems and mark them; None once watched, else why not (and
    the folders are plain folders again)."""
    spec = run.spec
    runfs = RunFs(spec.layout, [(label, Path(path)) for label, path, _rec in roots])
    try:
        runfs.attach()
    except OSError as exc:
        return str(exc)
    proc = _spawn(run, "fswatch", "onegc.harness.fanwatch", str(spec.run_dir), str(os.getpid()),
                  str(run.cgroup.path), json.dumps([[label, path] for label, path, _rec in roots]))  # fmt: skip
    line = proc.stdout.readline()
    msg = json.loads(line) if line else {}
    if msg.get("ready") is True:
        run.runfs = runfs
        run.sensors["fswatch"] = True
        run.sensors["file_sensor"] = "fanotify"
        return None
    proc.wait()
    runfs.detach()
    return msg.get("error", "no answer")


def _spawn(run: LiveRun, name: str, module: str, *args: str, pass_fds: tuple = ()) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        pass_fds=pass_fds,
        text=True,
    )
    run.procs[name] = proc
    return proc


def gpu_memory(pids: set[int]) -> int | None:
    """GPU memory used by `pids` (nvidia-smi), None where there is no NVIDIA GPU."""
    if not pids or shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    total = 0
    for line in out.splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and int(pid) in pids and mib.strip().isdigit():
            total += int(mib) * 2**20
    return total


def _sample_loop(run: LiveRun, journal: Journal) -> None:
    try:
        while not run.stop_sampler.wait(run.spec.sample_interval_s):
            pids = run.tree_pids()
            rss = 0
            for pid in pids:
                try:
                    rss += psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    pass
            cpu = run.cgroup.cpu_seconds() if run.cgroup else None
            journal.write(nprocs=len(pids), cpu_s=cpu, rss_bytes=rss, gpu_mem_bytes=gpu_memory(set(pids)))
    finally:
        journal.close()


def _stop_sensors(run: LiveRun) -> None:
    sup = run.procs["exec_net"]
    try:
        sup.wait(timeout=10)  # it exits by itself once no process uses the filter
    except subprocess.TimeoutExpired:
        sup.kill()
        run.reasons.append("the seccomp supervisor did not finish")
    fs = run.procs["fswatch"]
    if fs.poll() is None:
        fs.terminate()
        try:
            fs.wait(timeout=30)
        except subprocess.TimeoutExpired:
            fs.kill()
    inotify = run.sensors.get("file_sensor") == "inotify"
    for name, lossy_counters in (
        ("exec_net", {"read_errors"}),
        ("fswatch", {"overflows"} | ({"watch_errors"} if inotify else set())),
    ):
        counts = None
        for line in run.procs[name].stdout.read().splitlines():
            msg = json.loads(line)
            counts = msg.get("counts", counts)
        if counts is None:
            run.health.write(sensor=name, counter="final_report_missing", value=1, lossy=True)
            if not any(name in r for r in run.reasons):
                run.reasons.append(f"sensor {name} ended without its final report")
            continue
        for counter in sorted(set(counts) | lossy_counters):
            value = int(counts.get(counter, 0))
            lossy = counter in lossy_counters
            run.health.write(sensor=name, counter=counter, value=value, lossy=lossy)
            if lossy and value:
                run.reasons.append(f"sensor {name}: {counter} = {value}")


def _detach_runfs(run: LiveRun) -> None:
    """The run's filesystems back into plain folders (every process of the run is gone)."""
    if run.runfs is None:
        return
    t = time.monotonic()
    try:
        run.runfs.detach()
    except OSError as exc:
        run.reasons.append(f"the run's filesystems could not be copied back ({exc}); they stay in "
                           f"{run.spec.layout.fs_dir}")  # fmt: skip
        return
    run.harness.write(kind="runfs_detached", detail={"seconds": round(time.monotonic() - t, 3)})
