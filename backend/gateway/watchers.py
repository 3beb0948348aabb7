"""Who is watching whose payments (WatchPayments), and waking them when events land.

Each stream reads its user's events from the store itself, from its own position, at
its own pace: a slow reader holds only its own stream back, never a payment, and
keeps nothing in memory but one page. What this adds is the wake-up: one poller per
replica reads which users got events since it last looked (every POLL_S, and only
while someone watches) and wakes their streams; events written by any replica of
the tier are found the same way.

Bounded: MAX_STREAMS_PER_USER streams per user, MAX_STREAMS in all.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial

from backend.api import strife_pb2 as pb
from backend.common import loops
from backend.common.db import Database
from backend.common.errors import ResourceExhausted
from backend.gateway import store

POLL_S = 0.1
POLL_LIMIT = 1_000
MAX_STREAMS_PER_USER = 4
MAX_STREAMS = 10_000


class Watchers:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.engine = db.engine.name
        self._by_user: dict[str, set[asyncio.Event]] = {}
        self._count = 0
        self._position: store.Position | None = None  # everyone's events up to here were seen

    @contextlib.contextmanager
    def subscribe(self, username: str):
        """An asyncio.Event set whenever `username` may have new events; the stream clears it."""
        streams = self._by_user.setdefault(username, set())
        if len(streams) >= MAX_STREAMS_PER_USER or self._count >= MAX_STREAMS:
            if not streams:
                del self._by_user[username]
            raise ResourceExhausted(
                f"too many WatchPayments streams ({MAX_STREAMS_PER_USER} per user): close one first",
                reason=pb.Errors.TOO_MANY_STREAMS,
                retry_after_s=None,
            )
        wake = asyncio.Event()
        streams.add(wake)
        self._count += 1
        try:
            yield wake
        finally:
            streams.discard(wake)
            self._count -= 1
            if not streams:
                del self._by_user[username]

    async def run(self) -> None:
        await loops.every(POLL_S, self.poll_once, "watch poller")

    async def poll_once(self) -> None:
        if not self._by_user:
            self._position = None  # nobody watches: start from the end when someone does
            return
        if self._position is None:
            self._position = await self.db.read(partial(store.last_position, username=None, engine=self.engine))
            for streams in self._by_user.values():  # events may have landed before we knew where the end was
                for wake in streams:
                    wake.set()
            return
        found = await self.db.read(
            partial(store.users_with_events_after, after=self._position, limit=POLL_LIMIT, engine=self.engine)
        )
        for xid, event_id, username in found:
            self._position = (xid, event_id)
            for wake in self._by_user.get(username, ()):
                wake.set()
