"""A throw-away PostgreSQL cluster on a loopback port, for tests and benchmarks.

``PgCluster(root).start()`` runs Debian's ``initdb`` into ``root/data`` (trust
authentication, superuser ``aar``) and starts ``postgres`` on a free port of 127.0.0.1 with
its socket in ``root``; ``create_database()`` gives a fresh database's SQLAlchemy URL;
``stop()`` shuts it down. PostgreSQL refuses to run as root: as root the cluster belongs
to, and runs as, the ``postgres`` user (or ``nobody``). ``durable=False`` turns off fsync
(fine for tests: the data dies with the cluster).

    with PgCluster(tmp) as pg:
        url = pg.create_database()       # postgresql+psycopg://aar@127.0.0.1:PORT/aar_1
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path
from types import TracebackType

from aar.errors import AarError

SUPERUSER = "aar"


def pg_bin(name: str) -> str | None:
    """A PostgreSQL program: on PATH, else Debian's ``/usr/lib/postgresql/<v>/bin``."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit()
                      else 0)
    return versions[-1] if versions else None


def available() -> bool:
    return pg_bin("initdb") is not None and pg_bin("pg_ctl") is not None


def _run_as() -> str | None:
    """The user to run PostgreSQL as: none needed unless this is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise AarError("PostgreSQL refuses to run as root and there is no postgres or nobody user")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = Path(root)
        self.data = self.root / "data"
        self.port = _free_port()
        self.durable = durable
        self.user = _run_as()
        self._ids = itertools.count(1)
        self.started = False

    def _pg(self, name: str, *args: str, timeout: float = 120) -> None:
        exe = pg_bin(name)
        if exe is None:
            raise AarError(f"PostgreSQL's {name} is not installed (Debian: apt-get install "
                           "postgresql)")
        r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout,
                           user=self.user, cwd=self.root, check=False)
        if r.returncode != 0:
            raise AarError(f"{name} failed: {(r.stderr or r.stdout).strip()[-500:]}")

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> PgCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            os.chown(self.root, pwd.getpwnam(self.user).pw_uid, pwd.getpwnam(self.user).pw_gid)
        self._pg("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                 "-E", "UTF8", "--locale=C", "--no-sync")
        opts = [f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}",
                "-c max_connections=200 -c shared_buffers=64MB"]
        if not self.durable:
            opts.append("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                 "-o", " ".join(opts), "-w", "-t", "60", "start")
        self.started = True
        return self

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; returns its URL."""
        from sqlalchemy import create_engine, text

        name = name or f"aar_{next(self._ids)}"
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
                c.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.started:
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.started = False

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
