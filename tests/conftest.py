"""Shared fixtures: paths to the real footage beside the project, offline model settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# the tests use the published default admin key, accepted only in development (tests of the
# refusal set production themselves); inherited by the commands the tests start
os.environ.setdefault("VIGIL_ENVIRONMENT", "development")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real footage not found at {SHARED_DATA} (the project expects ../shared/data)")
    return SHARED_DATA
