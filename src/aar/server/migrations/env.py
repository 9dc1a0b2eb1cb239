"""Alembic environment: run by ``aar.server.db.upgrade`` with a live connection, or by the
``alembic`` command with ``sqlalchemy.url`` set (``alembic -x url=sqlite:///x.db ...``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from aar.server.db import Base

config = context.config
target_metadata = Base.metadata


def _include(obj: object, name: str | None, type_: str, reflected: bool,
             compare_to: object) -> bool:
    """The FTS5 shadow tables are made by hand in the migrations, not from the models."""
    return not (type_ == "table" and name is not None and name.startswith("findings_fts"))


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata,
                          include_object=_include,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=sqlite:///path/aar.db ...")
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata,
                          include_object=_include,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        conn.commit()


run()
