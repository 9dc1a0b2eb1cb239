"""Test isolation: each test gets its own AAR_HOME; downloaded packages and computed
features are shared across tests and runs (they are content-addressed and read-only).

``pg_cluster``: a throw-away PostgreSQL cluster for the session, started where Debian's
``postgresql`` is installed (None elsewhere). With ``AAR_TEST_DB=postgres`` every test's
server database is a fresh database of that cluster instead of SQLite in its AAR_HOME
(CI runs the server suite so)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# the server's shared fixtures (a prepared dataset template, a home made from it, a test
# client), for every test module that asks for them by name
from test_server_support import env, home, template  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AAR_TEST_CACHE", REPO / ".aar-test-cache"))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    from aar.server.pgcluster import PgCluster, available

    if not available():
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="aar-pg-"))
    try:
        with PgCluster(root, durable=False) as pg:
            yield pg
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def aar_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             request: pytest.FixtureRequest) -> Path:
    if os.environ.get("AAR_TEST_DB") == "postgres":
        pg = request.getfixturevalue("pg_cluster")
        if pg is None:
            pytest.fail("AAR_TEST_DB=postgres but PostgreSQL is not installed (initdb)")
        monkeypatch.setenv("AAR_DB_URL", pg.create_database())
    root = tmp_path / "aar-home"
    monkeypatch.setenv("AAR_HOME", str(root))
    monkeypatch.setenv("AAR_PACKAGES_DIR", str(SHARED / "packages"))
    monkeypatch.setenv("AAR_FEATURES_DIR", str(SHARED / "features"))
    monkeypatch.setenv("AAR_CACHE_DIR", str(SHARED / "cache"))
    return root
