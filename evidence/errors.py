"""The one error type every room raises for a user's mistake or bad input.

The CLI catches `OnegcError` once at its boundary and prints `onegc-audit: error: MESSAGE`
(plus `hint: ...` when there is one) on one line each, exiting with `exit_code`. Anything
else that reaches the boundary is a bug: exit 1, "internal error". Exit codes are those of
`onegc.audit.exitcodes` (2 = bad input), kept here as plain numbers so that this ground-floor
module imports nothing.
"""

from __future__ import annotations

BAD_INPUT = 2


class OnegcError(Exception):
    """A user error: one line, a documented exit code, and (optionally) what to do about it."""

    exit_code: int = BAD_INPUT
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class MissingExtra(OnegcError):
    """An optional feature's package is absent: the message says which extra installs it."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs {package}, which is not installed",
            hint=f"pip install 'onegc-audit[{extra}]'",
        )
