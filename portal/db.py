"""Database engine: SQLite (WAL, long busy timeout) by default, PostgreSQL when configured."""

from __future__ import annotations

import asyncio
import sqlite3
import sys

import aiosqlite
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction
from piccolo.engine.sqlite import SQLiteEngine, dict_factory as _dict_factory

from piccolo.querystring import QueryString

from portal import rowcache
from portal.settings import Settings

BUSY_TIMEOUT_S = 60
_WRITES = ("INSERT INTO ", "UPDATE ", "DELETE FROM ")


def _note_write(querystring: QueryString) -> None:
    """Tell the row cache about a write to one of its tables (Piccolo's INSERT, UPDATE and DELETE: their
    innermost template names the table)."""
    qs = querystring
    while qs.template.startswith("{}") and qs.args and isinstance(qs.args[0], QueryString):
        qs = qs.args[0]
    head = qs.template
    for verb in _WRITES:
        if head.startswith(verb):
            rowcache.saw_write(head[len(verb):].split(None, 1)[0].strip('"'))
            return


def fold(text):
    """lower() for SQLite: Unicode case folding as Python's str.lower (and PostgreSQL's in a UTF-8 locale)."""
    return text.lower() if isinstance(text, str) else text


class _PooledConnection:
    """An aiosqlite connection lent by the pool; `close()` gives it back instead of closing it."""

    def __init__(self, engine: "PooledSQLiteEngine", connection: aiosqlite.Connection):
        self._engine, self._connection = engine, connection

    def __getattr__(self, name):
        return getattr(self._connection, name)

    async def close(self) -> None:
        await self._engine._release(self._connection)


def _set_up(conn: sqlite3.Connection) -> None:
    """Every connection of the engine: dict rows, foreign keys, the busy timeout, and synchronous=NORMAL."""
    conn.row_factory = _dict_factory
    conn.execute("PRAGMA foreign_keys = 1")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
    conn.execute("PRAGMA synchronous = NORMAL")
    # SQLite's lower() folds ASCII only ("MÜLLER" became "mÜller", never found by "müller"); the search
    # text its triggers build (migrations 2026-12-03T16:40, 2026-12-05T08:10) folds like Python and
    # PostgreSQL. A tool without it (the sqlite3 shell) still writes, with ASCII folding for those rows.
    conn.create_function("lower", 1, fold, deterministic=True)


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
        self._retired = False

    async def _acquire(self) -> aiosqlite.Connection:
        idle = self._idle.setdefault(id(asyncio.get_running_loop()), [])
        if idle:
            return idle.pop()
        connection = aiosqlite.connect(**self.connection_kwargs)
        # Idle pooled connections must not keep the process alive at exit.
        connection._thread.daemon = True
        await connection
        await connection._execute(_set_up, connection._conn)  # in the connection's thread, one hop
        return connection

    def connect(self) -> sqlite3.Connection:
        """A plain connection set up as the pooled ones, for a thread that writes without a hop to aiosqlite's
        (a C-STORE association's, archive/writer.py commit_here); it belongs to the calling thread."""
        conn = sqlite3.connect(**self.connection_kwargs)
        _set_up(conn)
        return conn

    async def _release(self, connection: aiosqlite.Connection) -> None:
        if connection.in_transaction:  # a failed query left one open: never lend that out
            await connection.rollback()
        idle = self._idle.setdefault(id(asyncio.get_running_loop()), [])
        if len(idle) < self.MAX_IDLE and not self._retired:
            idle.append(connection)
        else:
            await connection.close()

    async def get_connection(self):
        return _PooledConnection(self, await self._acquire())

    async def run_querystring(self, querystring, in_pool: bool = False):
        _note_write(querystring)
        return await super().run_querystring(querystring, in_pool=in_pool)

    async def _run_in_new_connection(self, query, args=None, query_type="generic", table=None):
        connection = await self._acquire()
        try:
            # One thread hop for the statement and its rows (execute, fetch, close were three), and a COMMIT only
            # when the statement opened a transaction (a write; a SELECT opens none).
            rows = await connection.execute_fetchall(query, args or [])
            if connection.in_transaction:
                await connection.commit()
            return rows
        finally:
            await self._release(connection)

    async def _run_in_existing_connection(self, connection, query, args=None, query_type="generic", table=None):
        # Piccolo re-sends PRAGMA foreign_keys before every statement of a transaction; every pooled
        # connection already has it on (set once in _acquire), so the statement alone goes out.
        return await connection.execute_fetchall(query, args or [])

    def retire(self) -> None:
        """This engine is replaced (`use_engine`): close its idle connections now, and each lent one when it
        comes back. Kept open, every replaced engine held up to 8 threads and 24 files (a test suite's
        hundreds of apps: descriptors past 1024, where select() fails)."""
        self._retired = True
        for connections in self._idle.values():
            for connection in connections:
                connection.stop()  # queued on the connection's own thread, which closes it and ends
        self._idle.clear()

    async def close_idle(self, *, this_loop: bool = False) -> None:
        """Close the idle connections of every loop, or (`this_loop`) of the running one only: a worker
        thread's, when it stops."""
        loops = [id(asyncio.get_running_loop())] if this_loop else list(self._idle)
        for key in loops:
            for connection in self._idle.pop(key, []):
                await connection.close()


class _PooledTransaction(PostgresTransaction):
    async def get_connection(self):
        await self.engine.open_pool()
        return await super().get_connection()


async def _keep_session(connection) -> None:
    """What asyncpg does to a connection given back to the pool, besides rolling back an open transaction
    (which it always does): nothing. Its default sends one more round trip after every query (advisory
    unlock, CLOSE ALL, UNLISTEN, RESET ALL), and Lightbox leaves no session state to undo: its advisory locks
    are transaction-scoped, its settings are fixed when the connection opens, it declares no cursors."""


class PooledPostgresEngine(PostgresEngine):
    """Piccolo's PostgreSQL engine with one asyncpg pool per event loop, opened on first use.

    Piccolo holds a single pool, and without one it connects (and disconnects) per query; an asyncpg pool
    belongs to the loop that made it. The web app, each worker thread and each CLI command run their own
    loop, so each gets its own pool here, and every query and transaction borrows from it.
    """

    POOL_MIN, POOL_MAX = 1, 10

    def __init__(self, config: dict, **kwargs):
        self._pools: dict[int, tuple[asyncio.AbstractEventLoop, object]] = {}
        super().__init__(config=config, **kwargs)

    @property
    def pool(self):
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        owner, pool = self._pools.get(id(loop), (None, None))
        return pool if owner is loop else None

    @pool.setter
    def pool(self, value) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # Piccolo's __init__ sets `pool = None` outside any loop
            return
        if value is None:
            self._pools.pop(id(loop), None)
        else:
            self._pools[id(loop)] = (loop, value)

    async def open_pool(self, max_size: int | None = None):
        """The current loop's pool, created on first use (pools of loops that have closed are dropped);
        `max_size` caps a new one (a queue thread's serves one task at a time)."""
        if self.pool is None:
            import asyncpg

            for key, (loop, _) in list(self._pools.items()):
                if loop.is_closed():
                    del self._pools[key]
            self.pool = await asyncpg.create_pool(**self.config, min_size=self.POOL_MIN,
                                                  max_size=max_size or self.POOL_MAX, reset=_keep_session)
        return self.pool

    async def start_connection_pool(self, **kwargs) -> None:
        await self.open_pool()

    async def run_querystring(self, querystring, in_pool: bool = True):
        _note_write(querystring)
        if in_pool and self.current_transaction.get() is None:
            await self.open_pool()
        return await super().run_querystring(querystring, in_pool=in_pool)

    async def run_ddl(self, ddl: str, in_pool: bool = True):
        if in_pool and self.current_transaction.get() is None:
            await self.open_pool()
        return await super().run_ddl(ddl, in_pool=in_pool)

    def transaction(self, allow_nested: bool = True) -> PostgresTransaction:
        return _PooledTransaction(engine=self, allow_nested=allow_nested)


def make_engine(settings: Settings) -> Engine:
    if settings.database_kind == "postgres":
        return PooledPostgresEngine(config=settings.postgres_params())
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


_COLUMN_LISTS: dict[type, str] = {}


async def rows_of(table, where: str, *args, order: str = "", limit: int | None = None) -> list:
    """Whole rows of `table` as its objects (as `table.objects()` gives them), by plain SQL.

    `where` is SQL with `{}` for each of `args`. The pages read a dozen rows this way: Piccolo's query
    builder spends more CPU composing a SELECT of every column than the database spends answering it."""
    columns = _COLUMN_LISTS.get(table)
    if columns is None:
        columns = _COLUMN_LISTS[table] = ", ".join(f'"{c._meta.db_column_name}"' for c in table._meta.columns)
    sql = f"SELECT {columns} FROM {table._meta.tablename} WHERE {where}"
    if order:
        sql += f" ORDER BY {order}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [table(**row, _exists_in_db=True) for row in await table.raw(sql, *args)]


async def row_of(table, where: str, *args):
    """The first row `rows_of` finds, or None."""
    found = await rows_of(table, where, *args, limit=1)
    return found[0] if found else None


async def together(*awaitables) -> list:
    """Await independent reads, giving their results in order: at once on PostgreSQL, where each runs on its
    own pooled connection and the round trips overlap; one after another on SQLite, which answers in-process
    and where running them at once only adds connections and thread hand-offs (a series page 20% slower)."""
    if isinstance(_current_engine(), PostgresEngine):
        return list(await asyncio.gather(*awaitables))
    return [await a for a in awaitables]


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

    previous = piccolo_conf.DB
    if isinstance(previous, PooledSQLiteEngine) and previous is not engine:
        previous.retire()
    piccolo_conf.DB = engine
    rowcache.changed()  # rows cached from another database mean nothing here
    for table in [*TABLES, Migration]:
        table._meta.db = engine


def configure(settings: Settings) -> Engine:
    engine = make_engine(settings)
    use_engine(engine)
    return engine


async def open_pool(engine: Engine | None = None, max_size: int | None = None) -> None:
    """Open the database pool of the running event loop (a process's main loop, a worker thread's, a
    consumer's own), of at most `max_size` connections. Optional: on PostgreSQL the first query opens it
    too; `close_pool` on the same loop closes it before the loop ends."""
    engine = engine or _current_engine()
    if isinstance(engine, PooledPostgresEngine):
        await engine.open_pool(max_size)


async def close_pool(engine: Engine | None = None, *, this_loop: bool = False) -> None:
    """Close the running loop's PostgreSQL pool; SQLite: close the idle connections, of every loop (at the
    end of a process: that checkpoints the WAL) or of this loop only (a worker thread that stops)."""
    engine = engine or _current_engine()
    if isinstance(engine, PostgresEngine):
        if engine.pool is not None:
            await engine.close_connection_pool()
    elif isinstance(engine, PooledSQLiteEngine):
        await engine.close_idle(this_loop=this_loop)


def _current_engine() -> Engine:
    from portal.tables import Project

    return Project._meta.db


async def refresh_statistics() -> None:
    """Give the query planner fresh statistics after a bulk load (VACUUM (ANALYZE) on PostgreSQL, PRAGMA
    optimize on SQLite), so that it picks the composite indexes the pages rely on. On PostgreSQL the vacuum
    also marks the loaded pages all-visible: until then an index-only scan (a filtered count) still reads
    every row's page (300k series: a count of 3,600 studies 12 ms, after it 0.5 ms)."""
    engine = _current_engine()
    if isinstance(engine, PostgresEngine):
        await engine.run_ddl("VACUUM (ANALYZE)")
    elif isinstance(engine, PooledSQLiteEngine):
        connection = await engine._acquire()
        try:  # analysis_limit keeps it quick on a large file; 0x10002 also analyses tables not yet queried
            await connection.execute("PRAGMA analysis_limit = 1000")
            await connection.execute("PRAGMA optimize = 0x10002")
            await connection.commit()
        finally:
            await engine._release(connection)


async def migrate() -> None:
    """Apply every pending migration of the portal app (`lightbox migrate`)."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    response = await run_forwards(app_name="portal", migration_id="all", fake=False)
    if not response.success:
        print(response.message, file=sys.stderr)
        raise RuntimeError(f"migration failed: {response.message}")
