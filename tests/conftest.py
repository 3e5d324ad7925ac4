"""Shared test fixtures.

Tests that read the real aerial fixtures look for ``../shared/fixtures`` beside the project (or
``$OBBDET_FIXTURES``) and skip with a clear reason when it is absent, so a bare clone still passes.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = Path(os.environ.get("OBBDET_FIXTURES", PROJECT_ROOT.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real-imagery fixtures folder; skips the test when it is not there."""
    if not FIXTURES_DIR.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES_DIR} (set OBBDET_FIXTURES to point at them)")
    return FIXTURES_DIR
