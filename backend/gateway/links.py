"""Which accounts each user holds, in memory after a read.

Other replicas of the tier link accounts too, so a read is trusted for RECHECK_S
only. Links are only ever added, so a stale entry can at worst miss an account linked
on another replica a moment ago: a caller that finds an account missing asks again
with fresh=True before refusing. This replica's own links update it at once.
Bounded: at most MAX_USERS users cached.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from backend.common.db import Database
from backend.gateway import store

MAX_USERS = 50_000
RECHECK_S = 5.0


class LinkCache:
    def __init__(self, db: Database, clock=time.monotonic) -> None:
        self.db = db
        self._clock = clock
        self._links: OrderedDict[str, tuple[tuple[tuple[str, str], ...], float]] = OrderedDict()

    async def of(self, username: str, fresh: bool = False) -> tuple[tuple[str, str], ...]:
        hit = self._links.get(username)
        if hit is None or fresh or self._clock() - hit[1] > RECHECK_S:
            return self._set(username, await self.db.read(lambda c: store.links_of(c, username)))
        self._links.move_to_end(username)
        return hit[0]

    def _set(self, username: str, links) -> tuple[tuple[str, str], ...]:
        entry = tuple(links)
        self._links[username] = (entry, self._clock())
        self._links.move_to_end(username)
        while len(self._links) > MAX_USERS:
            self._links.popitem(last=False)
        return entry

    async def link(self, username: str, bank: str, account_id: str) -> tuple[tuple[str, str], ...]:
        return self._set(username, await self.db.write(lambda c: store.add_link(c, username, bank, account_id)))
