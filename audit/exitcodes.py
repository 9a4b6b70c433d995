"""Exit codes of `onegc-audit`, one per outcome, so scripts can branch on them.

| code | meaning                                                        |
| ---- | -------------------------------------------------------------- |
| 0    | verdict `accepted` (rules pass, an official score exists)      |
| 1    | internal error (a bug: please report it)                        |
| 2    | bad input: usage error, missing or corrupt run directory        |
| 3    | verdict `no_score` (rules pass; not scored yet, or no valid score) |
| 4    | verdict `disqualified`                                          |
| 5    | `incomplete`: the evidence cannot prove compliance              |
| 6    | `tampered`: sealed evidence does not match its seal             |
"""

OK = 0
INTERNAL = 1
BAD_INPUT = 2
NO_SCORE = 3
DISQUALIFIED = 4
INCOMPLETE = 5
TAMPERED = 6

BY_STATUS = {
    "intact": OK,
    "accepted": OK,
    "no_score": NO_SCORE,
    "disqualified": DISQUALIFIED,
    "incomplete": INCOMPLETE,
    "tampered": TAMPERED,
}
