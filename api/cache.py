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


class CachedGets:
    """ASGI middleware: a repeat of a GET that answered 200 is served from memory, skipping
    routing and parameter parsing, until the database's version changes.

    Keyed on the exact path and query string; the version is read before the request runs, so
    an answer computed while a write commits is stored under the older version and never served
    after it. Paths whose answer depends on more than stored data (health: the clock and the
    database's reachability) are never cached. Anything unusual falls through to the app.
    """

    def __init__(
        self,
        app: Any,
        version: Callable[[], Awaitable[Any]],
        skip: tuple[str, ...],
        max_bytes: int = 128 * 2**20,
    ) -> None:
        self.app = app
        self.version = version
        self.skip = skip
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, bytes], tuple[Any, list, bytes]] = OrderedDict()
        self._bytes = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or path == "/"
            or path.startswith(self.skip)
        ):
            await self.app(scope, receive, send)
            return
        try:
            version = await self.version()
        except Exception:  # the app answers it properly (503 and the like)
            await self.app(scope, receive, send)
            return
        key = (path, scope.get("query_string", b""))
        entry = self._entries.get(key)
        if version is not None and entry is not None and entry[0] == version:
            self._entries.move_to_end(key)
            await send({"type": "http.response.start", "status": 200, "headers": entry[1]})
            await send({"type": "http.response.body", "body": entry[2]})
            return
        captured: dict[str, Any] = {"status": None, "headers": [], "body": []}

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message.get("headers", [])
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        if captured["status"] == 200 and version is not None:
            self._store(key, version, list(captured["headers"]), b"".join(captured["body"]))

    def _store(self, key: tuple[str, bytes], version: Any, headers: list, body: bytes) -> None:
        if len(body) > self.max_bytes // 8:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old[2])
        self._entries[key] = (version, headers, body)
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self._bytes -= len(dropped)
