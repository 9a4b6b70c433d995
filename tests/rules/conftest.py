"""Shared fixture of the planted-violation suite."""

from pathlib import Path

import pytest

from tests.rules.judging import make_outside


@pytest.fixture
def outside(runs_dir: Path) -> Path:
    return make_outside(runs_dir)
