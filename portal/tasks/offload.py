"""CPU-heavy task bodies of the embedded consumer (exports, imports, syncs, retraining) in child processes.

The consumer threads of `lightbox serve` have their own event loops, but they share the web process's GIL:
an export serialising a big project in a worker thread stalls every page for as long as it holds it. So,
when the consumer is embedded (`model_process.isolated()`), such a task runs in a long-lived child process
(spawned, with its own database connections) and the worker thread only waits for it. `lightbox worker`
processes run them in their own threads (nothing to protect there).

A run's progress inside an SQLite import's transaction lives in memory (`exchange.runs.LIVE`): the child's
updates come back over a queue, so the portal shows them as before.
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib
import multiprocessing
import threading

from portal.tasks import model_process

WORKERS = 2  # an export and an import (or a retraining) at once; more would only share the same cores

_pool: concurrent.futures.ProcessPoolExecutor | None = None
_relay: threading.Thread | None = None
_lock = threading.Lock()


class OffloadFailed(Exception):
    """What the child raised, as "Type: message" (exceptions do not all survive a process boundary); `kind`
    is the exception's class name and `detail` its own message."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


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


def _executor() -> concurrent.futures.ProcessPoolExecutor:
    global _pool, _relay
    from portal import settings as settings_mod

    settings = settings_mod.current()
    if _pool is not None and _pool._lightbox_settings is not settings:  # noqa: SLF001 (another install now)
        shutdown()
    with _lock:
        if _pool is None:
            # spawn, never fork: the web process has threads (the server's, the queue's, aiosqlite's).
            ctx = multiprocessing.get_context("spawn")
            queue = ctx.Queue()
            _pool = concurrent.futures.ProcessPoolExecutor(max_workers=WORKERS, mp_context=ctx,
                                                           initializer=_child_start, initargs=(queue, settings))
            _pool._lightbox_queue = queue  # noqa: SLF001 (closed with the pool)
            _pool._lightbox_settings = settings  # noqa: SLF001
            _relay = threading.Thread(target=_relay_progress, args=(queue,), name="offload-progress", daemon=True)
            _relay.start()
        return _pool


def shutdown() -> None:
    global _pool, _relay
    with _lock:
        pool, _pool = _pool, None
        relay, _relay = _relay, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
        pool._lightbox_queue.put(None)  # noqa: SLF001
        if relay is not None:
            relay.join(timeout=5)


def _resolve(target: str):
    module, name = target.split(":")
    return functools.reduce(getattr, name.split("."), importlib.import_module(module))


def _call_here(target: str, args: tuple):
    """In the child: run `module:function(*args)`, answering (True, result) or (False, kind, message)."""
    try:
        return True, _resolve(target)(*args)
    except Exception as exc:  # the task's own failure, reported to the parent with its reason
        return False, type(exc).__name__, str(exc)


def call(target: str, *args):
    """Run `module:function(*args)` (a plain, blocking function taking picklable ids) in a child process
    when the consumer is embedded, else right here; raises OffloadFailed for what it raised in a child."""
    if not model_process.isolated():
        return _resolve(target)(*args)
    try:
        answer = _executor().submit(_call_here, target, args).result()
    except concurrent.futures.process.BrokenProcessPool as exc:  # the child died (memory?): a fresh one next time
        shutdown()
        raise OffloadFailed("BrokenProcessPool", f"The background process stopped ({exc}).") from exc
    if answer[0]:
        return answer[1]
    raise OffloadFailed(answer[1], answer[2])
