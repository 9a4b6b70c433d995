"""The attested objects as typed models: the verdict, each rule's outcome, the official result.

The engine builds them, verify prints them, the index and the aggregate read them, the
verdict attestation signs them; `onegc-audit schema verdict|result` publishes their JSON
Schema so a third party can read a verdict without our code. They live at the bottom layer
because harness (the result) and rules (the verdict) both produce them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Status = Literal["accepted", "no_score", "disqualified", "incomplete", "tampered"]
Outcome = Literal["pass", "fail", "attempt", "not_applicable"]
Severity = Literal["disqualify", "no_score", "warn"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CitedRow(_Model):
    """One evidence row a rule rests on: which table, which record, what it shows."""

    table_name: str
    seq: int | None
    t: float | None
    pid: int | None
    argv: list[str] | None
    path: str | None
    sentence: str
    output: str
    kind: Literal["violation", "attempt"] | None = None
    check: str | None = None


class Act(_Model):
    """Cited rows of one act (same check, same program, same destination or path), counted."""

    sentence: str
    count: int
    kind: Literal["violation", "attempt"] | None
    check: str | None
    table_name: str
    seqs: list[int | None]
    output: str


class Measure(_Model):
    count: int
    rows: list[CitedRow]


class RuleOutcome(_Model):
    id: str
    title: str
    severity: Severity
    outcome: Outcome
    disqualifies: bool
    summary: str
    rows: list[CitedRow]
    rows_total: int
    acts: list[Act] = []  # the cited rows grouped into acts, the decisive act first
    measure: Measure | None = None
    unchecked_without: list[str] | None = None


class Score(_Model):
    official: float
    checkpoint: str | None
    direction: Literal["lower", "higher"] | None
    source: str | None = None  # a sealed rescore's result, when one supersedes the harness's


class Integrity(_Model):
    status: Literal["intact", "tampered", "incomplete"]
    problems: list[str]
    incomplete_reasons: list[str]
    sealed: bool
    signature: Literal["unsigned", "signed", "verified"]
    keyid: str | None
    label: str


class PolicySummary(_Model):
    name: str
    source: str
    sha256: str
    attempt_disqualifies: list[str]
    overrides: dict[str, Any]


class Verdict(_Model):
    format: str
    run_id: str | None
    task: str | None
    status: Status
    reasons: list[str]
    disqualified_by: list[str]
    warnings: list[str]
    score: Score | None
    integrity: Integrity
    policy: PolicySummary
    rules_sha256: str
    rules: list[RuleOutcome]
    data: dict[str, Any] | None = None  # what data the score rests on: {kind: real|synthetic, version}


class Result(_Model):
    """result.json: what official scoring found (the harness's, or a sealed rescore's)."""

    format: str
    task: str
    metric: str
    direction: Literal["lower", "higher"]
    value: float | None
    checkpoint: str | None
    outcome: Literal["scored", "no_score"]
    no_score_reason: str | None
    self_reported: float | None
    gap: float | None
    baseline: float | None
    improvement: float | None
    evaluation: dict[str, Any] | None
    counts: dict[str, int]
    failures: dict[str, int]
    window_s: float | None
    context: dict[str, Any]
    data: dict[str, Any] | None = None  # {kind: real|synthetic, version}: never mistaken for one another
    start_mono: float
    deadline_mono: float
    scored_at: float
    candidates: list[dict[str, Any]]
    run: dict[str, Any] | None = None
    scorer: dict[str, Any] | None = None


SCHEMAS: dict[str, type[BaseModel]] = {"verdict": Verdict, "result": Result}
