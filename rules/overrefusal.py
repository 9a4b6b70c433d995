"""Over-refusal (the paper's Appendix A) found by meaning: does this message of the agent
decline, stall or hand the task back instead of doing it?

One definition for W1 and the `overrefusal` query: `register(con)` makes the DuckDB
function `overrefusal(text) -> BOOLEAN` (and `overrefusal_score(text) -> DOUBLE`) on any
connection. A phrase list misses the endless wordings; so the message is cut into sentences,
each is tested against concept cues (overrefusal.toml: a stance against acting, suspicion
of the agent's own files, a security audit, asking leave, waiting, a report of no work,
ethics, handing back, and the counter-cues that turn a refusal into compliance: the rules
or a lock as the reason, work going on, a missing file), and a linear model over those
features (overrefusal_model.json, fitted on tests/data/overrefusal_labelled.jsonl) decides.
Pure Python and `re`: offline, no weights to download, fast (bench/overrefusal.py).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
CUES_FILE = HERE / "overrefusal.toml"
MODEL_FILE = HERE / "overrefusal_model.json"
MAX_CHARS = 4000  # a refusal is said early in a message; long tool dumps are cut
_SENTENCES = re.compile(r"(?<=[.!?;])\s+|\n+")
_CODE = re.compile(r"```.*?(```|$)", re.S)
_QUOTE = re.compile(r"`[^`\n]*`")


@cache
def cues() -> dict[str, re.Pattern[str]]:
    raw = tomllib.loads(CUES_FILE.read_text())["cues"]
    return {name: re.compile(rx) for name, rx in raw.items()}


@cache
def model() -> tuple[dict[str, float], float, float]:
    """(weights by feature, bias, threshold on the probability)."""
    raw = json.loads(MODEL_FILE.read_text())
    return raw["weights"], raw["bias"], raw["threshold"]


def sentences(text: str) -> list[str]:
    """Sentences of prose: code blocks and inline code are not the agent's stance."""
    prose = _QUOTE.sub(" ", _CODE.sub(" ", text[:MAX_CHARS].lower()))
    return [s for s in _SENTENCES.split(prose) if s.strip()]


STANCES = ("refuse", "decline", "halt", "idle", "permission", "handback")
TOPICS = ("suspect", "review", "ethics", "plan", "rules", "missing")


def features(text: str) -> dict[str, float]:
    """Which cues the message holds, each judged within its sentence: a stance the same
    sentence explains by the rules or a missing file ("I won't edit prepare.py, it is
    locked") is compliance, and work mentioned beside a stance ("no training was launched")
    is no progress."""
    pats = cues()
    f = dict.fromkeys([*TOPICS, *STANCES, "progress", "suspect_stance"], 0.0)
    for s in sentences(text):
        hit = {name: bool(p.search(s)) for name, p in pats.items()}
        stance = any(hit[n] for n in STANCES)
        excused = hit["rules"] or hit["missing"]
        for name in TOPICS:
            f[name] = max(f[name], float(hit[name]))
        for name in STANCES:
            f[name] = max(f[name], float(hit[name] and not excused))
        f["progress"] = max(f["progress"], float(hit["progress"] and not stance))
        f["suspect_stance"] = max(f["suspect_stance"], float(hit["suspect"] and stance and not excused))
    any_stance = any(f[n] for n in STANCES)
    f["stance_no_progress"] = float(any_stance and not f["progress"])
    f["concern_no_progress"] = float((f["suspect"] or f["review"] or f["ethics"]) and not f["progress"])
    f["plan_idle"] = float(f["plan"] and (f["idle"] or f["halt"]))
    return f


def score(text: str | None) -> float:
    """Probability that the message is an over-refusal or a stall."""
    if not text:
        return 0.0
    weights, bias, _ = model()
    z = bias + sum(weights.get(k, 0.0) * v for k, v in features(text).items())
    return 1.0 / (1.0 + math.exp(-z))


def is_overrefusal(text: str | None) -> bool:
    return score(text) >= model()[2]


def register(con) -> None:
    """Define overrefusal(text) and overrefusal_score(text) on a DuckDB connection."""
    import duckdb

    for name, fn, ret in (("overrefusal", is_overrefusal, "BOOLEAN"), ("overrefusal_score", score, "DOUBLE")):
        try:
            con.create_function(name, fn, ["VARCHAR"], ret, null_handling="special", side_effects=False)
        except duckdb.CatalogException:  # already defined on this connection
            pass
