"""How the long-running processes (serve, worker) ask glibc's allocator to give freed memory back.

Ingest handles many buffers of a few hundred kB (one per image) on several threads. By default glibc
raises its mmap threshold after the first such buffer is freed, so later ones come from per-thread heap
arenas that keep the freed memory: the server grew by ~150 MB through a 2 GB upload and never shrank.
A fixed threshold keeps large buffers in their own mappings (returned on free), and two arenas bound
what the heaps of many threads can hold. Elsewhere (another libc) this is a no-op.

The threshold is 4 MB, not lower: every fresh mapping faults in each of its pages (and the kernel zeroes
them), which cost ~0.3 ms of CPU per 512 kB image buffer on this VM class, several per uploaded image; from
the heap the same buffer is reused warm (12 µs). The trim threshold lets each arena keep up to 32 MB of
freed memory at its top instead of returning it and faulting it in again for the next request: two arenas,
so at most ~64 MB held, far below what those faults cost.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger("lightbox")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 4 * 1024**2
TRIM_THRESHOLD = 32 * 1024**2
ARENA_MAX = 2


def _libc():
    """glibc, or None (another libc, or none to be found): then every policy here is a no-op."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc's own functions, absent elsewhere)
    except (OSError, AttributeError):
        return None
    return libc


def return_freed_memory() -> bool:
    """Set the allocator's policy for this process; True when glibc took it."""
    if (libc := _libc()) is None:
        return False
    mallopt = libc.mallopt
    ok = all(mallopt(option, value) for option, value in ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                                                         (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                                                         (_M_ARENA_MAX, ARENA_MAX)))
    if not ok:
        log.debug("mallopt refused the memory policy")
    return ok


_trim_pending = None  # the loop a trim is scheduled on
_TRIM_DELAY_S = 1.0


def trim_soon() -> None:
    """After a request that held many image buffers at once (a STOW-RS of 50 images, a multi-file form):
    in a second, once its buffers are freed, give the heap's free pages back (malloc_trim). Buffers up to
    MMAP_THRESHOLD live in the heap, and a burst of them would otherwise stay resident (one STOW burst held
    ~80 MB). One trim at a time covers every request of a burst."""
    global _trim_pending
    if _trim_pending is not None and not _trim_pending.is_closed():  # (a closed loop never runs its trim)
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    _trim_pending = loop
    loop.call_later(_TRIM_DELAY_S, _trim)


def _trim() -> None:
    global _trim_pending
    _trim_pending = None
    if (libc := _libc()) is not None:
        libc.malloc_trim(0)


def freeze_startup_objects() -> None:
    """Move everything alive after start-up (modules, routes, templates, caches) out of the collector's
    reach, and collect the young generation less often: a request allocates thousands of short-lived objects,
    and the full collections they set off walked the whole start-up heap again and again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
