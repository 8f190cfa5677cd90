"""A short-lived in-process cache of the rows every API request looks up: the caller's account or token, the
project, its archive, the caller's role in it.

A CAD4TB-style client sends one instance per request with its credentials; looking these rows up through the
ORM each time cost more CPU than storing the instance. Correctness:

- in this process, any write to the watched tables made through Piccolo (the engines in portal/db.py report
  each one) empties the cache, so a change is seen by the very next request;
- another process's change (the CLI, a second server, a worker) is seen within `TTL` seconds.

Callers get a copy of a cached row object (Piccolo rows are mutable; one request's change must not leak into
another's before it is saved).
"""

from __future__ import annotations

import copy
import itertools

from portal.auth.recent import Recent

TTL = 2.0  # seconds a row read here may lag behind another process's change
WATCHED = frozenset({"lb_user", "lb_api_token", "lb_project", "lb_archive", "lb_membership"})
_MAX = 4096  # entries; past it the oldest go first (bounded memory under a spray of names)

_rows: Recent[tuple[int, object]] = Recent(TTL, max_keys=_MAX)  # key -> (generation, value)
_counter = itertools.count(1)
_generation = 0


def changed() -> None:
    """Forget everything (a watched table was written in this process)."""
    global _generation
    _generation = next(_counter)  # atomic under the GIL (writes come from several threads)
    _rows.clear()


def saw_write(tablename: str) -> None:
    """Called by the engines for every INSERT/UPDATE/DELETE that Piccolo sends."""
    if tablename in WATCHED:
        changed()


async def get(key: tuple, load):
    """The value cached under `key` (a copy), else `await load()` (None is cached too: a missing row)."""
    hit = _rows.get(key)
    if hit is not None and hit[0] == _generation:
        return copy.copy(hit[1])
    generation = _generation
    value = await load()
    # A write seen while loading may have changed what was read: keep it only if none was.
    if generation == _generation:
        _rows.put(key, (generation, value))
    return copy.copy(value)
