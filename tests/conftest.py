"""Test isolation: each test gets its own AAR_HOME; downloaded packages and computed
features are shared across tests and runs (they are content-addressed and read-only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AAR_TEST_CACHE", REPO / ".aar-test-cache"))


@pytest.fixture(autouse=True)
def aar_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "aar-home"
    monkeypatch.setenv("AAR_HOME", str(home))
    monkeypatch.setenv("AAR_PACKAGES_DIR", str(SHARED / "packages"))
    monkeypatch.setenv("AAR_FEATURES_DIR", str(SHARED / "features"))
    monkeypatch.setenv("AAR_CACHE_DIR", str(SHARED / "cache"))
    return home
