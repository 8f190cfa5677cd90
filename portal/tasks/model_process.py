"""Model work (torch) for the queue: in this thread, or in a child process kept for it.

`lightbox serve` runs its queue consumer inside the web process; torch there would add hundreds of MB to the
process that holds uploads in flight, and its CPU work would compete with the pages. So the embedded
consumer scores in one long-lived child process (`isolate()`), where the model stays loaded between jobs.
`lightbox worker` processes score in their own threads. Either way the caller gets an awaitable, so the
worker's loop can send the job's heartbeat while the model runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import threading

_isolated = False
_pool: concurrent.futures.ProcessPoolExecutor | None = None
_lock = threading.Lock()


class ModelWorkFailed(Exception):
    """What the model work raised, as "Type: message" (exceptions do not all survive a process boundary)."""


def isolate(on: bool = True) -> None:
    """Score in a child process from now on (the embedded consumer of `lightbox serve`)."""
    global _isolated
    _isolated = on
    if not on:
        shutdown()


def isolated() -> bool:
    return _isolated


def _executor() -> concurrent.futures.ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            # spawn, never fork: the web process has threads (the server's, the queue's, aiosqlite's).
            _pool = concurrent.futures.ProcessPoolExecutor(max_workers=1,
                                                           mp_context=multiprocessing.get_context("spawn"))
        return _pool


def shutdown() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _score(paths: list[str], model_dir: str) -> tuple[bool, object]:
    """In whichever process scores: (True, outcome) or (False, "Type: message")."""
    try:
        from portal.ai.infer import score_series  # torch is imported here, never by the web app

        return True, score_series(paths, model_dir)
    except Exception as exc:  # any failure is the job's, with its reason
        return False, f"{type(exc).__name__}: {exc}"


async def score(paths, model_dir) -> dict:
    """Score a series' files with the model in `model_dir`; raises ModelWorkFailed with the reason."""
    args = ([str(p) for p in paths], str(model_dir))
    if _isolated:
        try:
            ok, value = await asyncio.wrap_future(_executor().submit(_score, *args))
        except concurrent.futures.process.BrokenProcessPool as exc:  # the child died (memory?): a fresh one next time
            shutdown()
            raise ModelWorkFailed(f"The model process stopped ({exc}).") from exc
    else:
        ok, value = await asyncio.to_thread(_score, *args)
    if not ok:
        raise ModelWorkFailed(value)
    return value
