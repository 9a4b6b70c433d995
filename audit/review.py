"""The disqualification review: one document with the verdict, each rule's outcome and the
rows it cites, a timeline of the run with the violations marked, the transcript around
each violation, the checkpoints and scores, and the seal's status.

Markdown for a ticket; HTML as one self-contained file (inline CSS, no scripts, no fonts,
nothing fetched) for a browser.
"""

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from onegc.audit import official
from onegc.evidence.layout import DB_NAME
from onegc.evidence.models import Act, Verdict
from onegc.rules.engine import judge

TIMELINE_CAP = 400
CONTEXT_LINES = 3


@dataclass
class Review:
    run_dir: str
    verdict: Verdict
    timeline: list[dict] = field(default_factory=list)
    timeline_total: int = 0
    transcripts: list[dict] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)
    start_t: float | None = None
    data: dict | None = None  # what the official score rests on (real or synthetic data)

    def when(self, t: float | None) -> str:
        """Seconds since the agent started: what a reviewer compares with the budget."""
        if t is None or self.start_t is None:
            return ""
        return f"{t - self.start_t:+.1f}s"


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    rel = con.sql(sql)
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> tuple | None:
    rows = con.execute(sql, params).fetchall()  # fetch all: DuckDB refuses work over a half-read result
    return rows[0] if rows else None


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def _cited(verdict: Verdict) -> dict[tuple[str, int | None], str]:
    """(table, seq) -> the rule ids whose failing or attempted outcome cites that row."""
    out: dict[tuple[str, int | None], str] = {}
    for rule in verdict.rules:
        if rule.outcome in ("fail", "attempt"):
            for row in rule.rows:
                key = (row.table_name, row.seq)
                out[key] = ", ".join(filter(None, [out.get(key), f"{rule.id} {rule.outcome}"]))
    return out


FILE_VERBS = {"create": "was created", "moved_to": "was moved in", "moved_from": "was moved away",
              "delete": "was deleted", "attrib": "had its attributes changed", "open": "was opened",
              "rescan_found": "was found on a rescan", "close_write": "was written"}


def _timeline(con: duckdb.DuckDBPyConnection, tables: set[str]) -> list[dict]:
    """Every event as a sentence (who did what, where), with its pid, the tool call it belongs to
    and the raw row as JSON for whoever wants to look behind the sentence."""
    verbs = "MAP {" + ", ".join(f"'{k}': '{v}'" for k, v in FILE_VERBS.items()) + "}"
    attributed = "exec_attribution" in tables and "tool_calls" in tables
    call_of_exec = ("(SELECT any_value(c.tool || ' call, transcript line ' || c.line) FROM exec_attribution a "
                    "JOIN tool_calls c USING (call_id) WHERE a.exec_seq = {seq})") if attributed else "NULL"
    call_of_pid = ("(SELECT any_value(c.tool || ' call, transcript line ' || c.line) FROM exec_attribution a "
                   "JOIN tool_calls c USING (call_id) WHERE a.pid = {pid})") if attributed else "NULL"
    # reaped before its cgroup could be asked, yet forked in the run's tree: the run's (rules/views.sql)
    by_lineage = ("AND NOT EXISTS (SELECT 1 FROM processes p WHERE p.event = 'fork' AND p.pid = f.pid "
                  "AND p.mono <= f.mono)") if "processes" in tables else ""
    parts = [
        "SELECT 'harness_events' AS tbl, seq, t, kind AS what, pid, NULL AS call, "
        "format('The harness recorded {}{}', replace(kind, '_', ' '), "
        "coalesce(': ' || array_to_string(argv, ' '), '')) AS sentence, to_json(h)::VARCHAR AS raw "
        "FROM harness_events h",
        f"SELECT 'execs', seq, t, 'exec', pid, {call_of_exec.format(seq='e.seq')}, "
        "format('Process {} (child of {}) started `{}` in {}', pid, ppid, array_to_string(argv, ' '), cwd), "
        "to_json(e)::VARCHAR FROM execs e WHERE NOT probe",
        f"SELECT 'net_attempts', seq, t, 'network ' || syscall, pid, {call_of_pid.format(pid='n.pid')}, "
        "format('`{}` tried to reach {} port {} ({} over {})', coalesce(array_to_string(argv, ' '), exe), "
        "address, port, syscall, family), to_json(n)::VARCHAR FROM net_attempts n",
        "SELECT 'file_events', seq, t, 'file ' || event, pid, NULL, "
        f"format('{{}} {{}} ({{}})', path, coalesce({verbs}[event], event), root) || CASE WHEN NOT in_run "
        f"THEN ' (foreign: not cited)' WHEN attribution = 'none' {by_lineage} THEN ' (unattributed)' ELSE '' END, "
        "to_json(f)::VARCHAR "
        "FROM file_events f WHERE event IN ('create', 'moved_to', 'delete', 'attrib', 'open', 'rescan_found') "
        "OR (event = 'close_write' AND root <> 'scratch')",
    ]
    if "tool_calls" in tables:
        # placed at its start, else at its first process (the parser ran after the agent)
        first_exec = "(SELECT min(e.t) FROM execs e WHERE list_contains(c.exec_seqs, e.seq))" \
            if "execs" in tables else "NULL"
        parts.append(f"SELECT 'tool_calls', seq, coalesce(started_t, {first_exec}, t), 'tool ' || tool, NULL, "
                     "format('{} call, transcript line {}', tool, line), "
                     "format('The agent called {}: `{}`', tool, left(coalesce(command, CAST(input AS VARCHAR)), 300)), "
                     "to_json(c)::VARCHAR FROM tool_calls c")
    if "scores" in tables:
        parts.append("SELECT 'scores', seq, observed_t, 'checkpoint', NULL, NULL, "
                     "format('Checkpoint {} was scored: official {}', path, "
                     "coalesce(CAST(official AS VARCHAR), 'none (' || coalesce(failure, '-') || ')')), "
                     "to_json(s)::VARCHAR FROM scores s")
    present = [p for p in parts if p.split(" FROM ")[-1].split()[0] in tables]
    return _rows(con, " UNION ALL ".join(present) + " ORDER BY t NULLS LAST, tbl, seq")


def _transcript(con: duckdb.DuckDBPyConnection, tables: set[str], table: str, seq: int) -> dict | None:
    """The transcript lines around the act a rule cites: the tool call behind the process."""
    if "tool_calls" not in tables:
        return None
    line = None
    if table == "tool_calls":
        line = _one(con, "SELECT line FROM tool_calls WHERE seq = ?", [seq])
    elif table in ("execs", "net_attempts") and "exec_attribution" in tables:
        pid_sql = "SELECT pid FROM execs WHERE seq = ?" if table == "execs" else \
            "SELECT pid FROM net_attempts WHERE seq = ?"
        line = _one(con, "SELECT min(c.line) FROM exec_attribution a JOIN tool_calls c USING (call_id) "
                    f"WHERE a.pid IN ({pid_sql})", [seq])
    if not line or line[0] is None:
        return {"anchor": f"{table} #{seq}", "lines": [], "note": "no tool call behind this act "
                "(the process was not started by a recorded tool call)"}
    anchor = line[0]
    entries = _rows(con, f"""
        SELECT line, 'tool ' || tool AS who, coalesce(command, CAST(input AS VARCHAR)) AS text
        FROM tool_calls WHERE line BETWEEN {anchor - 40} AND {anchor + 40}
        UNION ALL
        SELECT line, role || ' ' || kind, text FROM messages
        WHERE line BETWEEN {anchor - 40} AND {anchor + 40}
        ORDER BY line""") if "messages" in tables else []
    idx = next((i for i, e in enumerate(entries) if e["line"] == anchor), 0)
    window = entries[max(0, idx - CONTEXT_LINES): idx + CONTEXT_LINES + 1]
    for e in window:
        e["anchor"] = e["line"] == anchor
    return {"anchor": f"{table} #{seq} (transcript line {anchor})", "lines": window, "note": ""}


def build(run_dir: Path) -> Review:
    verdict = judge(run_dir)
    review = Review(str(run_dir), verdict, data=official.run_data(run_dir))
    if not (run_dir / DB_NAME).is_file():
        return review
    con = duckdb.connect(str(run_dir / DB_NAME), read_only=True)
    try:
        tables = _tables(con)
        cited = _cited(verdict)
        rows = _timeline(con, tables)
        review.timeline_total = len(rows)
        review.start_t = next((r["t"] for r in rows if r["tbl"] == "harness_events" and r["what"] == "start"), None)
        keep = [r for r in rows if (r["tbl"], r["seq"]) in cited or r["tbl"] != "execs"]
        budget = max(0, TIMELINE_CAP - len(keep))
        execs = [r for r in rows if r["tbl"] == "execs" and (r["tbl"], r["seq"]) not in cited][:budget]
        shown = {(r["tbl"], r["seq"]) for r in keep + execs}
        review.timeline = [dict(r, violation=cited.get((r["tbl"], r["seq"]), "")) for r in rows
                           if (r["tbl"], r["seq"]) in shown][:TIMELINE_CAP]
        for table, seq in list(cited)[:10]:
            excerpt = _transcript(con, tables, table, seq)
            if excerpt is not None:
                review.transcripts.append(excerpt)
        if "scores" in tables:
            review.scores = [
                dict(row, observed_t=review.when(row["observed_t"]))
                for row in _rows(con, "SELECT path, observed_t, after_deadline, self_reported, selected_by, "
                                      "official, failure, eval_seconds, gap FROM scores ORDER BY observed_t")
            ]
    finally:
        con.close()
    return review


def _times(act: Act) -> str:
    return f"{act.count}x " if act.count > 1 else ""


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def to_markdown(r: Review) -> str:
    v = r.verdict
    out = [f"# Review of `{r.run_dir}`", "", f"**Verdict: {v.status}**"]
    out += [f"- {reason}" for reason in v.reasons]
    if v.score:
        out.append(f"- official score: {_fmt(v.score.official)} ({v.score.checkpoint})")
    out.append(f"- {official.data_line(r.data)}")
    integ = v.integrity
    out += ["", f"Seal: **{integ.label}**" + ("" if integ.sealed else " (never sealed)")]
    out += [f"- {p}" for p in integ.problems + integ.incomplete_reasons]
    out += ["", "## Rules", "", "| rule | outcome | summary |", "|---|---|---|"]
    for rule in v.rules:
        out.append(f"| {rule.id} {rule.title} | {rule.outcome} | {rule.summary} |")
    for rule in v.rules:
        if rule.outcome in ("fail", "attempt"):
            out += ["", f"### {rule.id} {rule.outcome}: cited acts, the decisive one first", ""]
            out += [f"- {_times(act)}`{act.output}`" for act in rule.acts]
    out += ["", "## Timeline", "", f"{len(r.timeline)} of {r.timeline_total} events "
            "(use `onegc-audit sql` for the rest, or the HTML review for each event's raw row)", "",
            "| time (from start) | event | pid | tool call | violation |", "|---|---|---|---|---|"]
    for e in r.timeline:
        mark = f"**{e['violation']}**" if e["violation"] else ""
        sentence = _fmt(e["sentence"]).replace("|", "\\|").replace("\n", " ")[:240]
        out.append(f"| {r.when(e['t'])} | {sentence} | {_fmt(e['pid'])} | {_fmt(e['call'])} | {mark} |")
    out += ["", "## Transcript around each violation"]
    for tr in r.transcripts:
        out += ["", f"**{tr['anchor']}**", ""]
        out += [f"> {tr['note']}"] if tr["note"] else []
        for e in tr["lines"]:
            arrow = "→ " if e["anchor"] else ""
            out.append(f"- {arrow}line {e['line']} ({e['who']}): {_fmt(e['text'])[:300]}")
    out += ["", "## Checkpoints and scores", ""]
    if r.scores:
        cols = list(r.scores[0])
        out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        out += ["| " + " | ".join(_fmt(s[c]) for c in cols) + " |" for s in r.scores]
    else:
        out.append("No checkpoints were scored.")
    return "\n".join(out) + "\n"


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:20px}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;
padding:3px 6px;vertical-align:top;text-align:left}code{font:12px monospace}
.status{display:inline-block;padding:4px 10px;border-radius:4px;color:#fff;font-weight:bold}
.accepted{background:#2e7d32}.no_score{background:#757575}.disqualified{background:#c62828}
.incomplete{background:#ef6c00}.tampered{background:#6a1b9a}
tr.violation td{background:#ffebee;font-weight:bold}td.fail{color:#c62828;font-weight:bold}
td.attempt{color:#ef6c00;font-weight:bold}li.anchor{background:#ffebee}"""


def to_html(r: Review) -> str:
    e = html.escape
    v = r.verdict
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Review {e(r.run_dir)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>Review of <code>{e(r.run_dir)}</code></h1>",
             f"<p>Verdict: <span class='status {e(v.status)}'>{e(v.status)}</span></p><ul>"]
    parts += [f"<li>{e(reason)}</li>" for reason in v.reasons]
    parts.append(f"<li>{e(official.data_line(r.data))}</li></ul>")
    integ = v.integrity
    parts.append(f"<p>Seal: <b>{e(integ.label)}</b></p><ul>")
    parts += [f"<li>{e(p)}</li>" for p in integ.problems + integ.incomplete_reasons]
    parts.append("</ul><h2>Rules</h2><table><tr><th>rule</th><th>outcome</th><th>summary</th></tr>")
    for rule in v.rules:
        parts.append(f"<tr><td>{e(rule.id)} {e(rule.title)}</td><td class='{e(rule.outcome)}'>"
                     f"{e(rule.outcome)}</td><td>{e(rule.summary)}</td></tr>")
    parts.append("</table>")
    for rule in v.rules:
        if rule.outcome in ("fail", "attempt"):
            parts.append(f"<h3>{e(rule.id)} {e(rule.outcome)}: cited acts, the decisive one first</h3><ul>")
            parts += [f"<li>{e(_times(act))}<code>{e(act.output)}</code></li>" for act in rule.acts]
            parts.append("</ul>")
    parts.append(f"<h2>Timeline</h2><p>{len(r.timeline)} of {r.timeline_total} events</p><table>"
                 "<tr><th>time (from start)</th><th>event</th><th>pid</th><th>tool call</th><th>violation</th></tr>")
    for ev in r.timeline:
        cls = " class='violation'" if ev["violation"] else ""
        parts.append(
            f"<tr{cls}><td>{e(r.when(ev['t']))}</td><td>{e(_fmt(ev['sentence']))}<details><summary>raw</summary>"
            f"<pre>{e(_fmt(ev['raw'])[:4000])}</pre></details></td><td>{e(_fmt(ev['pid']))}</td>"
            f"<td>{e(_fmt(ev['call']))}</td><td>{e(ev['violation'])}</td></tr>"
        )
    parts.append("</table><h2>Transcript around each violation</h2>")
    for tr in r.transcripts:
        parts.append(f"<h3>{e(tr['anchor'])}</h3>" + (f"<p><i>{e(tr['note'])}</i></p>" if tr["note"] else "")
                     + "<ul>")
        for line in tr["lines"]:
            cls = " class='anchor'" if line["anchor"] else ""
            text = e(_fmt(line["text"])[:300])
            parts.append(f"<li{cls}>line {line['line']} ({e(line['who'])}): {text}</li>")
        parts.append("</ul>")
    parts.append("<h2>Checkpoints and scores</h2>")
    if r.scores:
        cols = list(r.scores[0])
        parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(_fmt(s[c]))}</td>" for c in cols) + "</tr>" for s in r.scores]
        parts.append("</table>")
    else:
        parts.append("<p>No checkpoints were scored.</p>")
    dumped = json.dumps(v.model_dump(mode="json"), indent=1)
    parts.append(f"<details><summary>verdict JSON</summary><pre>{e(dumped)}</pre></details></body></html>")
    return "\n".join(parts)
