"""Alembic environment: runs on the engine handed over in ``config.attributes['engine']``."""

from alembic import context

from perfnode.archive.models import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
