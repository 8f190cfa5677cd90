"""Running the portal's async domain functions from Huey's worker threads.

Inside `lightbox serve` the web app's event loop owns the database pool (PostgreSQL's asyncpg
pool is bound to it), so a task hands its database coroutines to that loop and waits. In
`lightbox worker` there is no web loop: each worker thread keeps its own loop, so pooled SQLite
connections are reused from one task to the next. CPU work (torch) stays in the worker thread.
"""

from __future__ import annotations

import asyncio
import threading

_app_loop: asyncio.AbstractEventLoop | None = None
_local = threading.local()


def attach(loop: asyncio.AbstractEventLoop | None) -> None:
    """Called from the web app's lifespan: tasks run their coroutines on this loop (None detaches)."""
    global _app_loop
    _app_loop = loop


def run(coro):
    """Run `coro` to completion from a worker thread and return its result."""
    loop = _app_loop
    if loop is not None and loop.is_running():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()
    own = getattr(_local, "loop", None)
    if own is None or own.is_closed():
        own = _local.loop = asyncio.new_event_loop()
    return own.run_until_complete(coro)
