"""Official scoring of a run (paper section 3.3, Step 5), trusting nothing the agent wrote.

Candidates are the files in ``workspace/checkpoints`` whose writing the file sensor saw
before the deadline (the harness's own clock and journal; an mtime is the agent's to set).
What is evaluated are the bytes copied at the end-of-run freeze (``harness/freeze.py``,
``RUN_DIR/frozen``) with the sources frozen beside them, never the workspace as it is later;
a candidate whose end state differs from its frozen copy was changed after the deadline.
Selection is the paper's: the best by self-reported score, then the rest clustered into
5-minute windows keeping the best of each. Every selected candidate is copied, with the
workspace's Python sources, into a fresh evaluation folder (the workspace is never touched)
and scored by an injected evaluator; the harness never imports the tasks, so the caller
(audit) passes ``evaluate(checkpoint, script_dir) -> dict`` wrapping the task registry.

Every checkpoint found gets a row in the sealed ``scores`` table; ``result.json`` carries the
paper's result (task, metric, value, checkpoint) plus how it was reached.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from onegc.evidence.journal import Journal, check_chain, journal_path
from onegc.evidence.layout import CHECKPOINTS, RESCORE_DIR, RESULT_NAME, RunLayout
from onegc.evidence.seal import sha256_file
from onegc.harness.freeze import SOURCES, FrozenMismatch, load_frozen

Evaluator = Callable[[Path, Path], dict[str, Any]]
RESULT_FORMAT = "onegc-result-1"
WINDOW_S = 300.0
# Events that end a write to a path (the content then is what was written), and those
# that show the content was (being) changed at that moment.
_COMPLETED = {"close_write", "moved_to", "rescan_found"}
_WRITES = _COMPLETED | {"create", "modify"}


@dataclass(frozen=True)
class ScoringPolicy:
    """What the scorer must know about the task; supplied by audit from the task metadata."""

    task: str
    metric: str
    direction: str  # "higher" or "lower"
    baseline: float | None = None
    window_s: float = WINDOW_S
    context: dict[str, Any] = field(default_factory=dict)  # copied into result.json (data used)
    data: dict[str, Any] | None = None  # result.json's `data`: {"kind": "real"|"synthetic", "version": ...}
    eval_reference_cpu_s: float | None = None  # the baseline's evaluation, copied into rows for R6

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "higher" else a < b

    def claim_gap(self, self_reported: float, official: float) -> float:
        """Positive when the agent claimed better than the evaluator found."""
        d = self_reported - official
        return d if self.direction == "higher" else -d


@dataclass
class Candidate:
    """One file found in checkpoints/ and what became of it (a ``scores`` row)."""

    path: str
    observed_t: float | None = None
    observed_mono: float | None = None
    after_deadline: bool = False
    sha256: str | None = None
    self_reported: float | None = None
    selected_by: str = "not_selected"
    window: int | None = None
    official: float | None = None
    failure: str | None = None
    detail: str | None = None
    eval_seconds: float | None = None
    eval_wall_s: float | None = None
    eval_cpu_s: float | None = None
    eval_gpu_s: float | None = None
    eval_limit_s: float | None = None
    eval_reference_cpu_s: float | None = None
    frozen_sha256: str | None = None
    frozen_nlink: int | None = None
    changed_after_freeze: bool | None = None
    gap: float | None = None
    evaluation: dict[str, Any] | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("evaluation")
        return d


def verified_records(path: Path, table: str) -> list[dict[str, Any]]:
    """The records of a journal up to the first break of its hash chain."""
    if not path.exists():
        return []
    n = check_chain(path, table).records
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for _, line in zip(range(n), fh, strict=False):
            out.append(json.loads(line))
    return out


def observed_writes(events: Iterable[dict[str, Any]], workspace: Path) -> dict[str, dict[str, Any]]:
    """Per checkpoint path (relative to the workspace): its last write event and whether any
    write was ever completed (close_write/moved_to) or seen by a rescan."""
    ckpt_dir = str(workspace / CHECKPOINTS) + os.sep
    out: dict[str, dict[str, Any]] = {}
    for ev in events:
        path = ev.get("path") or ""
        if ev.get("root") != "workspace" or ev.get("is_dir") or not path.startswith(ckpt_dir):
            continue
        if ev.get("event") not in _WRITES:
            continue
        rel = os.path.relpath(path, workspace)
        seen = out.setdefault(rel, {"completed": False})
        seen.update(t=ev["t"], mono=ev["mono"], event=ev["event"])
        seen["completed"] |= ev["event"] in _COMPLETED
    return out


def checkpoint_files(workspace: Path) -> list[str]:
    """Regular files under checkpoints/ (hidden temp files and symlinks are not checkpoints)."""
    root = workspace / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath, name)
            if name.startswith(".") or p.is_symlink() or not p.is_file():
                continue
            found.append(str(p.relative_to(workspace)))
    return found


def read_self_reported(path: Path) -> tuple[float | None, str | None]:
    """(self_reported_score, problem) from a taskkit checkpoint, read without running code
    (``weights_only``). torch is imported here only: scoring needs it, the harness does not."""
    try:
        import torch
    except ImportError:
        return None, "torch is not installed: cannot read self-reported scores"
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        return None, f"unreadable: {type(exc).__name__}: {str(exc)[:300]}"
    if not isinstance(ckpt, dict):
        return None, "not a checkpoint dict"
    score = ckpt.get("self_reported_score")
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        return None, f"no finite self_reported_score ({score!r})"
    return float(score), None


def find_candidates(
    workspace: Path,
    events: Iterable[dict[str, Any]],
    deadline_mono: float,
    recorded_workspace: Path | None = None,
    frozen: dict[str, Any] | None = None,
) -> list[Candidate]:
    """Every checkpoint file, with when the harness saw it written relative to the deadline.
    ``recorded_workspace``: the workspace path the events name (a run dir may have moved).
    With a ``frozen`` manifest, the frozen checkpoints are the candidates; a file found only
    in the workspace appeared after the freeze."""
    writes = observed_writes(events, recorded_workspace or workspace)
    frozen_ckpts = (frozen or {}).get("checkpoints") or {}
    names = sorted(set(checkpoint_files(workspace)) | set(frozen_ckpts))
    cands = []
    for rel in names:
        c = Candidate(rel)
        info = frozen_ckpts.get(rel)
        if info is not None:
            c.frozen_sha256, c.frozen_nlink = info["sha256"], info.get("nlink")
        seen = writes.get(rel)
        if frozen is not None and info is None:
            c.selected_by = "after_deadline"
            c.after_deadline = True
            c.detail = "not present at the end-of-run freeze: not a candidate"
        elif seen is None or not seen["completed"]:
            c.selected_by = "not_observed"
            c.detail = "the file sensor never saw this file written: not a candidate"
        else:
            c.observed_t, c.observed_mono = seen["t"], seen["mono"]
            if seen["mono"] > deadline_mono:
                c.after_deadline = True
                c.selected_by = "after_deadline"
                c.detail = (
                    f"last written {seen['mono'] - deadline_mono:.1f} s after the deadline "
                    f"({seen['event']}); its mtime is irrelevant"
                )
        cands.append(c)
    return cands


def select(cands: list[Candidate], policy: ScoringPolicy, start_mono: float) -> list[Candidate]:
    """The paper's selection among valid candidates: the overall best by self-reported score,
    then the best of every ``window_s`` window of the rest. Returns those selected."""
    valid = [c for c in cands if c.selected_by == "not_selected" and c.self_reported is not None]
    for c in valid:
        c.window = int(max(0.0, (c.observed_mono or start_mono) - start_mono) // policy.window_s)

    def key(c: Candidate) -> tuple[float, float]:
        s = c.self_reported if policy.direction == "higher" else -c.self_reported  # type: ignore[operator]
        return (s, c.observed_mono or 0.0)  # ties: the later one (more training)

    chosen: list[Candidate] = []
    if not valid:
        return chosen
    best = max(valid, key=key)
    best.selected_by = "best_self_reported"
    chosen.append(best)
    by_window: dict[int, Candidate] = {}
    for c in valid:
        if c is best:
            continue
        w = c.window or 0
        if w not in by_window or key(c) > key(by_window[w]):
            by_window[w] = c
    for w in sorted(by_window):
        by_window[w].selected_by = "window"
        chosen.append(by_window[w])
    return chosen


def _copy_sources(workspace: Path, dest: Path) -> None:  # the sources (workspace or frozen/sources)
    """The workspace's top-level .py files and Python packages: what taskkit's evaluator
    stages as the agent's code. Nothing else (data, checkpoints) is copied."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in sorted(workspace.iterdir()):
        if item.is_symlink():
            continue
        if item.is_file() and item.suffix == ".py":
            shutil.copy2(item, dest / item.name)
        elif item.is_dir() and (item / "__init__.py").is_file():
            shutil.copytree(
                item,
                dest / item.name,
                symlinks=False,
                ignore=lambda d, names: [
                    n for n in names if not (n.endswith(".py") or (Path(d) / n).is_dir())
                ],
            )


def evaluate_candidate(
    c: Candidate,
    workspace: Path,
    evaluate: Evaluator,
    policy: ScoringPolicy,
    eval_root: Path,
    after_hashes: dict[str, str],
    frozen_dir: Path | None = None,
) -> None:
    """Copy the checkpoint and the sources (the frozen copies when there are) into a fresh
    folder and score the copy."""
    eval_dir = Path(tempfile.mkdtemp(prefix="cand-", dir=eval_root))
    try:
        scripts = eval_dir / "scripts"
        _copy_sources(frozen_dir / SOURCES if frozen_dir else workspace, scripts)
        ckpt = eval_dir / "checkpoint" / Path(c.path).name
        ckpt.parent.mkdir()
        shutil.copyfile((frozen_dir or workspace) / c.path, ckpt)
        c.sha256 = sha256_file(ckpt)
        if frozen_dir is not None and c.sha256 != c.frozen_sha256:
            c.failure = "changed_since_run"
            c.detail = "the frozen copy no longer matches the hash taken at the freeze"
            return
        expected = after_hashes.get(c.path)
        if frozen_dir is None and expected is not None and expected != c.sha256:
            c.failure = "changed_since_run"
            c.detail = "its bytes differ from the snapshot taken when the agent phase ended"
            return
        c.eval_reference_cpu_s = policy.eval_reference_cpu_s
        t0 = time.monotonic()
        try:
            result = evaluate(ckpt, scripts)
        except Exception as exc:  # an evaluator that neither scores nor classifies
            c.failure, c.detail = "evaluator_error", f"{type(exc).__name__}: {str(exc)[-1500:]}"
            return
        finally:
            c.eval_seconds = round(time.monotonic() - t0, 3)
        c.evaluation = result
        for key in ("eval_wall_s", "eval_cpu_s", "eval_gpu_s", "eval_limit_s"):
            value = result.get(key)
            setattr(c, key, float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None)
        if "error" in result:
            c.failure = str(result["error"])
            c.detail = str(result.get("detail", ""))[:4000]
            return
        value = result.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            c.failure, c.detail = "bad_result", f"evaluator returned no finite value: {result!r}"[:4000]
            return
        c.official = float(value)
        if c.self_reported is not None:
            c.gap = policy.claim_gap(c.self_reported, c.official)
    finally:
        shutil.rmtree(eval_dir, ignore_errors=True)


def improvement(value: float, baseline: float | None, direction: str) -> float | None:
    """Eq. 1 of the paper for one score: the baseline-relative improvement."""
    if baseline in (None, 0):
        return None
    d = (value - baseline) / baseline
    return d if direction == "higher" else -d


def score(
    *,
    workspace: Path,
    events: Iterable[dict[str, Any]],
    snapshot_rows: Iterable[dict[str, Any]],
    start_mono: float,
    deadline_mono: float,
    evaluate: Evaluator,
    policy: ScoringPolicy,
    recorded_workspace: Path | None = None,
    frozen_dir: Path | None = None,
) -> tuple[list[Candidate], dict[str, Any]]:
    """Find, select and evaluate; return the rows and the result (without run identity).
    ``frozen_dir``: the run's end-of-run freeze (``RUN_DIR/frozen``), verified against its
    manifest; what is scored comes from there when given."""
    frozen = load_frozen(frozen_dir.parent) if frozen_dir is not None else None
    if frozen is None:
        frozen_dir = None
    cands = find_candidates(workspace, events, deadline_mono, recorded_workspace, frozen)
    after = {
        r["path"]: r["sha256"]
        for r in snapshot_rows
        if r.get("phase") == "after" and r.get("scope") == "workspace" and r.get("kind") == "file"
    }
    for c in cands:
        if c.frozen_sha256 is not None:
            end = after.get(c.path)
            c.changed_after_freeze = end is not None and end != c.frozen_sha256
            if end is None and (workspace / c.path).is_file():
                c.changed_after_freeze = sha256_file(workspace / c.path) != c.frozen_sha256
            if c.changed_after_freeze:
                c.detail = "its bytes at the end of the run differ from the copy frozen at the deadline"
        if c.selected_by == "not_selected":
            c.self_reported, problem = read_self_reported((frozen_dir or workspace) / c.path)
            if c.self_reported is None:
                c.selected_by, c.detail = "no_self_report", problem
    chosen = select(cands, policy, start_mono)
    with tempfile.TemporaryDirectory(prefix="onegc-score-") as tmp:
        os.chmod(tmp, 0o700)
        for c in chosen:
            evaluate_candidate(c, workspace, evaluate, policy, Path(tmp), after, frozen_dir)
    scored = [c for c in chosen if c.official is not None]
    best = None
    for c in scored:
        if best is None or policy.better(c.official, best.official):  # type: ignore[arg-type]
            best = c
    counts = {
        "found": len(cands),
        "after_deadline": sum(c.after_deadline for c in cands),
        "changed_after_freeze": sum(bool(c.changed_after_freeze) for c in cands),
        "not_observed": sum(c.selected_by == "not_observed" for c in cands),
        "no_self_report": sum(c.selected_by == "no_self_report" for c in cands),
        "evaluated": len(chosen),
        "scored": len(scored),
    }
    failures: dict[str, int] = {}
    for c in chosen:
        if c.failure:
            failures[c.failure] = failures.get(c.failure, 0) + 1
    if best is not None:
        reason = None
    elif not cands:
        reason = "no checkpoint in checkpoints/"
    elif not chosen:
        reason = "no checkpoint written before the deadline with a self-reported score"
    else:
        reason = "every candidate failed evaluation: " + ", ".join(
            f"{k} ({v})" for k, v in sorted(failures.items())
        )
    result: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "task": policy.task,
        "metric": policy.metric,
        "direction": policy.direction,
        "value": best.official if best else None,
        "checkpoint": best.path if best else None,
        "outcome": "scored" if best else "no_score",
        "no_score_reason": reason,
        "self_reported": best.self_reported if best else None,
        "gap": best.gap if best else None,
        "baseline": policy.baseline,
        "improvement": improvement(best.official, policy.baseline, policy.direction) if best else None,
        "evaluation": best.evaluation if best else None,
        "counts": counts,
        "failures": failures,
        "window_s": policy.window_s,
        "context": policy.context,
        "data": policy.data,
        "start_mono": start_mono,
        "deadline_mono": deadline_mono,
        "scored_at": time.time(),
        "candidates": [c.row() for c in cands],
    }
    return cands, result


def _write(journal: Journal, cands: list[Candidate]) -> None:
    for c in cands:
        journal.write(**c.row())


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def run_identity(start_detail: dict[str, Any]) -> dict[str, Any]:
    return {k: start_detail.get(k) for k in ("run_id", "label", "task", "rep", "budget_s")}


def scoring_step(evaluate: Evaluator, policy: ScoringPolicy) -> Callable[[Any], None]:
    """A ``before_seal`` step: score the run, write the ``scores`` journal and result.json
    (both sealed with the rest). A scorer crash yields ``no_score`` with the reason, never
    an unsealed run: ``onegc-audit score`` can redo it later."""

    def step(post: Any) -> None:
        spec = post.spec
        run_dir: Path = spec.run_dir
        ident = {"run_id": f"{spec.label}/{spec.task}/r{spec.rep}", "label": spec.label,
                 "task": spec.task, "rep": spec.rep, "budget_s": spec.budget_s}  # fmt: skip
        try:
            cands, result = score(
                workspace=spec.workspace,
                events=verified_records(journal_path(run_dir, "file_events"), "file_events"),
                snapshot_rows=verified_records(journal_path(run_dir, "snapshots"), "snapshots"),
                start_mono=post.start_mono,
                deadline_mono=post.deadline_mono,
                evaluate=evaluate,
                policy=policy,
                frozen_dir=RunLayout(run_dir).frozen,
            )
        except Exception as exc:
            cands, result = [], {
                "format": RESULT_FORMAT, "task": policy.task, "metric": policy.metric,
                "direction": policy.direction, "value": None, "checkpoint": None,
                "outcome": "no_score", "no_score_reason": f"scoring failed: {type(exc).__name__}: {exc}",
                "context": policy.context, "data": policy.data, "scored_at": time.time(), "candidates": [],
            }  # fmt: skip
        _write(post.journal("scores"), cands)
        _write_json(run_dir / RESULT_NAME, {**result, "run": ident, "scorer": {"kind": "harness"}})

    return step


def rescore(
    run_dir: Path,
    evaluate: Evaluator,
    policy: ScoringPolicy,
    *,
    who: str,
    why: str,
    seal_addendum: Callable[[Path, dict[str, Any]], dict[str, Any]],
) -> Path:
    """Score a sealed run again from its sealed journals into ``rescore/<stamp>/`` (scores
    journal + result.json + its own manifest via ``seal_addendum``). Nothing sealed changes;
    the folder appears whole or not at all (built under a hidden name, then renamed)."""
    events = verified_records(journal_path(run_dir, "file_events"), "file_events")
    harness = verified_records(journal_path(run_dir, "harness_events"), "harness_events")
    start = next((r for r in harness if r.get("kind") == "start"), None)
    if start is None:
        raise ValueError(f"{run_dir}: no start event in the harness journal")
    detail = start.get("detail") or {}
    if isinstance(detail, str):
        detail = json.loads(detail)
    if load_frozen(run_dir) is None:  # verifies every frozen copy against the sealed manifest
        raise FrozenMismatch(
            f"{run_dir}: no frozen checkpoints and sources (run sealed before the end-of-run freeze)",
            hint="only the bytes frozen at the deadline are scored; this run cannot be rescored",
        )
    cands, result = score(
        workspace=RunLayout(run_dir).workspace,
        events=events,
        snapshot_rows=verified_records(journal_path(run_dir, "snapshots"), "snapshots"),
        start_mono=float(start["mono"]),
        deadline_mono=float(detail["deadline_mono"]),
        evaluate=evaluate,
        policy=policy,
        recorded_workspace=Path(detail["workspace"]) if detail.get("workspace") else None,
        frozen_dir=RunLayout(run_dir).frozen,
    )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    base = run_dir / RESCORE_DIR
    base.mkdir(exist_ok=True)
    work = base / f".{stamp}.partial"
    work.mkdir()
    journal = Journal(work / "scores.jsonl", "scores")
    _write(journal, cands)
    journal.close()
    previous = sorted(p.name for p in base.iterdir() if not p.name.startswith("."))
    supersedes = f"{RESCORE_DIR}/{previous[-1]}/{RESULT_NAME}" if previous else RESULT_NAME
    meta = {"who": who, "why": why, "when": time.time(), "supersedes": supersedes}
    _write_json(work / RESULT_NAME, {**result, "run": run_identity(detail),
                                      "scorer": {"kind": "rescore", **meta}})  # fmt: skip
    seal_addendum(work, {"kind": "rescore", **meta})
    final = base / stamp
    os.rename(work, final)
    return final


