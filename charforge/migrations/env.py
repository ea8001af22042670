"""Alembic environment: runs on the connection charforge hands over, or on `sqlalchemy.url` for the alembic CLI."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from charforge.store.models import Base

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    # render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table instead.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
