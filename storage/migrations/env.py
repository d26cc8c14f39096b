"""Alembic environment: the engine is handed in by storage.db.migrate()."""

from alembic import context
from sqlalchemy import create_engine

from storage.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:  # the alembic command line, for developers
        url = context.config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("set sqlalchemy.url (or run `binrelay init`)")
        engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    if connection.in_transaction():
        connection.commit()


run_migrations_online()
