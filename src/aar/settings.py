"""One typed settings object, overridable from the environment (AAR_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _home() -> Path:
    return Path(os.environ.get("AAR_HOME") or Path.home() / ".cache" / "aar").expanduser()


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else None


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=_home)

    @property
    def packages_dir(self) -> Path:
        """Downloaded wheels and what was unpacked from them (AAR_PACKAGES_DIR overrides)."""
        return _env_path("AAR_PACKAGES_DIR") or self.home / "packages"

    @property
    def vault_dir(self) -> Path:
        """Ground-truth labels and the public/private test partition."""
        return self.home / "vault"

    @property
    def workspace_dir(self) -> Path:
        """Label-free exports that method and agent code may read."""
        return self.home / "workspace"

    @property
    def features_dir(self) -> Path:
        """Content-addressed feature cache (AAR_FEATURES_DIR overrides)."""
        return _env_path("AAR_FEATURES_DIR") or self.home / "features"

    @property
    def results_dir(self) -> Path:
        return self.home / "results"

    @property
    def db_url(self) -> str:
        return os.environ.get("AAR_DB_URL") or f"sqlite:///{self.home / 'aar.db'}"


def get_settings() -> Settings:
    return Settings()
