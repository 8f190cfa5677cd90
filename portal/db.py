"""Database engine: SQLite (WAL, long busy timeout) by default, PostgreSQL when configured."""

from __future__ import annotations

import sqlite3
import sys

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

from portal.settings import Settings

BUSY_TIMEOUT_S = 60


def make_engine(settings: Settings) -> Engine:
    if settings.database_kind == "postgres":
        return PostgresEngine(config=settings.postgres_params())
    path = settings.sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    # WAL lets the web process read while a worker writes; the mode is stored in the file.
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    return SQLiteEngine(path=str(path), timeout=BUSY_TIMEOUT_S)


def write_transaction():
    """A transaction for a write that must not fail half-way under concurrency.

    On SQLite it takes the write lock at BEGIN (IMMEDIATE): a deferred transaction that later
    upgrades to a writer can fail with "database is locked" despite the busy timeout.
    """
    from piccolo.engine.sqlite import TransactionType

    from portal.tables import Project

    engine = Project._meta.db
    if isinstance(engine, SQLiteEngine):
        return engine.transaction(transaction_type=TransactionType.immediate)
    return engine.transaction()


def use_engine(engine: Engine) -> None:
    """Point every table (and Piccolo's own migration table) at `engine`."""
    import piccolo_conf
    from piccolo.apps.migrations.tables import Migration

    from portal.tables import TABLES

    piccolo_conf.DB = engine
    for table in [*TABLES, Migration]:
        table._meta.db = engine


def configure(settings: Settings) -> Engine:
    engine = make_engine(settings)
    use_engine(engine)
    return engine


async def start_pool(engine: Engine) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(min_size=1, max_size=10)


async def close_pool(engine: Engine) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.close_connection_pool()


async def migrate() -> None:
    """Apply every pending migration of the portal app (`lightbox migrate`)."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    response = await run_forwards(app_name="portal", migration_id="all", fake=False)
    if not response.success:
        print(response.message, file=sys.stderr)
        raise RuntimeError(f"migration failed: {response.message}")
