"""The rules engine: declarative checks (rules/checks/*.toml) run as SQL over a sealed run's
evidence, combined under a policy into a verdict that cites the rows it rests on.

Small on purpose: load rules, apply the policy, run each check on a read-only connection,
collect outcomes (pass | fail | attempt | not_applicable), combine. What a rule means lives
in its file; adding a rule is adding a file. Nothing is written into the run directory,
and the verdict holds nothing that depends on when or where it was computed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import duckdb

from onegc.evidence.attest import Verifier
from onegc.evidence.errors import OnegcError
from onegc.evidence.integrity import verify_run
from onegc.evidence.layout import RunLayout
from onegc.evidence.models import Verdict
from onegc.evidence.schema import TABLE_BY_NAME
from onegc.evidence.seal import DB_NAME, RESCORE_DIR, RUN_COLUMNS, latest_result
from onegc.rules import overrefusal
from onegc.rules.peers import peer_artifacts

HERE = Path(__file__).resolve().parent
CHECKS_DIR = HERE / "checks"
POLICIES_DIR = HERE / "policies"
DEFAULT_POLICY = POLICIES_DIR / "strict.toml"
VERDICT_FORMAT = "onegc-verdict-1"
SEVERITIES = ("disqualify", "no_score", "warn")
ROW_COLUMNS = ("table_name", "seq", "t", "pid", "argv", "path", "sentence")
MAX_CITED = 25
ALL_TABLES = set(TABLE_BY_NAME)
RULE_KEYS = (
    "id",
    "title",
    "paper",
    "desc",
    "severity",
    "applies",
    "tags",
    "measure",
    "params",
    "exceptions",
    "checks",
)


class RuleError(OnegcError):
    """A rule or policy file is malformed (a bug in the rule set, or a bad --policy file)."""


@dataclass(frozen=True)
class Check:
    kind: str  # violation | attempt
    name: str
    sql: str
    needs: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    paper: str
    desc: str
    severity: str
    checks: tuple[Check, ...]
    file: str
    applies: str | None = None
    measure: str | None = None
    tags: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    exceptions: dict[str, str] = field(default_factory=dict)


def _rule_from_file(path: Path) -> Rule:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path.name}: {exc}") from None
    unknown = set(raw) - set(RULE_KEYS)
    missing = {"id", "title", "paper", "desc", "severity", "checks"} - set(raw)
    if unknown or missing:
        raise RuleError(f"{path.name}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    if raw["severity"] not in SEVERITIES:
        raise RuleError(f"{path.name}: severity must be one of {SEVERITIES}")
    checks = []
    for c in raw["checks"]:
        if c.get("kind") not in ("violation", "attempt") or not c.get("sql") or not c.get("name"):
            raise RuleError(f"{path.name}: every check needs kind (violation|attempt), name and sql")
        needs, unless = tuple(c.get("needs", ())), tuple(c.get("unless", ()))
        checks.append(Check(c["kind"], c["name"], c["sql"], needs, unless))
    return Rule(
        id=raw["id"],
        title=raw["title"],
        paper=raw["paper"],
        desc=" ".join(raw["desc"].split()),
        severity=raw["severity"],
        checks=tuple(checks),
        file=path.name,
        applies=raw.get("applies"),
        measure=raw.get("measure"),
        tags=tuple(raw.get("tags", ())),
        params=dict(raw.get("params", {})),
        exceptions=dict(raw.get("exceptions", {})),
    )


def load_rules(checks_dir: Path = CHECKS_DIR) -> list[Rule]:
    """Every rule file, in id order (R1..R9, then the warnings)."""
    rules = [_rule_from_file(p) for p in sorted(checks_dir.glob("*.toml"))]
    ids = [r.id for r in rules]
    if len(ids) != len(set(ids)):
        raise RuleError(f"duplicate rule ids in {checks_dir}")
    return sorted(rules, key=lambda r: (r.id[0] != "R", int(re.sub(r"\D", "", r.id) or 0)))


def rules_digest(checks_dir: Path = CHECKS_DIR) -> str:
    """sha256 over the rule set (checks, views, lists, the over-refusal detector): which rules
    a verdict was judged by."""
    h = hashlib.sha256()
    extra = [HERE / "views.sql", HERE / "lists.toml", overrefusal.CUES_FILE, overrefusal.MODEL_FILE,
             Path(overrefusal.__file__)]  # the macros: the index stores their result per message
    for p in [*sorted(checks_dir.glob("*.toml")), *extra]:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


# -- policy ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    name: str
    source: str
    sha256: str
    raw: dict

    def attempt_disqualifies(self, task: str | None) -> list[str]:
        task_raw = self.raw.get("tasks", {}).get(task or "", {})
        return list(task_raw.get("attempt_disqualifies", self.raw.get("attempt_disqualifies", [])))

    def for_rule(self, rule: Rule, task: str | None) -> dict:
        """The rule as this policy applies it to `task`: enabled, severity, params, exceptions."""
        eff = {
            "enabled": True,
            "severity": rule.severity,
            "params": dict(rule.params),
            "exceptions": dict(rule.exceptions),
        }
        layers = [
            self.raw.get("rules", {}).get(rule.id, {}),
            self.raw.get("tasks", {}).get(task or "", {}).get("rules", {}).get(rule.id, {}),
        ]
        for layer in layers:
            for key, value in layer.items():
                if key in ("params", "exceptions"):
                    eff[key].update(value)
                elif key in ("enabled", "severity"):
                    eff[key] = value
                else:
                    raise RuleError(f"policy {self.name}: unknown key {key!r} for rule {rule.id}")
        if eff["severity"] not in SEVERITIES:
            raise RuleError(f"policy {self.name}: severity of {rule.id} must be one of {SEVERITIES}")
        return eff

    def summary(self, task: str | None) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "sha256": self.sha256,
            "attempt_disqualifies": self.attempt_disqualifies(task),
            "overrides": {
                "rules": self.raw.get("rules", {}),
                "task": self.raw.get("tasks", {}).get(task or "", {}),
            },
        }


def load_policy(path: Path | None = None) -> Policy:
    path = path or DEFAULT_POLICY
    if not path.is_file():
        raise RuleError(f"{path}: no such policy file")
    data = path.read_bytes()
    try:
        raw = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RuleError(f"policy {path}: {exc}") from None
    if not isinstance(raw.get("attempt_disqualifies", []), list):
        raise RuleError(f"policy {path}: attempt_disqualifies must be a list of rule ids")
    source = "builtin:" + path.name if path.parent == POLICIES_DIR else str(path)
    return Policy(raw.get("name", path.stem), source, hashlib.sha256(data).hexdigest(), raw)


# -- evidence connection ----------------------------------------------------------------------
def _scan_checkpoint(path: Path) -> tuple[str, bool]:
    """sha256 of the file and whether torch.compile's `_orig_mod.` prefix occurs in it."""
    h, found, tail, marker = hashlib.sha256(), False, b"", b"_orig_mod."
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            found = found or marker in tail + block
            tail = block[-len(marker) :]
    return h.hexdigest(), found


def _derived_tables(con: duckdb.DuckDBPyConnection, workspace: Path) -> None:
    """Facts read from the workspace, each tied to the sealed after-snapshot by its sha256:
    a file edited after sealing is `verified = false` and so counts as absent."""
    con.execute("CREATE TEMP TABLE workspace_scripts (path VARCHAR, verified BOOLEAN, text VARCHAR)")
    con.execute("CREATE TEMP TABLE checkpoint_scan (path VARCHAR, verified BOOLEAN, orig_mod BOOLEAN)")
    snap = con.execute(
        "SELECT path, sha256, size FROM snapshots WHERE phase = 'after' AND scope = 'workspace' "
        "AND kind = 'file' ORDER BY path"
    ).fetchall()
    for rel, sha, size in snap:
        p = workspace / rel
        if "/" not in rel and rel.endswith(".py") and size <= 4 << 20:
            try:
                data = p.read_bytes()
            except OSError:
                continue
            ok = hashlib.sha256(data).hexdigest() == sha
            con.execute(
                "INSERT INTO workspace_scripts VALUES (?, ?, ?)",
                [rel, ok, data.decode("utf-8", "replace") if ok else None],
            )
        elif rel.startswith("checkpoints/"):
            try:
                digest, orig_mod = _scan_checkpoint(p)
            except OSError:
                continue
            con.execute("INSERT INTO checkpoint_scan VALUES (?, ?, ?)", [rel, digest == sha, orig_mod])


def open_evidence(run_dir: Path, derived: bool = True) -> duckdb.DuckDBPyConnection:
    """A read-only connection with the rules' views, macros (overrefusal() too), lists and
    (unless derived is False: they read and hash the workspace) derived tables."""
    con = duckdb.connect(str(run_dir / DB_NAME), read_only=True)
    lists = tomllib.loads((HERE / "lists.toml").read_text())
    for name, values in lists.items():
        con.execute(f"CREATE TEMP TABLE list_{name} (name VARCHAR)")
        con.executemany(f"INSERT INTO list_{name} VALUES (?)", [[v] for v in values])
    con.execute((HERE / "views.sql").read_text())
    overrefusal.register(con)
    if derived:
        _derived_tables(con, RunLayout(run_dir).workspace)
        peer_artifacts(con, run_dir)  # W5: other runs' work by hash
    return con


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Evidence tables holding at least one row (an empty `scores` or `messages` table means
    that step did not run, the same as no table at all), less those the start event declares
    absent: an imported run's execs are empty because no sensor watched, not because nothing
    happened, so a check over them could only pass vacuously."""
    rows = con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()
    present = {r[0] for r in rows if con.execute(f'SELECT EXISTS (SELECT 1 FROM "{r[0]}")').fetchone()[0]}
    return present - _absent_tables(con)


def _absent_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    row = con.execute(
        "SELECT json_extract(detail, '$.provenance.absent_tables') FROM harness_events "
        "WHERE kind = 'start' ORDER BY seq LIMIT 1"
    ).fetchone()
    absent = json.loads(row[0]) if row and row[0] else []
    return {t for t in absent if isinstance(t, str)}


# Tables computed at verify time from the workspace (_derived_tables), by what they read.
DERIVED_TABLES = {
    "workspace_scripts": ("snapshots", "Top-level workspace scripts, read at verify time and accepted only when "
                          "their sha256 matches the sealed after-snapshot."),
    "checkpoint_scan": ("snapshots", "Checkpoints under checkpoints/, scanned at verify time, matched to the "
                        "sealed after-snapshot by sha256."),
    "peer_artifacts": ("snapshots", "Checkpoints and top-level scripts other runs under the same runs root left, "
                       "by sha256, read at verify time from their sealed evidence (rules/peers.py)."),
}
# Views of views.sql that the query index exports per run, so that the questions asked of many
# runs (Table 5, Table 8, the named queries) use the very definitions the rules use.
SHARED_VIEWS = ("training_launches", "budget_use")
_DEFINED = re.compile(r"CREATE TEMP (?:VIEW|MACRO) ([a-z_]+)")


def _words(sql: str) -> set[str]:
    return set(re.findall(r"[a-z_][a-z0-9_]*", sql.lower()))


def view_definitions() -> dict[str, tuple[str, str]]:
    """Every view and macro of views.sql: name -> (the comment above it, its body)."""
    out: dict[str, tuple[str, str]] = {}
    for stmt in (HERE / "views.sql").read_text().split(";\n"):
        m = _DEFINED.search(stmt)
        if m:
            head = stmt[: m.start()]
            comment = " ".join(ln.strip()[2:].strip() for ln in head.splitlines() if ln.strip().startswith("--"))
            out[m.group(1)] = (comment, stmt[m.end():])
    return out


def _via() -> dict[str, set[str]]:
    """What each view, macro and derived table of the engine reads, in evidence tables (closed)."""
    defs = view_definitions()
    direct = {name: _words(body) for name, (_, body) in defs.items()}
    via = {name: {src} for name, (src, _) in DERIVED_TABLES.items()}
    for name in defs:
        seen, todo, tables = {name}, [name], set()
        while todo:
            words = direct[todo.pop()]
            tables |= words & ALL_TABLES
            for w in (words & set(direct)) - seen:
                seen.add(w)
                todo.append(w)
        via[name] = tables
    return via


READS_VIA = _via()


def reads(sql: str, known: set[str] = ALL_TABLES) -> set[str]:
    """The evidence tables a piece of SQL reads, directly or through the engine's views, macros
    and derived tables. The one answer: the engine skips a check whose tables the record lacks,
    `rules explain` lists them, and `sql --schema` documents the views with it."""
    words = _words(sql)
    return {t for t in known if t in words} | {t for w in words & set(READS_VIA) for t in READS_VIA[w]}


def shared_view_columns() -> dict[str, list[tuple[str, str]]]:
    """Columns and types of the SHARED_VIEWS, read off the views over an empty evidence record."""
    con = duckdb.connect()
    try:
        for spec in TABLE_BY_NAME.values():
            con.execute(spec.ddl)
        con.execute("CREATE TABLE run (" + ", ".join(f"{c} {t}" for c, t in RUN_COLUMNS) + ")")
        for name in tomllib.loads((HERE / "lists.toml").read_text()):
            con.execute(f"CREATE TEMP TABLE list_{name} (name VARCHAR)")
        con.execute((HERE / "views.sql").read_text())
        return {v: [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {v}").fetchall()] for v in SHARED_VIEWS}
    finally:
        con.close()


def rule_tables(rule: Rule) -> set[str]:
    """Every evidence table a rule reads (its checks, its measure, its applies condition)."""
    parts = [c.sql for c in rule.checks] + [p for p in (rule.measure, rule.applies) if p]
    return set().union(*(reads(p) for p in parts))


# -- judging -----------------------------------------------------------------------------------
def _output(row: dict) -> str:
    argv = row["argv"]
    fields = [f"table={row['table_name']}", f"seq={row['seq']}"]
    if row["pid"] is not None:
        fields.append(f"pid={row['pid']}")
    if row["path"] is not None:
        fields.append(f"path={row['path']}")
    if argv:
        fields.append("argv=" + shlex.join(argv)[:240])
    return f"{row['sentence']} | " + " ".join(fields)


def _query_rows(con: duckdb.DuckDBPyConnection, sql: str, exceptions: dict[str, str]) -> list[dict]:
    unless = " AND ".join(f"NOT coalesce(({expr}), false)" for expr in exceptions.values()) or "true"
    cols = ", ".join(ROW_COLUMNS)
    full = f"SELECT {cols} FROM ({sql}) AS q WHERE {unless} ORDER BY t NULLS LAST, table_name, seq"
    cur = con.execute(full)
    out = []
    for values in cur.fetchall():
        row = dict(zip(ROW_COLUMNS, values, strict=True))
        row["argv"] = list(row["argv"]) if row["argv"] is not None else None
        out.append(row)
    return out


def _substitute(sql: str, params: dict[str, Any], rule: Rule) -> str:
    text = Template(sql).safe_substitute({k: str(v) for k, v in params.items()})
    if "${" in text:
        raise RuleError(f"{rule.file}: unknown parameter in {text[text.index('${') :][:40]!r}")
    return text


def judge_rule(
    con: duckdb.DuckDBPyConnection, rule: Rule, eff: dict, tables: set[str], attempt_disqualifies: bool,
    limit: int | None = MAX_CITED,
) -> dict:
    """One rule's outcome with the rows that show it (at most `limit` rows; None: all of them),
    grouped into acts, the decisive act first."""
    result: dict[str, Any] = {
        "id": rule.id,
        "title": rule.title,
        "severity": eff["severity"],
        "outcome": "pass",
        "disqualifies": False,
        "summary": "",
        "rows": [],
        "rows_total": 0,
    }
    if rule.measure is not None:
        measured = _query_rows(con, _substitute(rule.measure, eff["params"], rule), {})
        cited = [dict(r, output=_output(r)) for r in measured[:MAX_CITED]]
        result["measure"] = {"count": len(measured), "rows": cited}
    if not eff["enabled"]:
        result.update(outcome="not_applicable", summary="disabled for this task by the policy")
        return result
    runnable = [c for c in rule.checks if set(c.needs) <= tables and not set(c.unless) & tables]
    if not runnable:
        missing = sorted({t for c in rule.checks for t in c.needs} - tables)
        summary = "the evidence has no " + ", ".join(missing) + " table"
        result.update(outcome="not_applicable", summary=summary)
        return result
    if rule.applies and not con.execute(_substitute(rule.applies, eff["params"], rule)).fetchone()[0]:
        result.update(outcome="not_applicable", summary="the evidence holds nothing this rule is about")
        return result
    found: dict[str, list[dict]] = {"violation": [], "attempt": []}
    ran = 0
    # what the rule could not look at: tables its checks read, less the checks another table rules out
    absent = {t for c in rule.checks if not set(c.unless) & tables for t in reads(c.sql)} - tables
    for check in rule.checks:
        if not set(check.needs) <= tables or set(check.unless) & tables:
            continue
        if reads(check.sql, ALL_TABLES) - tables:
            continue
        ran += 1
        try:
            rows = _query_rows(con, _substitute(check.sql, eff["params"], rule), eff["exceptions"])
        except duckdb.Error as exc:
            raise RuleError(f"{rule.file}: check {check.name!r} failed: {str(exc).splitlines()[0]}") from None
        for row in rows:
            row.update(kind=check.kind, check=check.name, output=_output(row))
        found[check.kind] += rows
    if ran == 0:
        missing = sorted(({t for c in rule.checks for t in c.needs} | absent) - tables)
        summary = "the evidence has no " + ", ".join(missing) + " table"
        result.update(outcome="not_applicable", summary=summary)
        return result
    if found["violation"]:
        outcome, rows = "fail", found["violation"] + found["attempt"]
    elif found["attempt"]:
        outcome, rows = "attempt", found["attempt"]
    else:
        outcome, rows = "pass", []
    seen, unique = set(), []
    for r in rows:  # one act can be shown by several checks; cite each row once
        key = (r["table_name"], r["seq"], r["kind"])
        if key not in seen:
            seen.add(key)
            unique.append(r)
    acts = group_acts(unique)
    unique = [r for act in acts for r in act.pop("_rows")]
    result.update(outcome=outcome, rows=unique[:limit] if limit else unique, rows_total=len(unique), acts=acts)
    if absent:  # judged on part of what the rule looks at: say which part was missing
        result["unchecked_without"] = sorted(absent)
        if outcome == "pass":
            result["summary"] = "nothing found; not checked without " + ", ".join(sorted(absent))
    result["disqualifies"] = eff["severity"] == "disqualify" and (
        outcome == "fail" or (outcome == "attempt" and attempt_disqualifies)
    )
    if rows:
        first = acts[0]
        times = f" ({first['count']} times)" if first["count"] > 1 else ""
        more = len(unique) - first["count"]
        others = f"{len(acts) - 1} other act" + ("s" if len(acts) > 2 else "")
        rest = f" (and {more} more rows in {others})" if more else ""
        result["summary"] = first["sentence"] + times + rest
    return result


def act_key(row: dict) -> tuple:
    """Rows of one act: the same check by the same program on the same destination or path
    (a transcript's tool call is one act whatever line it stands on)."""
    what = re.sub(r"\bline \d+", "line", row["sentence"]) if row["table_name"] == "tool_calls" else row["path"]
    return row["kind"], row["check"], row["table_name"], tuple(row["argv"] or ()), what


def _specificity(act: dict) -> tuple:
    """Decisive acts first: what happened before what was tried, a connection to a host before the
    name lookups (DNS, port 53) a program makes on its own, then the earliest."""
    row = act["_rows"][0]
    dns = row["table_name"] == "net_attempts" and str(row["path"] or "").endswith(" port 53")
    return row["kind"] != "violation", dns, row["t"] is None, row["t"] or 0.0, row["seq"]


def group_acts(rows: list[dict]) -> list[dict]:
    """Cited rows grouped by act, the most specific act first, each with its count and the
    sentence of its first row (the rows themselves under `_rows`, for the caller to take)."""
    acts: dict[tuple, dict] = {}
    for r in rows:
        act = acts.setdefault(act_key(r), {"_rows": []})
        act["_rows"].append(r)
    out = sorted(acts.values(), key=_specificity)
    for act in out:
        first = act["_rows"][0]
        act.update(sentence=first["sentence"], count=len(act["_rows"]), kind=first["kind"], check=first["check"],
                   table_name=first["table_name"], seqs=[r["seq"] for r in act["_rows"][:MAX_CITED]],
                   output=first["output"])
    return out


def _score(con: duckdb.DuckDBPyConnection, direction: str | None) -> dict | None:
    """The best official score; with no known direction the first one found, which the
    verdict then refuses (fail closed: `incomplete`, never a guessed best)."""
    row = con.execute(
        f"SELECT path, official FROM scores WHERE official IS NOT NULL "
        f"ORDER BY official {'ASC' if direction == 'lower' else 'DESC'}, path LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return {"official": row[1], "checkpoint": row[0], "direction": direction}


def _unknown_facts(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Facts a rule needs that the record lacks: a rule judged without them would pass by
    default, so the verdict is `incomplete` instead."""
    budget, deadline, locked = con.execute(
        "SELECT budget_s, deadline_mono, (SELECT json_extract(detail, '$.locked') FROM harness_events "
        "WHERE kind = 'start' ORDER BY seq LIMIT 1) FROM run"
    ).fetchone() or (None, None, None)
    out = []
    if budget is None or deadline is None:
        out.append("the record holds no budget or deadline: R6 cannot be judged")
    if not json.loads(locked or "null"):
        out.append("the record names no locked files: R1 cannot be judged")
    return out


def _rescored(run_dir: Path, score: dict | None, direction: str | None) -> tuple[dict | None, str | None]:
    """A sealed rescore (`onegc-audit score`, checked by verify like the rest) supersedes the
    harness's scoring: its result is the run's official score, or its reason for none."""
    path, result = latest_result(run_dir)
    if path is None or RESCORE_DIR not in path.relative_to(run_dir).parts or not isinstance(result, dict):
        return score, None
    source = str(path.relative_to(run_dir))
    if result.get("outcome") == "scored" and result.get("value") is not None:
        return {"official": result["value"], "checkpoint": result.get("checkpoint"),
                "direction": direction, "source": source}, None
    return None, f"rescored without a score ({source}): {result.get('no_score_reason')}"


def judge(
    run_dir: Path,
    policy: Policy | None = None,
    direction_for: Callable[[str], str | None] | None = None,
    verifier: Verifier | None = None,
    cite_all: bool = False,
) -> Verdict:
    """The verdict of one run: integrity (with `verifier`, the signatures first), then every
    rule, then the score. With cite_all, every rule cites all its rows (the query index's
    `findings`), not the first MAX_CITED."""
    policy = policy or load_policy()
    integrity = verify_run(run_dir, verifier).to_dict()
    integrity.pop("run_dir", None)  # the verdict must not depend on where the run lies
    verdict: dict[str, Any] = {
        "format": VERDICT_FORMAT,
        "run_id": None,
        "task": None,
        "status": None,
        "reasons": [],
        "disqualified_by": [],
        "warnings": [],
        "score": None,
        "integrity": integrity,
        "policy": None,
        "rules_sha256": rules_digest(),
        "rules": [],
    }
    if integrity["status"] == "tampered" or not (run_dir / DB_NAME).is_file():
        verdict["status"] = integrity["status"] if integrity["status"] == "tampered" else "incomplete"
        verdict["reasons"] = integrity["problems"] + integrity["incomplete_reasons"]
        verdict["policy"] = policy.summary(None)
        return Verdict.model_validate(verdict)
    con = open_evidence(run_dir)
    try:
        run_id, task = con.execute("SELECT run_id, task FROM run").fetchone()
        verdict.update(run_id=run_id, task=task, policy=policy.summary(task))
        tables = _tables(con)
        absent = _absent_tables(con)
        attempt_dq = set(policy.attempt_disqualifies(task))
        for rule in load_rules():
            eff = policy.for_rule(rule, task)
            verdict["rules"].append(
                judge_rule(con, rule, eff, tables, rule.id in attempt_dq, None if cite_all else MAX_CITED))
        direction = direction_for(task) if direction_for else None
        score = _score(con, direction) if "scores" in tables else None
        unknown = [] if absent else _unknown_facts(con)
    finally:
        con.close()
    score, rescored_no_score = _rescored(run_dir, score, direction)
    if score is not None and direction not in ("lower", "higher"):
        unknown.append(f"the direction of task {task!r} is unknown (registry lookup failed): no best score")
    rules = verdict["rules"]
    verdict["disqualified_by"] = [r["id"] for r in rules if r["disqualifies"]]
    verdict["warnings"] = [r["id"] for r in rules if r["severity"] == "warn" and r["outcome"] == "fail"]
    no_score = [r for r in rules if r["severity"] == "no_score" and r["outcome"] == "fail"]
    disqualifying = [f"{r['id']} {r['outcome']}: {r['summary']}" for r in rules if r["disqualifies"]]
    if verdict["disqualified_by"] and not absent:
        # A sealed, intact row proving a violation stands even when other evidence was lost:
        # an incomplete monitored run that ran pip is disqualified, not merely incomplete.
        verdict["status"] = "disqualified"
        verdict["reasons"] = disqualifying + [f"also incomplete: {r}" for r in integrity["incomplete_reasons"]]
    elif integrity["status"] == "incomplete" or unknown:
        verdict["status"] = "incomplete"
        verdict["reasons"] = integrity["incomplete_reasons"] + unknown
        if absent:  # an imported record: say what it could and could not show
            verdict["reasons"] += _partial_record(rules, absent)
    elif no_score:
        verdict["status"] = "no_score"
        verdict["reasons"] = [f"{r['id']} {r['outcome']}: {r['summary']}" for r in no_score]
    elif score is not None:
        verdict["status"] = "accepted"
        verdict["score"] = score
    elif rescored_no_score:
        verdict["status"] = "no_score"
        verdict["reasons"] = [rescored_no_score]
    else:
        verdict["status"] = "no_score"
        verdict["reasons"] = [
            "not scored: the evidence holds no official score (official scoring has not run on this run)"
            if "scores" not in tables
            else "no checkpoint produced an official score"
        ]
    return Verdict.model_validate(verdict)


def _partial_record(rules: list[dict], absent: set[str]) -> list[str]:
    """For a record that lacks tables (an imported transcript): which rules it was judged on,
    which it cannot show, and what it shows that would disqualify a monitored run. It stays
    incomplete either way: without OS evidence a violation shown is not all there is."""
    judged = [r["id"] for r in rules if r["outcome"] != "not_applicable"]
    partly = [r["id"] for r in rules if r.get("unchecked_without") and r["outcome"] != "not_applicable"]
    unchecked = [r["id"] for r in rules if r["outcome"] == "not_applicable"]
    out = [
        "record lacks " + ", ".join(sorted(absent)),
        "judged from what the record holds: " + (", ".join(judged) or "none")
        + (f" (partly: {', '.join(partly)})" if partly else ""),
        "could not be checked: " + (", ".join(unchecked) or "none"),
    ]
    shown = [f"{r['id']} {r['outcome']}: {r['summary']}" for r in rules if r["disqualifies"]]
    if shown:
        out.append("the record shows what would disqualify: " + "; ".join(shown))
    return out


def verdict_json(verdict: Verdict) -> str:
    return verdict.model_dump_json(indent=2)
