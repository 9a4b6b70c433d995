"""Over-refusal (the paper's Appendix A) found by meaning: does this message of the agent
decline, stall or hand the task back instead of doing the task?

A phrase list misses the endless wordings. Two halves, either of which flags:
- concept cues (overrefusal.toml): the message cut into sentences, each tested for a stance
  against acting, suspicion of the agent's own files, a security audit, asking leave,
  waiting for a person, a report of no work, ethics, handing back, and the counter-cues
  that make a stance compliance (the rules, a lock or the budget as its reason, work going
  on, a missing file); a linear model over those features decides. Precise, and it explains
  itself (overrefusal_features).
- word unigrams and bigrams in a linear model, flagging only above a margin: it carries the
  wordings no cue names (measured on fresh probes: the cues alone found 6 of 15, with the
  n-grams 13 of 15, no false alarm added).
Both are fitted on tests/data/overrefusal_labelled.jsonl by `bench/overrefusal.py --fit`
(weights in overrefusal_model.json).

One definition, in SQL: `register(con)` creates the DuckDB macros `overrefusal(text)` ->
BOOLEAN and `overrefusal_score(text)` -> DOUBLE that W1 calls on its run, that the index
refresh stores once per message as `messages.overrefusal` (audit/index.py DERIVED) for the
`overrefusal` query to read, and that the Python helpers below run too. RE2 does the work,
vectorised on every core; the cue half weighs only messages holding a trigger cue, the
n-gram half counts its negative weights only where the positive ones could reach the
threshold. Offline, nothing to download, fast (bench/overrefusal.py prints messages/s).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from functools import cache
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
CUES_FILE = HERE / "overrefusal.toml"
MODEL_FILE = HERE / "overrefusal_model.json"
MAX_CHARS = 4000  # a refusal is said early in a message; long dumps are cut
_WORD = re.compile(r"\w+", re.ASCII)  # RE2's \w: [0-9A-Za-z_]
STANCES = ("refuse", "decline", "halt", "idle", "permission", "handback")
CONCERNS = ("suspect", "review", "ethics")
TOPICS = (*CONCERNS, "plan", "rules", "missing")
TRIGGERS = (*STANCES, *CONCERNS)  # no message without one of these can score above the bias
TRIGGER_GROUP = 3  # trigger cues per RE2 regex
FEATURES = (*TOPICS, *STANCES, "progress", "suspect_stance", "stance_no_progress", "concern_no_progress",
            "plan_idle")


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@cache
def cues() -> dict[str, str]:
    return tomllib.loads(CUES_FILE.read_text())["cues"]


@cache
def model() -> dict:
    """{"weights": {feature: w}, "bias": b, "threshold": p}."""
    return json.loads(MODEL_FILE.read_text())


def _sql(fitted: bool = True) -> str:
    """The macros. Sentences: lower-cased prose (code blocks, inline code and comment lines
    removed: they are not the agent's stance) split at sentence ends; each sentence becomes the list of
    its cue hits `h`; features are judged within a sentence (a stance the same sentence
    explains by the rules or a missing file is excused; work named beside a stance, "no
    training was launched", is no progress), then over the message."""
    names = list(cues())
    missing = {*TRIGGERS, "plan", "rules", "missing", "progress"} - set(names)
    if missing:
        raise ValueError(f"{CUES_FILE.name}: cues missing: {sorted(missing)}")
    ix = {n: i + 1 for i, n in enumerate(names)}

    def h(name: str) -> str:
        return f"x[{ix[name]}]"

    def anys(cond: str) -> str:
        return f"coalesce(list_aggregate(list_transform(hh, lambda x: {cond}), 'bool_or'), false)"

    stance = "(" + " OR ".join(h(n) for n in STANCES) + ")"
    excused = f"({h('rules')} OR {h('missing')})"
    hits = ", ".join(f"regexp_matches(s, {_lit(cues()[n])})" for n in names)
    prose = f"lower(left(t, {MAX_CHARS}))"
    for pattern in ("(?s)```.*?(```|$)", "`[^`\\n]*`", "(?m)^[ \\t]*(#|//).*$"):
        prose = f"regexp_replace({prose}, {_lit(pattern)}, ' ', 'g')"
    feats = [f"{n} := {anys(h(n))}" for n in TOPICS]
    feats += [f"{n} := {anys(f'{h(n)} AND NOT {excused}')}" for n in STANCES]
    progress, suspect = h("progress"), h("suspect")
    feats += [f"progress := {anys(f'{progress} AND NOT ({stance} AND NOT {excused})')}",
              f"suspect_stance := {anys(f'{suspect} AND {stance} AND NOT {excused}')}"]
    out = [
        # the cues OR-ed a few to a regex: RE2 runs each as a DFA, while the union of all outgrows
        # its DFA budget on varied text and falls back to a slow NFA (30x slower; one cue per regex:
        # 2.5x slower than TRIGGER_GROUP, measured)
        f"CREATE OR REPLACE TEMP MACRO overrefusal_trigger(t) AS list_transform([lower(left(t, {MAX_CHARS}))], "
        "lambda s: " + " OR ".join(
            "regexp_matches(s, " + _lit("|".join(f"(?:{cues()[n]})" for n in TRIGGERS[i:i + TRIGGER_GROUP])) + ")"
            for i in range(0, len(TRIGGERS), TRIGGER_GROUP)) + ")[1];",
        f"CREATE OR REPLACE TEMP MACRO overrefusal_hits(t) AS list_transform(list_filter("
        f"string_split_regex({prose}, '[.!?]\\s+|\\n+'), lambda s: trim(s) <> ''), lambda s: [{hits}]);",
        # [h] binds the hits once: a macro parameter is pasted, and so computed, wherever it is named
        "CREATE OR REPLACE TEMP MACRO overrefusal_cue_features(h) AS list_transform([h], lambda hh: struct_pack("
        + ", ".join(feats) + "))[1];",
        "CREATE OR REPLACE TEMP MACRO overrefusal_features(t) AS list_transform([overrefusal_cue_features("
        "overrefusal_hits(t))], lambda f: struct_insert(f, "
        "stance_no_progress := (" + " OR ".join(f"f.{n}" for n in STANCES) + ") AND NOT f.progress, "
        "concern_no_progress := (" + " OR ".join(f"f.{n}" for n in CONCERNS) + ") AND NOT f.progress, "
        "plan_idle := f.plan AND (f.idle OR f.halt)))[1];",
    ]
    if fitted:
        m = model()
        z = " + ".join([repr(float(m["bias"]))] + [
            f"{float(m['weights'].get(n, 0.0))!r} * f.{n}::DOUBLE" for n in FEATURES])
        ng = m.get("ngrams")
        out += [
            "CREATE OR REPLACE TEMP MACRO overrefusal_cue_score(t) AS CASE WHEN t IS NULL "
            "OR NOT overrefusal_trigger(t) "
            f"THEN 0.0 ELSE list_transform([overrefusal_features(t)], lambda f: 1 / (1 + exp(-({z}))))[1] END;",
            f"CREATE OR REPLACE TEMP MACRO overrefusal_ngram_logit(t) AS {_ngram_sql(ng) if ng else 'NULL'};",
            f"CREATE OR REPLACE TEMP MACRO overrefusal_ngram_score(t) AS {_ngram_sql(ng, 'score') if ng else '0.0'};",
            f"CREATE OR REPLACE TEMP MACRO overrefusal_ngram(t) AS {_ngram_sql(ng, 'flag') if ng else 'false'};",
            "CREATE OR REPLACE TEMP MACRO overrefusal_score(t) AS "
            "greatest(overrefusal_cue_score(t), overrefusal_ngram_score(t));",
            # the same test as overrefusal_score(t) >= threshold, each half on its own, the n-gram half gated
            f"CREATE OR REPLACE TEMP MACRO overrefusal(t) AS overrefusal_cue_score(t) >= {float(m['threshold'])!r} "
            "OR overrefusal_ngram(t);",
        ]
    return "\n".join(out)


def grams(text: str) -> tuple[dict[str, int], int]:
    """Word unigrams and bigrams with their counts (words as RE2 sees them: runs of \\w in the
    lower-cased text), and the length the SQL scales by (space-separated chunks)."""
    low = text[:MAX_CHARS].lower()
    w = _WORD.findall(low)
    counts: dict[str, int] = {}
    for g in [*w, *(f"{a} {b}" for a, b in zip(w, w[1:], strict=False))]:
        counts[g] = counts.get(g, 0) + 1
    return counts, len(low.split(" "))


def _ngram_sql(ng: dict, what: str = "logit") -> str:
    """The n-gram half: a linear model over word unigram and bigram counts, scaled by
    1/sqrt(length), its weights in a few levels, each level one RE2 alternation of its grams
    (bigrams first, so that one is not taken for its first word) counted over the text.

    what: the logit, the score (its logistic beyond the margin) or the flag (score >=
    threshold). The flag is gated exactly: the negative levels can only lower the logit, so
    a text whose positive levels alone stay below the threshold is not flagged, and the
    negative levels (the costliest alternations, as they hold the commonest words) are
    counted only for the rest."""
    def counted(levels: list) -> str:
        terms = []
        for w, gs in levels:
            longest_first = sorted(gs, key=lambda g: -g.count(" "))
            alternation = "\\b(?:" + "|".join(g.replace(" ", "\\W+") for g in longest_first) + ")\\b"
            terms.append(f"{float(w)!r} * len(regexp_extract_all(s, {_lit(alternation)}))")
        return "(" + (" + ".join(terms) or "0") + ")"

    threshold, bias, margin = float(model()["threshold"]), float(ng["bias"]), float(ng["margin"])
    pos = counted([lv for lv in ng["levels"] if lv[0] > 0])
    neg = counted([lv for lv in ng["levels"] if lv[0] <= 0])
    logit = f"{bias!r} + (x.p + {neg}) / x.n"
    score = f"1 / (1 + exp(-({logit} - {margin!r})))"
    if what == "logit":
        body, null = logit, "NULL"
    elif what == "score":
        body, null = score, "0.0"
    else:  # the logit that reaches the threshold, less a rounding allowance: below it, no score can reach it
        floor = margin + math.log(threshold / (1 - threshold)) - 1e-9
        body, null = f"CASE WHEN {bias!r} + x.p / x.n < {floor!r} THEN false ELSE {score} >= {threshold!r} END", "false"
    return (f"CASE WHEN t IS NULL THEN {null} ELSE list_transform([lower(left(t, {MAX_CHARS}))], lambda s: "
            f"list_transform([struct_pack(p := {pos}, n := sqrt(greatest(1, len(string_split(s, ' ')))))], "
            f"lambda x: {body})[1])[1] END")


def register(con: duckdb.DuckDBPyConnection, fitted: bool = True) -> None:
    """Create the macros on a connection (TEMP: nothing is written into sealed evidence)."""
    con.execute(_sql(fitted))


def _run(sql: str, texts: list[str], fitted: bool = True) -> list:
    con = duckdb.connect()
    try:
        register(con, fitted)
        return [r[0] for r in con.execute(f"SELECT {sql} FROM unnest(?) WITH ORDINALITY AS u(t, i) ORDER BY i",
                                          [texts]).fetchall()]
    finally:
        con.close()


def scores(texts: list[str]) -> list[float]:
    return _run("overrefusal_score(t)", texts)


def flags(texts: list[str]) -> list[bool]:
    return _run("overrefusal(t)", texts)


def feature_rows(texts: list[str]) -> list[dict[str, bool]]:
    """The features of each text (for fitting the model and for explaining a flag)."""
    return _run("overrefusal_features(t)", texts, fitted=False)
