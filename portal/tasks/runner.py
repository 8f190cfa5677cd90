"""Running the portal's async domain functions from Huey's worker threads.

Every consumer thread, embedded in `lightbox serve` or in `lightbox worker`, keeps an event loop of its own
with its own database connections (SQLite's pooled connections and PostgreSQL's pool are per loop, see
portal/db.py). A task therefore never runs on, nor waits for, the loop that serves requests: a long export
keeps its CPU work in its worker thread, and the portal's pages stay answered meanwhile.

`worker_id()` names this process for the rows it claims (jobs, runs): after a crash, the next start on the
same machine knows which claims died with it (`is_dead`) and queues them again at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

from piccolo.engine.postgres import PostgresEngine

POOL_SIZE = 4  # connections per worker thread's loop (PostgreSQL)

_local = threading.local()
_lock = threading.Lock()
_loops: list[tuple[threading.Thread, asyncio.AbstractEventLoop]] = []
_BOOT = f"{os.getpid()}:{int(time.time() * 1000):x}"


def _engine():
    from portal.tables import Project

    return Project._meta.db


async def _with_pool(coro):
    engine = _engine()
    if isinstance(engine, PostgresEngine) and engine.pool is None:
        from portal import db

        await db.open_pool(engine, max_size=POOL_SIZE)
    return await coro


def run(coro):
    """Run `coro` to completion on this thread's own loop and return its result (never on a running loop:
    a coroutine there is awaited, not run)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise RuntimeError("runner.run() is for worker threads; on an event loop, await the coroutine")
    own = getattr(_local, "loop", None)
    if own is None or own.is_closed():
        own = _local.loop = asyncio.new_event_loop()
        with _lock:
            _loops.append((threading.current_thread(), own))
    return own.run_until_complete(_with_pool(coro))


def _close(loop: asyncio.AbstractEventLoop) -> None:
    from portal import db

    if loop.is_closed():
        return
    try:
        loop.run_until_complete(db.close_pool(_engine(), this_loop=True))
    except Exception:  # a pool already gone (its database dropped): the loop is closed all the same
        pass
    loop.close()


def close_own() -> None:
    """Close this thread's loop and its database connections (a thread that ran tasks and now ends)."""
    own = getattr(_local, "loop", None)
    _local.loop = None
    with _lock:
        _loops[:] = [(t, loop) for t, loop in _loops if loop is not own]
    if own is not None:
        _close(own)


def close_finished() -> None:
    """Close the database pools and loops of worker threads that have ended (after a consumer stopped)."""
    with _lock:
        ended = [loop for t, loop in _loops if not t.is_alive()]
        _loops[:] = [(t, loop) for t, loop in _loops if t.is_alive()]
    for loop in ended:
        _close(loop)


def worker_id() -> str:
    """This process, as recorded on the rows it claims: host:pid:start."""
    return f"{socket.gethostname()[:60]}:{_BOOT}"


def is_dead(worker: str) -> bool:
    """Whether the process that claimed a row is gone: known only for processes of this machine (another
    machine's claims are left to the heartbeat timeout). Our own pid under another start is a previous
    life of this process (a container restarts with the same pid)."""
    parts = worker.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname()[:60]:
        return False
    _host, pid, _start = parts
    if f"{pid}:{_start}" == _BOOT:
        return False
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process now has that pid
        return True
    return False
