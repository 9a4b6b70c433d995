"""Step 8, score: the caller's post-agent steps (parsing the agent's event stream, official
scoring: audit/ and harness/scoring.py), each with journals of its own sealed with the rest."""

from __future__ import annotations

from onegc.harness.spec import BeforeSeal
from onegc.harness.steps.state import LiveRun


def score(run: LiveRun) -> None:
    post = BeforeSeal(run.spec, run.start_mono, run.deadline_mono)
    for step in run.spec.before_seal:
        step(post)
    for j in post.journals.values():
        j.close()
    run.reasons += post.reasons
