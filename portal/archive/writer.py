"""Group commit for ingest: instances arriving together share one transaction and one round of fsyncs.

Every ingest hands its prepared instances to the writer of its event loop and waits. The writer takes what
is queued (whatever arrived while the previous batch was being written, so a lone instance never waits),
commits all rows (and the requests' audit rows) in one transaction, and only then answers each caller. The
files are placed before the jobs reach the writer (`place_all`: new ones made durable by one store flush
shared with other requests): nothing is acknowledged before its row is committed and its file is durable.

Inside a batch each instance is answered as if it had been sent alone, in order: a second copy of a SOP
Instance UID already in the batch waits for the next batch (so it sees the first as stored), and when the
batch transaction fails it is retried instance by instance, so one bad instance fails alone.
"""

from __future__ import annotations

import contextlib
import asyncio
import datetime
import fcntl
import os
import functools
import logging
import re
import sqlite3
import threading
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from piccolo.engine.postgres import PostgresEngine
from piccolo.utils.encoding import dump_json

from portal import clock, db, storage as storage_mod
from portal.auth.recent import Recent
from portal.dicom import FileStore
from portal.dicom.parse import ReadFile
from portal.dicom.equivalence import same_apart_from_encoding
from portal.dicom.store import dataset_md5, sync_dirs
from portal.tables import Archive, Instance, Project

log = logging.getLogger("lightbox.ingest")

STORED, ALREADY_STORED, CONFLICT = "stored", "already_stored", "conflict"
REPLACED = "replaced the earlier file with this SOP Instance UID"
RESCORE_AFTER = ("done", "failed")  # AI states after which a new instance queues the series again
MAX_BATCH = 64



@dataclass(eq=False)
class Job:
    """One instance to store (or, with `read` None, only an audit row to commit)."""

    project: Project
    archive: Archive | None
    read: ReadFile | None
    patient_id: str = ""
    src: Path | None = None  # the file on disk, when there is one
    move: bool = False  # rename `src` into place (a spooled upload) instead of copying it
    allow_overwrite: bool = False
    audit: dict | None = None  # an AuditEvent row committed with this job
    future: asyncio.Future | None = None
    file_key: str = ""
    replace: dict | None = None  # the row an allowed overwrite replaces
    placed: bool = False
    error: BaseException | None = None  # why its file could not be placed

    @property
    def key(self) -> str:
        return f"{self.project.id}:{self.read.parsed.sop_instance_uid}"


class Writer:
    """The group-commit queue of one event loop."""

    def __init__(self) -> None:
        self.queue: deque[Job] = deque()
        self.task: asyncio.Task | None = None

    def submit(self, jobs: list[Job]) -> list[asyncio.Future]:
        loop = asyncio.get_running_loop()
        for job in jobs:
            job.future = loop.create_future()
            self.queue.append(job)
        if self.task is None or self.task.done():
            # A task of its own: a caller that goes away (client hung up) does not stop the others' batch.
            self.task = loop.create_task(self._flush())
        return [j.future for j in jobs]

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let instances that are ready at the same moment join the first batch
        while self.queue:
            batch = [self.queue.popleft() for _ in range(min(MAX_BATCH, len(self.queue)))]
            try:
                await commit_batch(batch, self)
            except BaseException as exc:  # never leave a caller waiting
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                if not isinstance(exc, Exception):
                    raise


_writers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def writer() -> Writer:
    loop = asyncio.get_running_loop()
    w = _writers.get(loop)
    if w is None:
        w = _writers[loop] = Writer()
    return w


async def run(jobs: list[Job]) -> list:
    """Store `jobs` through the loop's writer; each outcome is (status, note) or the exception it raised."""
    return await asyncio.gather(*writer().submit(jobs), return_exceptions=True)


async def run_inline(job: Job, after_commit: list) -> tuple[str, str]:
    """Store one job inside the caller's transaction; removing a replaced file waits for its commit."""
    job.future = asyncio.get_running_loop().create_future()
    await commit_batch([job], None, after_commit=after_commit)
    return job.future.result()


async def _drop_unless_kept(store: FileStore, job: Job, row: dict) -> None:
    """Remove the file placed for `job` unless it is the stored row's own (same key: same UID and bytes)."""
    if job.file_key and job.file_key != row["file_key"]:
        await asyncio.to_thread(store.delete, job.file_key)


async def _delete_orphan(store: FileStore, key: str) -> None:
    """Remove a placed file no row ended up pointing at (another process may have stored the same bytes)."""
    try:
        if not await Instance.exists().where(Instance.file_key == key):
            await asyncio.to_thread(store.delete, key)
    except Exception:
        log.exception("could not remove the unused file %s", key)


def _done(job: Job, status: str, note: str = "") -> None:
    if not job.future.done():
        job.future.set_result((status, note))


def _fail(job: Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)


async def finish(jobs: list[Job], done: tuple) -> list:
    """The answers of `jobs` whose transaction `commit_here` ran (`done`), as `run` gives them."""
    loop = asyncio.get_running_loop()
    for job in jobs:
        job.future = loop.create_future()
    try:
        await commit_batch(jobs, None, done=done)
    except Exception as exc:
        for job in jobs:
            _fail(job, exc)
    return await asyncio.gather(*[j.future for j in jobs], return_exceptions=True)


async def commit_batch(batch: list[Job], w: Writer | None, *, after_commit: list | None = None,
                       done: tuple | None = None) -> None:
    """Write the rows of `batch` and answer each job (`done`: what `commit_here` did already)."""
    store = storage_mod.current()
    audits = [j.audit for j in batch if j.audit]
    jobs = []
    for job in batch:
        if job.read is None:
            continue
        if not job.placed:
            _fail(job, job.error or RuntimeError("the file was not written"))
        else:
            jobs.append(job)
    # The usual batch (nothing in it stored already) is looked up and written in one transaction: one hop to
    # SQLite's thread, one connection on PostgreSQL. A batch that meets stored rows goes the long way below.
    written = None
    if done is not None:
        existing, written = done
    elif jobs:
        try:
            existing, written = await _transact(_unless_stored(jobs, audits))
        except Exception:  # written one by one below, where a bad instance fails alone
            existing = None
    else:
        existing = {}
    if written is not None:
        placed, later, results = written
        audits = []
    else:
        placed, later, results, audits = await _against_stored(store, jobs, existing, audits)
    if audits:
        try:
            await _transact(_write_audits(audits))
        except Exception:
            log.exception("could not record %d upload audit event(s)", len(audits))
    hooked: list[tuple[Job, int]] = []  # the first instance of a new series (or of a scored one's new ones)
    for job in placed:
        outcome = results.get(id(job))
        if outcome is None:
            continue
        kind, series = outcome
        if kind == "replaced":
            old = job.replace["file_key"]
            if old != job.file_key:
                if after_commit is not None:
                    after_commit.append(lambda old=old: store.delete(old))
                else:
                    await asyncio.to_thread(store.delete, old)
            _done(job, STORED, REPLACED)
        elif kind == "raced":  # another process stored this SOP Instance UID between our look and our insert
            raced = series
            if raced and (raced["md5"] == job.read.md5 or await _same_dataset(store, job, raced)):
                if raced["file_key"] != job.file_key:
                    await _delete_orphan(store, job.file_key)
                _done(job, ALREADY_STORED)
            else:
                await _delete_orphan(store, job.file_key)
                _done(job, CONFLICT)
        elif kind == "hook":
            hooked.append((job, series))
        else:
            _done(job, STORED)
    if hooked:  # answered once their series' hooks have run, as before
        await _run_hooks([(job.project, series) for job, series in hooked])
        for job, _ in hooked:
            _done(job, STORED)
    for job in batch:
        if job.read is None:
            _done(job, "audited")
    if later:
        if w is not None:  # ahead of anything queued since: per series, order is kept
            w.queue.extendleft(reversed(later))
        else:
            await commit_batch(later, None, after_commit=after_commit)


async def _run_hooks(calls: list[tuple]) -> None:
    """The new-series hooks of a batch, in one thread hop: the queue's (portal/tasks/inference.py) enqueues a
    task, on SqliteHuey a write and fsync of its database file, which must not stall the event loop (a site
    whose studies hold one image each has a new series per instance). A hook that fails is logged: the
    instance is stored, and failing its answer would only make the client send it again."""
    await asyncio.to_thread(_hooks_now, calls)


def _hooks_now(calls: list[tuple]) -> None:
    from portal.archive import ingest  # the hooks live there (the queue registers itself)

    for project, series in calls:
        for hook in ingest.new_series_hooks:
            try:
                hook(project, series)
            except Exception:
                log.exception("the new-series hook %r failed for series %s", hook, series)


def _first_copies(jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """(first copy of each SOP Instance UID, the second copies: answered in the next batch, after the first)."""
    seen: set[str] = set()
    todo, later = [], []
    for job in jobs:
        (later if job.key in seen else todo).append(job)
        seen.add(job.key)
    return todo, later


_STORED_COLUMNS = ("id", "key", "md5", "file_key")  # what an instance stored already is compared by


def _series_key(job: Job) -> str:
    return f"{job.project.id}:{job.read.parsed.series_instance_uid}"


def _unless_stored(jobs: list[Job], audits: list[dict]):
    """(stored rows, None) when any instance of the batch is stored already (nothing written), else
    ({}, (written jobs, second copies, their results)) with the batch and its audit rows written.

    One statement looks up both the batch's instances and its series (a round trip less on PostgreSQL)."""
    keys, series_keys = list({j.key for j in jobs}), list({_series_key(j) for j in jobs})
    rows = yield from _fetch(
        'SELECT \'i\' AS "kind", "id", "key", "md5", "file_key", CAST(NULL AS BIGINT) AS "study", '
        f'CAST(NULL AS TEXT) AS "ai_status" FROM lb_instance WHERE "key" IN {_in(keys)} UNION ALL '
        'SELECT \'s\', "id", "key", NULL, NULL, "study", "ai_status" FROM lb_series '
        f'WHERE "key" IN {_in(series_keys)}', keys + series_keys)
    existing = {r["key"]: r for r in rows if r["kind"] == "i"}
    if existing:
        return existing, None
    known = {r["key"]: r for r in rows if r["kind"] == "s"}
    todo, later = _first_copies(jobs)
    return {}, (todo, later, (yield from _batch(todo, audits, known)))


async def _against_stored(store: FileStore, jobs: list[Job], existing: dict | None, audits: list[dict]) -> tuple:
    """A batch that meets stored rows (or whose one-transaction write failed): same bytes are already stored,
    other bytes a conflict or an allowed overwrite; the rest written together, or one by one when that fails.
    (written jobs, second copies, their results, audit rows still to write)."""
    if existing is None:
        keys = list({j.key for j in jobs})
        existing = await _transact(_by_key("lb_instance", _STORED_COLUMNS, keys)) if keys else {}
    candidates, later = _first_copies(jobs)
    todo: list[Job] = []
    for job in candidates:
        row = existing.get(job.key)
        if row is not None:
            if row["md5"] == job.read.md5 or await _same_dataset(store, job, row):
                await _drop_unless_kept(store, job, row)
                _done(job, ALREADY_STORED)
                continue
            if not job.allow_overwrite:
                await _drop_unless_kept(store, job, row)
                _done(job, CONFLICT)
                continue
            job.replace = row
        todo.append(job)
    placed = todo
    results: dict[int, tuple] = {}
    try:
        if placed or audits:
            results = await _transact(_batch(placed, audits))
        audits = []
    except Exception as exc:
        if len(placed) <= 1 and not audits:
            for job in placed:
                await _delete_orphan(store, job.file_key)
                _fail(job, exc)
            placed = []
        else:
            log.warning("ingest batch of %d failed; storing its instances one by one", len(placed), exc_info=True)
            results = {}
            for job in placed:
                try:
                    results.update(await _transact(_write_rows([job])))
                except Exception as exc:
                    await _delete_orphan(store, job.file_key)
                    _fail(job, exc)
    return placed, later, results, audits


_placers = ThreadPoolExecutor(8, thread_name_prefix="lightbox-place")


def place_all(store: FileStore, jobs: list[Job]) -> None:
    """Write (or move) every file: new ones unsynced and then one store flush (syncfs, shared with the requests
    placing files meanwhile), others fsynced in parallel (the journal commits them together) and each changed
    directory fsynced once. Runs before the jobs reach the writer, so one batch's fsyncs overlap the
    previous batch's commit. A job whose file could not be written keeps `placed` False and its error."""
    deferred: list[Job] = []  # placed unsynced: durable at the store's next flush, shared with other requests

    def one(job: Job) -> set[Path]:
        p = job.read.parsed
        # Content-addressed per project: a conflicting re-send never overwrites the stored file.
        job.file_key = store.key_for(f"{job.project.id}/{p.sop_instance_uid}/{job.read.md5}")
        try:
            from_memory = job.read.data is not None and not job.move
            if (from_memory or job.move) and store.place_new(
                    job.file_key, data=job.read.data if from_memory else None, src=None if from_memory else job.src):
                job.placed = True
                deferred.append(job)
                return set()
            if from_memory:
                dirs = store.place(job.file_key, data=job.read.data, sync_dir=False)
            else:
                dirs = store.place(job.file_key, src=job.src, move=job.move, sync_dir=False)
        except Exception as exc:
            log.exception("could not write the file of %s", p.sop_instance_uid)
            job.error = exc
            return set()
        job.placed = True
        return dirs

    if len(jobs) == 1:
        dirs = one(jobs[0])
    else:
        dirs = set().union(*_placers.map(one, jobs))
    if deferred:
        try:
            store.flush()
        except OSError as exc:
            log.exception("the store could not make %d placed file(s) durable", len(deferred))
            for job in deferred:  # their files stay: no row points at them, start-up removes them
                job.placed, job.error = False, exc
    if len(dirs) > 4:  # many: in parallel; a few (one file's new folders) here, without a hop per folder
        list(_placers.map(_sync_one, dirs))
    else:
        sync_dirs(dirs)


def _sync_one(d: Path) -> None:
    sync_dirs([d])


async def _same_dataset(store: FileStore, job: Job, existing: dict) -> bool:
    """Whether only the file meta differs (the same image sent over HTTP and then by C-STORE), or only the
    encoding (another transfer syntax, same attributes and pixels: portal/dicom/equivalence.py)."""
    def compare() -> bool:
        with contextlib.ExitStack() as files:
            mine = job.read.data if job.read.data is not None else (None if job.move else job.src)
            if mine is None:  # moved into place, or placed by its caller (an import): read back from the store
                mine = files.enter_context(store.local_copy(job.file_key))
            stored = files.enter_context(store.local_copy(existing["file_key"]))
            return dataset_md5(mine) == dataset_md5(stored) or same_apart_from_encoding(mine, stored)

    try:
        return await asyncio.to_thread(compare)
    except OSError:
        return False


# The statements of a transaction are written as generators: each statement is yielded as (sql, args, many)
# and its rows are sent back. One generator serves both databases: on SQLite the whole transaction runs in
# one hop to the connection's thread (a hop per statement cost more than the statements), on PostgreSQL
# each statement is awaited on the transaction's connection.


def _fetch(sql: str, args: list):
    """One statement (straight through the driver: the ORM cost about half the writer's CPU); its rows."""
    return (yield (sql, args, False))


def _many(sql: str, rows: list[list]):
    """One statement for each of `rows` (executemany)."""
    if rows:
        yield (sql, rows, True)


async def _transact(statements):
    """Run the generator `statements` in a write transaction (the caller's, when one is open); its result."""
    engine = Instance._meta.db
    pg = isinstance(engine, PostgresEngine)
    tx = engine.current_transaction.get()
    if tx is not None:
        return await _drive(statements, tx.connection, pg)
    if pg:
        async with db.write_transaction():
            return await _drive(statements, engine.current_transaction.get().connection, True)
    connection = await engine._acquire()
    try:
        return await connection._execute(_drive_sqlite, connection._conn, statements)
    finally:
        await engine._release(connection)


# A caller with a thread of its own that stores one instance at a time and waits for it (a C-STORE association:
# nothing arrives to batch with) writes its rows in that thread, on the thread's own connection (SQLite). Handing
# them to the writer's task and on to aiosqlite's thread took two more thread hops each way on a path that is
# strictly serial: with the pynetdicom polling fix, 188 -> 266 instances/s for one storescu association.
_own = threading.local()


def commit_here(jobs: list[Job]) -> tuple | None:
    """In the thread that placed `jobs` (SQLite only, outside any caller's transaction): their rows looked up,
    written and committed here, and the new-series hooks run. What `commit_batch(done=…)` answers them from,
    or None: they go through the writer (PostgreSQL, a job not placed, or a transaction that failed here,
    tried again there and, failing, instance by instance)."""
    engine = Instance._meta.db
    if (not jobs or not isinstance(engine, db.PooledSQLiteEngine) or engine.current_transaction.get() is not None
            or not all(j.placed and j.read is not None for j in jobs)):
        return None
    audits = [j.audit for j in jobs if j.audit]
    try:
        existing, written = _drive_sqlite(_own_connection(engine), _unless_stored(jobs, audits))
    except Exception:
        log.debug("the placing thread could not write a batch of %d; the writer tries", len(jobs), exc_info=True)
        return None
    if written is not None:
        _, _, results = written
        hooked = [(job, results[id(job)][1]) for job in jobs if results.get(id(job), ("",))[0] == "hook"]
        if hooked:
            _hooks_now([(job.project, series) for job, series in hooked])
            for job, series in hooked:
                results[id(job)] = ("stored", series)
    return existing, written


def _own_connection(engine) -> sqlite3.Connection:
    """This thread's connection to `engine`'s database (a new one when the engine changed: tests switch)."""
    have = getattr(_own, "connection", None)
    if have is not None and have[0] is engine:
        return have[1]
    if have is not None:
        have[1].close()
    _own.connection = (engine, engine.connect())
    return _own.connection[1]


_lock_files: dict[str, int] = {}
# One ingest transaction at a time in this process: a flock is held by the open file, which all threads share,
# so it orders processes only; without this, threads met in SQLite's busy handler (sleeps of 1, 2, 5… ms).
_turn_lock = threading.Lock()


def _turn(conn) -> int | None:
    """The ingest writers' turn on this database file, across processes (`serve --processes`): a blocking
    flock wakes the next writer the moment the last one commits, where SQLite's busy handler polls with
    sleeps of 1, 2, 5, 10… ms. Other writers (the ORM's) still meet the busy timeout as before."""
    main = conn.execute("PRAGMA database_list").fetchone()  # the main database comes first
    path = main["file"] if isinstance(main, dict) else main[2]  # pooled connections give dict rows
    if not path:  # in memory: one process
        return None
    if (fd := _lock_files.get(path)) is None:
        fd = _lock_files[path] = os.open(path + "-ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _drive_sqlite(conn, statements):
    """In the SQLite connection's thread: BEGIN IMMEDIATE (the write lock at once, see db.write_transaction),
    every statement, COMMIT; ROLLBACK on any error."""
    with _turn_lock:
        turn = _turn(conn)
        try:
            return _drive_sqlite_locked(conn, statements)
        finally:
            if turn is not None:
                fcntl.flock(turn, fcntl.LOCK_UN)


def _drive_sqlite_locked(conn, statements):
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = None
        while True:
            try:
                sql, args, many = statements.send(rows)
            except StopIteration as stop:
                conn.execute("COMMIT")
                return stop.value
            if many:
                conn.executemany(sql, args)
                rows = None
            else:
                rows = conn.execute(sql, args).fetchall()
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


async def _drive(statements, connection, pg: bool):
    rows = None
    while True:
        try:
            sql, args, many = statements.send(rows)
        except StopIteration as stop:
            return stop.value
        if pg:
            if many:
                await connection.executemany(_pg(sql), args)
                rows = None
            else:
                rows = [dict(r) for r in await connection.fetch(_pg(sql), *args)]
        elif many:
            await connection.executemany(sql, args)
            rows = None
        else:
            rows = list(await connection.execute_fetchall(sql, args))


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """`?` placeholders as asyncpg's $1, $2, … (the statements here hold no literal `?`)."""
    n = iter(range(1, 1 << 30))
    return re.sub(r"\?", lambda _: f"${next(n)}", sql)


def _insert(table: str, columns: tuple[str, ...], rows: list[list], returning: str = ""):
    """One multi-row INSERT … ON CONFLICT (key) DO NOTHING [RETURNING …]: rows another ingest inserted first
    are left as they are (and not returned)."""
    if not rows:
        return []
    values = ", ".join(["(" + ", ".join("?" * len(columns)) + ")"] * len(rows))
    sql = (f'INSERT INTO {table} ({_q(columns)}) VALUES {values} ON CONFLICT ("key") DO NOTHING'
           + (f" RETURNING {returning}" if returning else ""))
    return (yield from _fetch(sql, [v for row in rows for v in row]))


def _q(columns) -> str:
    """Column names quoted (`user`, `key`, `rows`, `columns` are keywords somewhere)."""
    return ", ".join(f'"{c}"' for c in columns)


def _in(values) -> str:
    return "(" + ", ".join("?" * len(values)) + ")"


def _by_key(table: str, columns: tuple[str, ...], keys: list[str]):
    """{key: row} of the rows of `table` with these keys."""
    if not keys:
        return {}
    rows = yield from _fetch(f'SELECT {_q(columns)} FROM {table} WHERE "key" IN {_in(keys)}', keys)
    return {r["key"]: r for r in rows}


def _batch(jobs: list[Job], audits: list[dict], known: dict | None = None):
    """The statements of one batch: its instances' rows, then its requests' audit rows (`known`: see
    _write_rows)."""
    results = yield from _write_rows(jobs, known)
    if audits:
        yield from _write_audits(audits)
    return results


def _write_rows(jobs: list[Job], known: dict | None = None):
    """The rows of `jobs` (in the caller's transaction): {id(job): (what happened, series id or raced row)}.
    `known`: the series rows of the jobs' series keys, when looked up already in this transaction.

    A statement per table per batch (multi-row INSERT … ON CONFLICT DO NOTHING, then a look-up by key), with
    the same answers as the instance-by-instance upserts they replace."""
    if not jobs:
        return {}
    now = clock.now()
    out: dict[int, tuple] = {}
    if known is None:
        known = yield from _by_key("lb_series", ("id", "key", "study", "ai_status"),
                                   list({_series_key(j) for j in jobs}))
    else:
        known = dict(known)
    fresh: dict[str, Job] = {}  # series key -> the batch's first instance of a new series
    for job in jobs:
        skey = _series_key(job)
        if skey not in known and skey not in fresh:
            fresh[skey] = job
    if fresh:
        known.update((yield from _new_series(fresh, now)))
    replaced = [j for j in jobs if j.replace is not None]
    if replaced:
        yield from _many('UPDATE lb_instance SET "file_key" = ?, "size" = ?, "md5" = ?, "transfer_syntax_uid" = ? WHERE "id" = ?',
                    [[j.file_key, j.read.size, j.read.md5, j.read.parsed.transfer_syntax_uid, j.replace["id"]]
                     for j in replaced])
        ids = [j.replace["id"] for j in replaced]
        yield from _fetch(f'DELETE FROM lb_instance_metadata WHERE "instance" IN {_in(ids)}', ids)
        for job in replaced:
            out[id(job)] = ("replaced", None)
    new = [j for j in jobs if j.replace is None]
    if not new:
        return out
    rows = []
    for job in new:
        p = job.read.parsed
        s = known[_series_key(job)]
        rows.append([job.key, job.project.id, s["id"], p.sop_instance_uid, p.sop_class_uid, p.instance_number,
                     p.transfer_syntax_uid, p.rows or 0, p.columns or 0, p.number_of_frames, job.file_key,
                     job.read.size, job.read.md5, now])
    inserted = {r["key"] for r in (yield from _insert("lb_instance", _INSTANCE_COLUMNS, rows, returning='"key"'))}
    lost = list({j.key for j in new if j.key not in inserted})
    raced_rows = yield from _by_key("lb_instance", _STORED_COLUMNS, lost)
    touched: dict[int, int] = {}  # series id -> study id
    rescore: set[int] = set()
    hooked: set[str] = set()
    for job in new:
        p = job.read.parsed
        skey = _series_key(job)
        s = known[skey]
        if job.key not in inserted:
            raced = raced_rows.get(job.key)
            out[id(job)] = ("raced", raced and {k: raced[k] for k in ("id", "md5", "file_key")})
            continue
        touched[s["id"]] = s["study"]
        first = skey not in hooked and (skey in fresh or s["ai_status"] in RESCORE_AFTER)
        if first:
            hooked.add(skey)
            if skey not in fresh:
                rescore.add(s["id"])
        out[id(job)] = ("hook" if first else "stored", s["id"])
    if touched:
        # Quiet-period inference and "recently changed" sorting read these, to the second (see _due).
        if ids := [sid for sid in touched if _due("series", sid, now)]:
            yield from _fetch(f'UPDATE lb_series SET "last_instance_at" = ? WHERE "id" IN {_in(ids)}', [now, *ids])
        if rescore:
            ids = list(rescore)
            yield from _fetch(f'UPDATE lb_series SET "ai_status" = \'\' WHERE "id" IN {_in(ids)}', ids)
        if ids := [sid for sid in set(touched.values()) if _due("study", sid, now)]:
            yield from _fetch(f'UPDATE lb_study SET "updated_at" = ? WHERE "id" IN {_in(ids)}', [now, *ids])
    return out


# When this process last wrote a series' last_instance_at (a study's updated_at). A series arriving over many
# batches rewrote its row (and its study's) in every one: two statements a batch, and on PostgreSQL with
# `serve --processes 2` the two processes' transactions queued on those row locks. Written at most once a
# second per row now; the first instance after a quiet period always writes (quiet periods are far longer).
_TOUCH_EVERY_S = 1.0
_touched: Recent[float] = Recent(_TOUCH_EVERY_S, max_keys=10_000)  # (database, table, id) -> when, as a timestamp


def _due(table: str, row_id: int, now: datetime.datetime) -> bool:
    """Whether the row's time is to be written in this batch (and, if so, remember that it was)."""
    key = (id(Instance._meta.db), table, row_id)  # the database: tests and tools switch engines
    at = now.timestamp()  # the app's clock (tests set it), not the monotonic one
    last = _touched.get(key, now=at)
    if last is not None and 0 <= at - last < _TOUCH_EVERY_S:
        return False
    _touched.put(key, at, now=at)
    return True


_INSTANCE_COLUMNS = ("key", "project", "series", "sop_instance_uid", "sop_class_uid", "instance_number",
                     "transfer_syntax_uid", "rows", "columns", "frames", "file_key", "size", "md5", "created_at")
_AUDIT_COLUMNS = ("user", "username", "action", "object", "detail", "client", "created_at")


def _write_audits(audits: list[dict]):
    now = clock.now()
    defaults = {"user": None, "username": "", "object": "", "detail": {}, "client": ""}
    rows = []
    for a in audits:
        a = {**defaults, **a, "created_at": now}
        detail = a["detail"]
        rows.append([a["user"], a["username"], a["action"], a["object"],
                     detail if isinstance(detail, str) else dump_json(detail), a["client"], now])
    values = ", ".join(["(" + ", ".join("?" * len(_AUDIT_COLUMNS)) + ")"] * len(rows))
    yield from _fetch(f"INSERT INTO lb_audit_event ({_q(_AUDIT_COLUMNS)}) VALUES {values}", [v for row in rows for v in row])


def _new_series(fresh: dict[str, Job], now):
    """Patient, study and series rows for the first instance of each new series, a statement per table
    (upserts: others may race us; a row that exists already is kept as it is). {series key: its row}."""
    patients: dict[str, list] = {}
    studies: dict[str, list] = {}
    for skey, job in fresh.items():
        p, project, archive = job.read.parsed, job.project, job.archive
        patient_key = f"{archive.id}:{job.patient_id}"
        patients.setdefault(patient_key, [
            patient_key, project.id, archive.id, job.patient_id, p.patient_name[:324], p.patient_birth_date[:8],
            p.patient_sex[:16], now])
    yield from _insert("lb_patient", ("key", "project", "archive", "patient_id", "patient_name", "birth_date", "sex",
                                 "created_at"), list(patients.values()))
    patient_ids = {k: r["id"] for k, r in (yield from _by_key("lb_patient", ("id", "key"), list(patients))).items()}
    for skey, job in fresh.items():
        p, project = job.read.parsed, job.project
        study_key = f"{project.id}:{p.study_instance_uid}"
        studies.setdefault(study_key, [
            study_key, project.id, patient_ids[f"{job.archive.id}:{job.patient_id}"], p.study_instance_uid,
            p.study_date[:8], p.study_time[:16], p.study_description[:256], p.referring_physician_name[:324],
            p.institution_name[:256], p.accession_number[:64], p.study_id[:64], "", now, now])
    yield from _insert("lb_study", ("key", "project", "patient", "study_instance_uid", "study_date", "study_time",
                               "description", "referring_physician", "institution", "accession_number", "study_id",
                               "modalities", "created_at", "updated_at"), list(studies.values()))
    study_rows = yield from _by_key("lb_study", ("id", "key", "modalities"), list(studies))
    series = []
    for skey, job in fresh.items():
        p, project = job.read.parsed, job.project
        series.append([
            skey, project.id, study_rows[f"{project.id}:{p.study_instance_uid}"]["id"], p.series_instance_uid,
            p.series_number, p.series_date[:8], p.series_time[:16], p.modality[:16], p.body_part_examined[:64],
            p.series_description[:256], p.manufacturer[:128], p.manufacturer_model_name[:128], p.sop_class_uid,
            "unreviewed", "", None, "", now, now])
    yield from _insert("lb_series", ("key", "project", "study", "series_instance_uid", "series_number", "series_date",
                                "series_time", "modality", "body_part", "description", "manufacturer", "model_name",
                                "sop_class_uid", "review_status", "ai_summary", "ai_score", "ai_status",
                                "last_instance_at", "created_at"), series)
    series_ids = yield from _by_key("lb_series", ("id", "key"), list(fresh))
    # Each study's modalities, grown series by series in order as before (so a truncated list reads the same).
    modalities = {r["id"]: r["modalities"] for r in study_rows.values()}
    changed: dict[int, str] = {}
    for skey, job in fresh.items():
        p = job.read.parsed
        if not p.modality:
            continue
        sid = study_rows[f"{job.project.id}:{p.study_instance_uid}"]["id"]
        have = set(filter(None, modalities[sid].split("\\")))
        if p.modality not in have:
            modalities[sid] = changed[sid] = "\\".join(sorted(have | {p.modality}))[:100]
    yield from _many('UPDATE lb_study SET "modalities" = ? WHERE "id" = ?', [[m, sid] for sid, m in changed.items()])
    return {skey: {"id": series_ids[skey]["id"],
                   "study": study_rows[f"{job.project.id}:{job.read.parsed.study_instance_uid}"]["id"],
                   "ai_status": ""} for skey, job in fresh.items()}
