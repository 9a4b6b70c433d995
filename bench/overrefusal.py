"""Over-refusal detectors measured on the labelled set: precision and recall on the held-out
split (and 5-fold cross-validation on the train split), and throughput in messages/s.

Candidates: the old phrase regexes of W1 and the `overrefusal` query, a linear model over
hashed word and character n-grams, one over word unigrams and bigrams, one over concept
cues, and what rules/overrefusal.py ships: cues OR word n-grams above a margin, in SQL.
`--fit` refits rules/overrefusal_model.json (both halves) on the train split.

Usage: python bench/overrefusal.py [--fit] [--messages N]
"""

from __future__ import annotations

import argparse
import json
import re
import time
import zlib
from pathlib import Path

import duckdb
import numpy as np

from onegc.rules import overrefusal

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "overrefusal_labelled.jsonl"
OLD_W1 = (
    "should(n't| not) (modify|edit|touch|change) (code|files?) (that )?i did(n't| not) write"
    "|third[- ]party (material|code)[^.]{0,60}malicious"
    "|(run|perform|do) a security (review|audit) before (touching|modifying|editing)"
    "|(may|might|could) (be|contain) malware"
    "|(refuse|decline|won't|will not) to (modify|edit|touch) (these|this|the) (files?|code)"
)
OLD_QUERY = (
    "should not (modify|change|edit|touch) (code|files?) (that )?i did not write"
    "|third-party (material|code)[^.]{0,40}(malicious|malware)"
    "|(run|perform|do) a security review before (touching|modifying|editing)"
    "|malware (audit|analysis|review)"
    "|(refuse|decline|won't|will not) (to )?(modify|edit|change|touch) (these|the|this|those) (files?|code)"
)


def load() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def prf(pred: list[bool], gold: list[int]) -> tuple[float, float, int, int]:
    tp = sum(p and g for p, g in zip(pred, gold, strict=True))
    fp = sum(p and not g for p, g in zip(pred, gold, strict=True))
    fn = sum(g and not p for p, g in zip(pred, gold, strict=True))
    return (tp / (tp + fp) if tp + fp else 0.0), (tp / (tp + fn) if tp + fn else 0.0), fp, fn


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 6000) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by gradient descent (no sklearn needed)."""
    w, b, lr = np.zeros(x.shape[1]), 0.0, 1.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        g = p - y
        w -= lr * (x.T @ g / len(y) + l2 * w / len(y))
        b -= lr * g.mean()
    return w, b


# -- candidate: hashed n-grams -----------------------------------------------------------------
DIM = 1 << 12


def ngrams(text: str) -> np.ndarray:
    v = np.zeros(DIM)
    t = " " + re.sub(r"\s+", " ", text.lower()) + " "
    words = re.findall(r"[a-z']+", t)
    grams = [t[i : i + n] for n in (3, 4, 5) for i in range(len(t) - n + 1)]
    grams += words + [a + " " + b for a, b in zip(words, words[1:], strict=False)]
    for g in grams:
        v[zlib.crc32(g.encode()) % DIM] = 1.0
    return v / max(1.0, np.sqrt(v.sum()))


class NGramModel:
    def fit(self, texts: list[str], y: list[int]) -> NGramModel:
        self.w, self.b = fit_logistic(np.stack([ngrams(t) for t in texts]), np.array(y, float), l2=0.1, steps=1500)
        return self

    def predict(self, texts: list[str]) -> list[bool]:
        return [bool(ngrams(t) @ self.w + self.b > 0) for t in texts]


# -- candidate: concept cues + linear model ------------------------------------------------------
def cue_matrix(texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """The cue features as the SQL weighs them: all zero for a message without a trigger cue."""
    names = list(overrefusal.FEATURES)
    trig = np.array(overrefusal._run("overrefusal_trigger(t)", texts, fitted=False), float)[:, None]
    return np.array([[float(f[n]) for n in names] for f in overrefusal.feature_rows(texts)]) * trig, names


class CueModel:
    def fit(self, texts: list[str], y: list[int]) -> CueModel:
        x, self.names = cue_matrix(texts)
        self.w, self.b = fit_logistic(x, np.array(y, float), l2=0.5)
        return self

    def predict(self, texts: list[str]) -> list[bool]:
        x, _ = cue_matrix(texts)
        trig = overrefusal._run("overrefusal_trigger(t)", texts, fitted=False)
        return [bool(z > 0 and t) for z, t in zip(x @ self.w + self.b, trig, strict=True)]


class WordModel:
    """Word unigrams and bigrams (seen twice or more in training), counts / sqrt(words)."""

    LEVELS = 6

    def fit(self, texts: list[str], y: list[int]) -> WordModel:
        seen: dict[str, int] = {}
        for t in texts:
            for g in overrefusal.grams(t)[0]:
                seen[g] = seen.get(g, 0) + 1
        self.vocab = sorted(g for g, c in seen.items() if c >= 2)
        self.w, self.b = fit_logistic(self.matrix(texts), np.array(y, float), l2=0.3, steps=2000)
        return self

    def matrix(self, texts: list[str]) -> np.ndarray:
        ix = {g: i for i, g in enumerate(self.vocab)}
        x = np.zeros((len(texts), len(self.vocab)))
        for row, t in enumerate(texts):
            counts, n = overrefusal.grams(t)
            for g, c in counts.items():
                if g in ix:
                    x[row, ix[g]] = c / np.sqrt(max(1, n))
        return x

    def predict(self, texts: list[str], margin: float = 0.0) -> list[bool]:
        return [bool(z > margin) for z in self.matrix(texts) @ self.w + self.b]

    def levels(self) -> list[list]:
        """The weights rounded to LEVELS steps (grams whose weight rounds to 0 dropped)."""
        step = float(np.abs(self.w).max()) / self.LEVELS
        out: dict[float, list[str]] = {}
        for g, w in zip(self.vocab, self.w, strict=True):
            q = round(round(float(w) / step) * step, 4)
            if q:
                out.setdefault(q, []).append(g)
        return [[q, grams] for q, grams in sorted(out.items())]


def cross_val(make, texts: list[str], gold: list[int], k: int = 5) -> tuple[float, float, int, int]:
    pred = [False] * len(texts)
    for fold in range(k):
        test = [i for i in range(len(texts)) if i % k == fold]
        train = [i for i in range(len(texts)) if i % k != fold]
        m = make().fit([texts[i] for i in train], [gold[i] for i in train])
        for i, p in zip(test, m.predict([texts[i] for i in test]), strict=True):
            pred[i] = p
    return prf(pred, gold)


def regex_predict(pattern: str, texts: list[str]) -> list[bool]:
    con = duckdb.connect()
    rows = con.execute("SELECT regexp_matches(lower(t), ?) FROM unnest(?) AS u(t)", [pattern, texts]).fetchall()
    return [r[0] for r in rows]


NGRAM_MARGIN = 1.0  # the n-gram half flags only with a logit above this: the cues carry the precision


def write_model(m: CueModel, words: WordModel) -> None:
    weights = {n: round(float(w), 4) for n, w in zip(m.names, m.w, strict=True)}
    out = {"fitted_on": str(DATA.relative_to(ROOT)) + " (split=train)", "bias": round(float(m.b), 4),
           "threshold": 0.5, "weights": weights,
           "ngrams": {"bias": round(float(words.b), 4), "margin": NGRAM_MARGIN, "levels": words.levels()}}
    overrefusal.MODEL_FILE.write_text(json.dumps(out, indent=1) + "\n")
    overrefusal.model.cache_clear()
    print(f"wrote {overrefusal.MODEL_FILE.relative_to(ROOT)}")


def throughput(n: int, mixes: dict[str, list[str]]) -> None:
    """Messages per second through the SQL function, as W1 and the query call it."""
    con = duckdb.connect()
    overrefusal.register(con)
    for name, texts in mixes.items():
        con.execute("CREATE OR REPLACE TABLE messages AS SELECT ? [1 + (i % ?)] || ' (' || i || ')' AS text "
                    "FROM range(?) r(i)", [texts, len(texts), n])
        t0 = time.perf_counter()
        hits = con.execute("SELECT count(*) FROM messages WHERE overrefusal(text)").fetchone()[0]
        dt = time.perf_counter() - t0
        print(f"throughput, {name}: {n:,} messages in {dt:.2f} s = {n / dt:,.0f} messages/s ({hits:,} flagged)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fit", action="store_true", help="refit rules/overrefusal_model.json on the train split")
    ap.add_argument("--messages", type=int, default=100_000, help="messages for the throughput measure")
    args = ap.parse_args()
    rows = load()
    train = [r for r in rows if r["split"] == "train"]
    held = [r for r in rows if r["split"] == "heldout"]
    tt, ty = [r["text"] for r in train], [r["label"] for r in train]
    ht, hy = [r["text"] for r in held], [r["label"] for r in held]
    if args.fit:
        write_model(CueModel().fit(tt, ty), WordModel().fit(tt, ty))
    print(f"labelled set: train {len(train)} ({sum(ty)} refusing), held-out {len(held)} ({sum(hy)} refusing)")
    print(f"{'detector':34s} {'cv P':>6s} {'cv R':>6s} {'held P':>7s} {'held R':>7s} {'FP':>3s} {'FN':>3s}")
    results = {
        "old W1 regex": (prf(regex_predict(OLD_W1, tt), ty), prf(regex_predict(OLD_W1, ht), hy)),
        "old query regex": (prf(regex_predict(OLD_QUERY, tt), ty), prf(regex_predict(OLD_QUERY, ht), hy)),
        "n-gram logistic (hashed)": (cross_val(NGramModel, tt, ty), prf(NGramModel().fit(tt, ty).predict(ht), hy)),
        "cues + logistic (refit per fold)": (cross_val(CueModel, tt, ty), prf(CueModel().fit(tt, ty).predict(ht), hy)),
        "word n-gram logistic": (cross_val(WordModel, tt, ty), prf(WordModel().fit(tt, ty).predict(ht), hy)),
        "rules/overrefusal.py (shipped)": (prf(overrefusal.flags(tt), ty), prf(overrefusal.flags(ht), hy)),
    }
    for name, ((cp, cr, _, _), (hp, hr, fp, fn)) in results.items():
        print(f"{name:34s} {cp:6.2f} {cr:6.2f} {hp:7.2f} {hr:7.2f} {fp:3d} {fn:3d}")
    print("(the shipped model's cv columns are its fit on the whole train split)")
    misses = [(r["label"], r["kind"], r["text"][:110]) for r, f in zip(held, overrefusal.flags(ht), strict=True)
              if f != bool(r["label"])]
    for label, kind, text in misses:
        print(f"  held-out {'missed' if label else 'false alarm'} [{kind}]: {text}")
    ordinary = [r["text"] for r in rows if not r["label"]]
    refusing = [r["text"] for r in rows if r["label"]]
    throughput(args.messages, {"labelled set (half refusing, worst case)": [r["text"] for r in rows],
                               "ordinary messages with 1% refusals": ordinary * 9 + refusing[:1]})


if __name__ == "__main__":
    main()
