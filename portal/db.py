"""Database engine: SQLite (WAL, long busy timeout) by default, PostgreSQL when configured."""

from __future__ import annotations

import asyncio
import sqlite3
import sys

import aiosqlite
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, dict_factory as _dict_factory

from portal.settings import Settings

BUSY_TIMEOUT_S = 60


class _PooledConnection:
    """An aiosqlite connection lent by the pool; `close()` gives it back instead of closing it."""

    def __init__(self, engine: "PooledSQLiteEngine", connection: aiosqlite.Connection):
        self._engine, self._connection = engine, connection

    def __getattr__(self, name):
        return getattr(self._connection, name)

    async def close(self) -> None:
        await self._engine._release(self._connection)


class PooledSQLiteEngine(SQLiteEngine):
    """Piccolo's SQLite engine, keeping a few connections open between queries.

    Piccolo opens (and closes) a connection, with its own thread, for every query; that costs
    more than the query. Connections here are reused, and each is set up once: foreign keys,
    busy timeout, and synchronous=NORMAL, which in WAL mode is crash-safe and skips an fsync
    per commit (files themselves are still fsynced by the store).
    """

    MAX_IDLE = 8

    def __init__(self, path: str, **kwargs):
        super().__init__(path=path, **kwargs)
        self._idle: dict[int, list[aiosqlite.Connection]] = {}

    async def _acquire(self) -> aiosqlite.Connection:
        idle = self._idle.setdefault(id(asyncio.get_running_loop()), [])
        if idle:
            return idle.pop()
        connection = aiosqlite.connect(**self.connection_kwargs)
        # Idle pooled connections must not keep the process alive at exit.
        connection._thread.daemon = True
        await connection
        connection.row_factory = _dict_factory
        await connection.execute("PRAGMA foreign_keys = 1")
        await connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        await connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    async def _release(self, connection: aiosqlite.Connection) -> None:
        if connection.in_transaction:  # a failed query left one open: never lend that out
            await connection.rollback()
        idle = self._idle.setdefault(id(asyncio.get_running_loop()), [])
        if len(idle) < self.MAX_IDLE:
            idle.append(connection)
        else:
            await connection.close()

    async def get_connection(self):
        return _PooledConnection(self, await self._acquire())

    async def _run_in_new_connection(self, query, args=None, query_type="generic", table=None):
        connection = await self._acquire()
        try:
            async with connection.execute(query, args or []) as cursor:
                await connection.commit()
                return await cursor.fetchall()
        finally:
            await self._release(connection)

    async def close_idle(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                await connection.close()
        self._idle.clear()

    async def close_idle_of_loop(self) -> None:
        """Close the running loop's idle connections only (a worker thread's, when it stops)."""
        for connection in self._idle.pop(id(asyncio.get_running_loop()), []):
            await connection.close()


class LoopPoolPostgresEngine(PostgresEngine):
    """Piccolo's PostgreSQL engine with one connection pool per event loop.

    An asyncpg pool belongs to the loop it was made on; the web server's loop and each queue consumer
    thread's loop (portal/tasks/runner.py) start their own, so a task never queues behind the web loop."""

    def __init__(self, *args, **kwargs):
        self._pools: dict[int, tuple[asyncio.AbstractEventLoop, object]] = {}
        super().__init__(*args, **kwargs)

    @property
    def pool(self):
        try:
            entry = self._pools.get(id(asyncio.get_running_loop()))
        except RuntimeError:  # no loop running: no pool
            return None
        return entry[1] if entry else None

    @pool.setter
    def pool(self, value) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # Piccolo's __init__ sets None before any loop runs
        if value is None:
            self._pools.pop(id(loop), None)
        else:
            self._pools[id(loop)] = (loop, value)


def make_engine(settings: Settings) -> Engine:
    if settings.database_kind == "postgres":
        return LoopPoolPostgresEngine(config=settings.postgres_params())
    path = settings.sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    # WAL lets the web process read while a worker writes; the mode is stored in the file.
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    return PooledSQLiteEngine(path=str(path), timeout=BUSY_TIMEOUT_S)


# Values per `IN (...)` list: far below asyncpg's 32,767 query arguments and SQLite's 32,766 variables.
IN_CHUNK = 5_000


def chunks(values, size: int = IN_CHUNK):
    """`values` in lists of at most `size`, for queries whose `IN` list could grow with a project."""
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]


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


async def start_pool(engine: Engine, max_size: int = 10) -> None:
    """Open the running loop's PostgreSQL pool (SQLite's pooled connections are made as needed)."""
    if isinstance(engine, PostgresEngine) and not engine.pool:
        await engine.start_connection_pool(min_size=1, max_size=max_size)


async def close_pool(engine: Engine) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.close_connection_pool()
    elif isinstance(engine, PooledSQLiteEngine):
        await engine.close_idle()


async def close_loop_pool(engine: Engine) -> None:
    """Close what the running loop holds (its PostgreSQL pool, its idle SQLite connections), not the others'."""
    if isinstance(engine, PostgresEngine):
        if engine.pool:
            await engine.close_connection_pool()
    elif isinstance(engine, PooledSQLiteEngine):
        await engine.close_idle_of_loop()


async def migrate() -> None:
    """Apply every pending migration of the portal app (`lightbox migrate`)."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    response = await run_forwards(app_name="portal", migration_id="all", fake=False)
    if not response.success:
        print(response.message, file=sys.stderr)
        raise RuntimeError(f"migration failed: {response.message}")
