"""Which accounts each user holds, in memory after the first read.

Only this gateway process links accounts, and it updates the memory after each
write, so the memory is never stale. Bounded: at most MAX_USERS users cached.
"""

from __future__ import annotations

from collections import OrderedDict

from backend.common.db import Database
from backend.gateway import store

MAX_USERS = 50_000


class LinkCache:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._links: OrderedDict[str, tuple[tuple[str, str], ...]] = OrderedDict()

    async def of(self, username: str) -> tuple[tuple[str, str], ...]:
        links = self._links.get(username)
        if links is None:
            links = tuple(await self.db.read(lambda c: store.links_of(c, username)))
            self._set(username, links)
        else:
            self._links.move_to_end(username)
        return links

    def _set(self, username: str, links) -> None:
        self._links[username] = tuple(links)
        while len(self._links) > MAX_USERS:
            self._links.popitem(last=False)

    async def link(self, username: str, bank: str, account_id: str) -> tuple[tuple[str, str], ...]:
        links = await self.db.write(lambda c: store.add_link(c, username, bank, account_id))
        self._set(username, links)
        return self._links[username]
