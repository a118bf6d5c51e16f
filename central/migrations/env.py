"""Alembic environment: runs on the connection the central hands over (no alembic.ini needed)."""

from alembic import context

from central.db.models import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    """Run the migrations on `config.attributes["connection"]`."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("central migrations run through central.db.engine.migrate(engine)")
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
