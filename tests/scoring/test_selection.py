"""Candidate discovery and the paper's selection, on hand-made file events (no harness)."""

from pathlib import Path

from onegc.harness.scoring import Candidate, ScoringPolicy, find_candidates, select

START = 1000.0


def cand(path: str, minute: float, score: float) -> Candidate:
    return Candidate(path, observed_t=0.0, observed_mono=START + 60 * minute, self_reported=score)


def test_best_then_best_per_5_minute_window_lower_is_better() -> None:
    policy = ScoringPolicy("t6", "mse", "lower")
    cs = [
        cand("a", 1, 0.50), cand("b", 4, 0.45),  # window 0: b
        cand("c", 6, 0.30),  # window 1: the overall best
        cand("d", 7, 0.40), cand("e", 9, 0.42),  # window 1 without c: d
        cand("f", 12, 0.41),  # window 2
    ]  # fmt: skip
    chosen = select(cs, policy, START)
    assert [(c.path, c.selected_by) for c in chosen] == [
        ("c", "best_self_reported"), ("b", "window"), ("d", "window"), ("f", "window"),
    ]  # fmt: skip
    assert {c.path: c.selected_by for c in cs}["a"] == "not_selected"
    assert {c.path: c.window for c in cs} == {"a": 0, "b": 0, "c": 1, "d": 1, "e": 1, "f": 2}


def test_higher_is_better_and_ties_take_the_later() -> None:
    policy = ScoringPolicy("t2", "top1", "higher")
    cs = [cand("x", 1, 0.6), cand("y", 2, 0.6), cand("z", 3, 0.1)]
    chosen = select(cs, policy, START)
    assert [(c.path, c.selected_by) for c in chosen] == [("y", "best_self_reported"), ("x", "window")]


def test_events_decide_not_mtime(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "checkpoints").mkdir(parents=True)
    for name in ("ok.pt", "late.pt", "rewritten.pt", "silent.pt", ".tmp.pt"):
        (ws / "checkpoints" / name).write_bytes(b"x")
    p = str(ws / "checkpoints")

    def ev(name: str, event: str, mono: float) -> dict:
        return {"root": "workspace", "path": f"{p}/{name}", "event": event, "is_dir": False,
                "t": mono, "mono": mono}  # fmt: skip

    events = [
        ev("ok.pt", "moved_to", 10), ev("late.pt", "close_write", 200),
        ev("rewritten.pt", "close_write", 50), ev("rewritten.pt", "modify", 150),
        ev("silent.pt", "create", 20),  # created, never completed: not a candidate
    ]  # fmt: skip
    got = {c.path: (c.selected_by, c.after_deadline) for c in find_candidates(ws, events, 100.0)}
    assert got == {
        "checkpoints/ok.pt": ("not_selected", False),
        "checkpoints/late.pt": ("after_deadline", True),
        "checkpoints/rewritten.pt": ("after_deadline", True),
        "checkpoints/silent.pt": ("not_observed", False),
    }
