"""Small in-process caches for settings read on every request (parameters, a provider's batch account).

Entries live `ttl` seconds. Any committed PUT/PATCH/DELETE in this process empties every cache (see
`core.deps.get_tx`), so an administrator's change is seen at once by the process that made it, and by the
other API processes within the TTL.
"""

from __future__ import annotations

import time
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_ALL: list[TTLCache[Any, Any]] = []


class TTLCache(Generic[K, V]):
    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._data: dict[K, tuple[V, float]] = {}
        _ALL.append(self)

    def get(self, key: K) -> V | None:
        hit = self._data.get(key)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def put(self, key: K, value: V) -> None:
        self._data[key] = (value, time.monotonic() + self.ttl)

    def clear(self) -> None:
        self._data.clear()


def clear_all() -> None:
    for cache in _ALL:
        cache.clear()
