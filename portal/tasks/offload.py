"""Heavy task bodies of the embedded consumer of `lightbox serve`, in long-lived child processes.

The consumer threads of `lightbox serve` have their own event loops, but they share the web process's GIL and
memory: an export serialising a big project in a worker thread stalls every page for as long as it holds the
GIL, and torch or highdicom loaded for one job stays in the process that holds uploads in flight (hundreds of
MB). So, once the consumer is embedded (`isolate()`), such work runs in a child process (spawned, with its own
database connections) and the worker thread only waits for it. `lightbox worker` processes run it in their
own threads (nothing to protect there).

Two lanes, each its own pool: "model" (one process: the model stays loaded between jobs; it also draws the
job's DICOM results) and "work" (exports, imports, syncs, retraining; two at once), so a scoring job never
waits behind an hour-long export.

A run's progress inside an SQLite import's transaction lives in memory (`exchange.runs.LIVE`): the children's
updates come back over a queue, so the portal shows them as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib
import multiprocessing
import threading

LANES = {"model": 1, "work": 2}  # processes per lane: more would only share the same cores

_isolated = False
_pools: dict[str, concurrent.futures.ProcessPoolExecutor] = {}
_relay: tuple[threading.Thread, object] | None = None  # the progress relay and its queue, one for all lanes
_lock = threading.Lock()


class OffloadFailed(Exception):
    """What the work raised, as "Type: message" (exceptions do not all survive a process boundary); `kind`
    is the exception's class name and `detail` its own message."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


def isolate(on: bool = True) -> None:
    """Run offloaded work in child processes from now on (the embedded consumer); off ends the children."""
    global _isolated
    _isolated = on
    if not on:
        shutdown()


def isolated() -> bool:
    return _isolated


class _RelayedLive(dict):
    """`exchange.runs.LIVE` in a child: every change is also sent to the parent."""

    def __init__(self, queue):
        super().__init__()
        self.queue = queue

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.queue.put((key, value))

    def pop(self, key, *default):
        self.queue.put((key, None))
        return super().pop(key, *default)


def _child_start(queue, settings) -> None:
    """A child's set-up: the parent's settings (database, queue, storage), progress relayed to it."""
    from portal import db, settings as settings_mod
    from portal.exchange import runs
    from portal.tasks import queue as task_queue

    settings_mod.use(settings)
    db.configure(settings)
    task_queue.configure(settings)
    task_queue.load_tasks()
    runs.LIVE = _RelayedLive(queue)


def _relay_progress(queue) -> None:
    from portal.exchange import runs

    while True:
        item = queue.get()
        if item is None:
            return
        key, value = item
        if value is None:
            runs.LIVE.pop(key, None)
        else:
            runs.LIVE[key] = value


def _executor(lane: str) -> concurrent.futures.ProcessPoolExecutor:
    global _relay
    from portal import settings as settings_mod

    settings = settings_mod.current()
    pool = _pools.get(lane)
    if pool is not None and pool._lightbox_settings is not settings:  # noqa: SLF001 (another install now)
        shutdown()
    with _lock:
        if lane not in _pools:
            # spawn, never fork: the web process has threads (the server's, the queue's, aiosqlite's).
            ctx = multiprocessing.get_context("spawn")
            if _relay is None:
                queue = ctx.Queue()
                thread = threading.Thread(target=_relay_progress, args=(queue,), name="offload-progress", daemon=True)
                thread.start()
                _relay = (thread, queue)
            pool = concurrent.futures.ProcessPoolExecutor(max_workers=LANES[lane], mp_context=ctx,
                                                          initializer=_child_start, initargs=(_relay[1], settings))
            pool._lightbox_settings = settings  # noqa: SLF001
            _pools[lane] = pool
        return _pools[lane]


def shutdown() -> None:
    """End every child process (waiting for the work they are doing) and the progress relay."""
    global _relay
    with _lock:
        pools, relay = list(_pools.values()), _relay
        _pools.clear()
        _relay = None
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)
    if relay is not None:
        thread, queue = relay
        queue.put(None)
        thread.join(timeout=5)


def _resolve(target: str):
    module, name = target.split(":")
    return functools.reduce(getattr, name.split("."), importlib.import_module(module))


def _call_here(target: str, args: tuple):
    """Run `module:function(*args)`, answering (True, result) or (False, kind, message)."""
    try:
        return True, _resolve(target)(*args)
    except Exception as exc:  # the work's own failure, reported to the caller with its reason
        return False, type(exc).__name__, str(exc)


def _answer(answer: tuple):
    if answer[0]:
        return answer[1]
    raise OffloadFailed(answer[1], answer[2])


def _broken(lane: str, exc: Exception) -> OffloadFailed:
    # The lane's child died (memory?): a fresh pool for it next time; the other lane's work carries on.
    with _lock:
        pool = _pools.pop(lane, None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
    return OffloadFailed("BrokenProcessPool", f"The {lane} process stopped ({exc}).")


def call(target: str, *args, lane: str = "work"):
    """Run `module:function(*args)` (a plain, blocking function taking picklable arguments) in a child process
    of `lane` when the consumer is embedded, else right here; raises OffloadFailed for what it raised in a
    child."""
    if not _isolated:
        return _resolve(target)(*args)
    try:
        return _answer(_executor(lane).submit(_call_here, target, args).result())
    except concurrent.futures.process.BrokenProcessPool as exc:
        raise _broken(lane, exc) from exc


async def run(target: str, *args, lane: str = "work"):
    """`call`, awaitable (the loop stays free for the job's heartbeat meanwhile): in a child process when the
    consumer is embedded, else in a thread; raises OffloadFailed for whatever the work raised."""
    if not _isolated:
        return _answer(await asyncio.to_thread(_call_here, target, args))
    try:
        return _answer(await asyncio.wrap_future(_executor(lane).submit(_call_here, target, args)))
    except concurrent.futures.process.BrokenProcessPool as exc:
        raise _broken(lane, exc) from exc
