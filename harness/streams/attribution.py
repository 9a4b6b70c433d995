"""Tying what the agent said it ran (tool calls) to what the machine saw (exec records).

A shell tool call is matched to the first unclaimed exec whose argv carries its command
(CLIs wrap it: `bash -c -l "... eval '<cmd>' ..."`, `/bin/bash -lc '<cmd>'`), inside the
call's time window when the stream gives one; every process that exec's pid starts
afterwards is the call's too: by the kernel's fork events (the `processes` table), so a
subshell that forks without exec passes its call on to what it starts, else by the exec
records' ppid chain. The agent's main process is `runtime`; everything else is
`unattributed`: the machine saw it, no tool call explains it.
"""

import os
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from onegc.harness.streams.model import ToolCall

SHELLS = {"sh", "bash", "dash", "zsh", "ash"}
SLACK_S = 2.0
WS = re.compile(r"\s+")


@dataclass
class Attribution:
    exec_seq: int
    pid: int
    call_id: str | None
    attribution: str
    """tool_call, runtime or unattributed."""
    how: str | None
    """command, descendant, probe (a failed PATH lookup before that process's exec), or None."""

    def row(self) -> dict:
        return {
            "exec_seq": self.exec_seq,
            "pid": self.pid,
            "call_id": self.call_id,
            "attribution": self.attribution,
            "how": self.how,
        }


def mentions(argv: list[str], command: str) -> bool:
    """Does this argv run `command`, as given or quoted the way shells and CLIs quote it?"""
    cmd = command.strip()
    if not cmd:
        return False
    variants = {cmd, cmd.replace("'", "'\\''"), cmd.replace("'", "'\"'\"'"), shlex.quote(cmd)}
    if any(v in arg for arg in argv for v in variants):
        return True
    flat = WS.sub(" ", " ".join(argv))
    return WS.sub(" ", cmd) in flat


def _in_window(call: ToolCall, t: float | None) -> bool:
    if t is None:
        return True
    if call.started_t is not None and t < call.started_t - SLACK_S:
        return False
    return not (call.ended_t is not None and t > call.ended_t + SLACK_S)


def attribute(
    execs: Iterable[dict], calls: list[ToolCall], processes: Iterable[dict] = ()
) -> list[Attribution]:
    """One Attribution per exec row, in seq order; fills each call's exec_seqs/exec_pids.
    `processes`: the run's fork events (kernel lineage), merged in by time."""
    # In the order the calls were made (records are written once their outcome is known).
    rows = sorted(execs, key=lambda r: (r.get("mono") or 0.0, r.get("seq", 0)))
    if not rows:
        return []
    runtime_pid = rows[0].get("pid")
    roots: dict[int, ToolCall] = {}
    claimed: set[int] = set()
    for call in calls:
        if not call.command:
            continue
        candidates = [
            r
            for r in rows
            if r["seq"] not in claimed
            and not r.get("probe")
            and r.get("pid") != runtime_pid
            and _in_window(call, r.get("t"))
            and mentions(r.get("argv") or [], call.command)
        ]
        if not candidates:
            continue
        shells = [r for r in candidates if os.path.basename((r.get("argv") or [""])[0]) in SHELLS]
        root = (shells or candidates)[0]
        claimed.add(root["seq"])
        roots[root["seq"]] = call
    owner: dict[int, ToolCall] = {}
    out: list[Attribution] = []
    forks = sorted(
        (p for p in processes if p.get("event") == "fork" and p.get("mono") is not None), key=lambda p: p["mono"]
    )
    fi = 0
    for r in rows:
        while fi < len(forks) and r.get("mono") is not None and forks[fi]["mono"] <= r["mono"]:
            child, parent = forks[fi]["pid"], forks[fi]["ppid"]
            if parent in owner:  # forked by a call's process: the call's, exec or not
                owner[child] = owner[parent]
            else:
                owner.pop(child, None)  # a reused pid starts afresh
            fi += 1
        pid, ppid, seq = r.get("pid"), r.get("ppid"), r["seq"]
        if seq in roots:
            call, how = roots[seq], "command"
            owner[pid] = call
        elif pid == runtime_pid:
            out.append(Attribution(seq, pid, None, "runtime", None))
            continue
        elif pid in owner:
            call, how = owner[pid], "descendant"
        elif ppid in owner:
            call, how = owner[ppid], "descendant"
            owner[pid] = call
        else:
            out.append(Attribution(seq, pid, None, "unattributed", None))
            continue
        call.exec_seqs.append(seq)
        if pid not in call.exec_pids:
            call.exec_pids.append(pid)
        out.append(Attribution(seq, pid, call.call_id, "tool_call", how))
    _probes_follow_their_exec(rows, out, {c.call_id: c for c in calls})
    for call in calls:
        call.exec_seqs.sort()
    return sorted(out, key=lambda a: a.exec_seq)


def _probes_follow_their_exec(rows: list[dict], out: list[Attribution], calls: dict[str, ToolCall]) -> None:
    """A failed PATH probe belongs to whatever the same process exec'd next."""
    for i, (r, a) in enumerate(zip(rows, out, strict=True)):
        if not r.get("probe") or a.attribution != "unattributed":
            continue
        nxt = next(
            (
                b
                for s, b in zip(rows[i + 1 :], out[i + 1 :], strict=True)
                if s.get("pid") == r.get("pid") and not s.get("probe")
            ),
            None,
        )
        if nxt is not None and nxt.call_id is not None:
            a.call_id, a.attribution, a.how = nxt.call_id, "tool_call", "probe"
            calls[nxt.call_id].exec_seqs.append(a.exec_seq)
