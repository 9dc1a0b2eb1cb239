"""Server-sent events: one cheap signature query per process per second, shared by every
open page, and a ``change`` event to each page whose signature is out of date."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from aar.server.dashboard import data
from aar.server.db import Database

POLL_S = 1.0


def version_id(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


class Watcher:
    """The latest signature of the database, refreshed at most every ``poll_s``."""

    def __init__(self, db: Database, poll_s: float = POLL_S) -> None:
        self.db = db
        self.poll_s = poll_s
        self._at = -1e9
        self._parts: dict[str, str] = {}
        self._lock = asyncio.Lock()

    def read(self) -> dict[str, str]:
        with self.db.read() as s:
            return data.version(s)

    async def current(self) -> dict[str, str]:
        if time.monotonic() - self._at < self.poll_s:
            return self._parts
        async with self._lock:
            if time.monotonic() - self._at >= self.poll_s:
                self._parts = await run_in_threadpool(self.read)
                self._at = time.monotonic()
        return self._parts


def event(vid: str, what: list[str]) -> str:
    return f"id: {vid}\nevent: change\ndata: {json.dumps({'version': vid, 'what': what})}\n\n"


async def stream(request: Request, watcher: Watcher, since: str | None,
                 lifetime_s: float) -> AsyncIterator[str]:
    """Events until the page goes away or ``lifetime_s`` passes (the browser then
    reconnects with ``Last-Event-ID``, so nothing is missed and a server can shut down)."""
    yield "retry: 1500\n\n"
    last_id, last_parts = since, None
    end = time.monotonic() + lifetime_s
    beat = time.monotonic()
    while time.monotonic() < end:
        if await request.is_disconnected():
            return
        parts = await watcher.current()
        vid = version_id(parts)
        if vid != last_id:
            what = (sorted(parts) if last_parts is None
                    else sorted(k for k in parts if parts[k] != last_parts.get(k)))
            if last_id is not None or last_parts is not None:
                yield event(vid, what)
            last_id = vid
            beat = time.monotonic()
        elif time.monotonic() - beat > 15:
            yield ": ping\n\n"
            beat = time.monotonic()
        last_parts = parts
        await asyncio.sleep(min(0.5, watcher.poll_s))
