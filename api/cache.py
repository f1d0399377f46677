"""Serialized responses cached in process, keyed on the database's write counters.

Every request first reads the counters (one tiny query); an entry built under other counters is
stale, so a new materialization is visible at the next request. Concurrent misses of one key
share a single computation instead of stampeding the database.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class VersionedCache:
    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[Any, bytes]] = OrderedDict()
        self._inflight: dict[tuple[Hashable, Any], asyncio.Future[bytes]] = {}
        self.hits = 0
        self.misses = 0

    async def get(
        self, key: Hashable, version: Any, compute: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        if version is None:  # nothing ever written through the IO manager: no key to trust
            self.misses += 1
            return await compute()
        entry = self._entries.get(key)
        if entry is not None and entry[0] == version:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]
        flight = self._inflight.get((key, version))
        if flight is not None:
            return await asyncio.shield(flight)
        self.misses += 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[(key, version)] = future
        try:
            body = await compute()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._inflight.pop((key, version), None)
        future.set_result(body)
        self._entries[key] = (version, body)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return body
