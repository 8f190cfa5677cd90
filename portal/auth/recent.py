"""What the sign-in paths remember in memory, per process: failure counters, addresses an account signed in from,
verified HTTP Basic headers. Bounded (the oldest entry goes first, so a spray of names cannot grow it), each entry
forgotten `ttl` seconds after it was last written, safe across the web loop and the queue's threads."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class Recent(Generic[V]):
    def __init__(self, ttl: float, max_keys: int = 20_000) -> None:
        self.ttl, self.max_keys = ttl, max_keys
        self._rows: OrderedDict[Hashable, tuple[V, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, key: Hashable, now: float) -> V | None:
        row = self._rows.get(key)
        if row is not None and now - row[1] > self.ttl:
            del self._rows[key]
            return None
        return row[0] if row else None

    def _put(self, key: Hashable, value: V, now: float) -> None:
        self._rows[key] = (value, now)
        self._rows.move_to_end(key)
        while len(self._rows) > self.max_keys:
            self._rows.popitem(last=False)

    def get(self, key: Hashable, now: float | None = None) -> V | None:
        with self._lock:
            return self._live(key, time.monotonic() if now is None else now)

    def put(self, key: Hashable, value: V, now: float | None = None) -> None:
        with self._lock:
            self._put(key, value, time.monotonic() if now is None else now)

    def update(self, key: Hashable, change: Callable[[V | None], V], now: float | None = None) -> V:
        """Write `change(the live value or None)` in one step (two threads never both read the old value)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            value = change(self._live(key, now))
            self._put(key, value, now)
            return value

    def pop(self, key: Hashable) -> None:
        with self._lock:
            self._rows.pop(key, None)

    def items(self, now: float | None = None) -> list[tuple[Hashable, V]]:
        """The live entries, oldest first."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return [(k, v) for k, (v, at) in self._rows.items() if now - at <= self.ttl]

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
