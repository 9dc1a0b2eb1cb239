"""Shared fixtures of the server tests (no tests here).

A session template: the synthetic dataset prepared, its baselines computed and a 5-seed
vanilla run recorded, in one AAR_HOME; each test copies it into its own AAR_HOME (set by
conftest.py), so the per-test cost is a file copy.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aar.research.live import LiveServer

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AAR_TEST_CACHE", REPO / ".aar-test-cache"))
DATASET = "synthetic"


@dataclass
class Template:
    home: Path
    key: str
    ids: list[str]
    preds: list[list[float]]  # vanilla predictions (seed 0), then 4 noisy copies
    soft: np.ndarray  # (5, n): the weak teacher's test soft labels, then 4 noisy copies
    public_idx: np.ndarray
    labels: dict[str, int]  # test labels: only for checking attacks, never sent


_BUILT: list[Template] = []  # test modules import the fixture: build it once per session


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    if _BUILT:
        return _BUILT[0]
    home = tmp_path_factory.mktemp("aar-server-template")
    names = ("AAR_HOME", "AAR_PACKAGES_DIR", "AAR_FEATURES_DIR")
    old = {k: os.environ.get(k) for k in names}
    os.environ.update(AAR_HOME=str(home), AAR_PACKAGES_DIR=str(SHARED / "packages"),
                      AAR_FEATURES_DIR=str(SHARED / "features"))
    try:
        from aar.data.prepare import prepare
        from aar.experiments.runner import RunConfig, run

        rec = run(RunConfig(method="vanilla", dataset=DATASET, weak="syn_weak",
                            strong="syn_strong", seeds=(0, 1, 2, 3, 4)))
        prep = prepare(DATASET)
        ids = prep.workspace.ids("test")
        pos = {i: k for k, i in enumerate(ids)}
        public = np.array([pos[i] for i in prep.vault.splits["test_public"]])
        # One weak teacher; rows 1.. are it plus a little seeded noise: distinct,
        # teacher-like submissions.
        teacher = np.load(prep.workspace.weak_path("syn_weak"))["test"].astype(np.float64)
        soft = np.stack([teacher] + [
            np.clip(teacher + np.random.default_rng(k).normal(0, 0.01, teacher.shape), 0, 1)
            for k in range(1, 5)])
        labels = {i: prep.vault.labels[i] for i in ids}
        # The student is deterministic: its seeds give the same predictions. Distinct,
        # vanilla-like seeds (identical ones would be flagged as duplicates) get a little
        # seeded noise, more than the probing detector's 1e-3.
        p0 = np.asarray(rec["seeds"][0]["predictions"], dtype=np.float64)
        preds = [p0.tolist()] + [
            np.clip(p0 + np.random.default_rng(10 + k).normal(0, 0.003, p0.shape), 0, 1)
            .tolist() for k in range(1, 5)]
        _BUILT.append(Template(home, prep.key, ids, preds, soft, public, labels))
        return _BUILT[0]
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Env:
    app: FastAPI
    client: TestClient
    admin: dict[str, str]
    t: Template
    tokens: dict[str, str] = field(default_factory=dict)

    def agent(self, name: str = "alice", **budget: int | None) -> dict[str, str]:
        r = self.client.post("/api/v1/admin/tokens", json={"name": name, **budget},
                             headers=self.admin)
        assert r.status_code == 201, r.text
        self.tokens[name] = r.json()["token"]
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def evaluate(self, headers: dict[str, str], probs: Any, *, ids: list[str] | None = None,
                 seed: int | None = None, method: str | None = "test",
                 dataset: str = DATASET) -> Any:
        body = {"dataset": dataset, "ids": self.t.ids if ids is None else ids,
                "probs": [float(p) for p in probs], "seed": seed, "method": method}
        return self.client.post("/api/v1/evaluations", json=body, headers=headers)

    def noisy(self, k: int, scale: float = 0.05) -> list[float]:
        """A plausible, distinct submission: a weak-teacher seed plus noise."""
        rng = np.random.default_rng(1000 + k)
        base = self.t.soft[k % len(self.t.soft)].astype(np.float64)
        return np.clip(base + rng.normal(0, scale, base.shape), 0, 1).tolist()

    def counts(self) -> dict[str, int]:
        from sqlalchemy import func, select

        from aar.server import db as m

        with self.app.state.db.read() as s:
            return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) or 0
                    for t in (m.Submission, m.AuditEntry, m.Finding, m.Archive, m.Flag,
                              m.Comment, m.Vote, m.Agent, m.Token)}


def live_server() -> LiveServer:
    """The API on a free loopback port in this process (``with live_server() as srv``),
    configured as ``make_app`` configures it."""
    return LiveServer(admin_token="aar_" + secrets.token_urlsafe(24), noise_seed=0)


def make_app(**overrides: Any) -> FastAPI:
    from aar.server.app import create_app
    from aar.server.config import ServerConfig

    return create_app(ServerConfig(**{"noise_seed": 0, **overrides}))


@pytest.fixture
def home(aar_home: Path, template: Template) -> Path:
    shutil.copytree(template.home, aar_home, dirs_exist_ok=True)
    return aar_home


@pytest.fixture
def env(home: Path, template: Template) -> Iterator[Env]:
    app = make_app()
    with TestClient(app) as client:
        yield Env(app, client, {"Authorization": f"Bearer {app.state.initial_admin_token}"},
                  template)
    app.state.db.dispose()


def tar_bytes(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    """A tar.gz with the given files (names taken as they are, even unsafe ones)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tf.addfile(info)
    return buf.getvalue()
