"""Live sessions in memory, so a call does not wait on the database to know its caller.

The database stays the truth: a miss reads it, logout revokes there first and
then here. Only this gateway process writes sessions, so the memory is never stale.
Bounded: at most MAX_ENTRIES sessions, oldest use dropped first.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from backend.common.db import Database
from backend.gateway import store

MAX_ENTRIES = 50_000


class SessionCache:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._live: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def user_for(self, token: str) -> str | None:
        """The username of a live, unexpired session with this token, or None."""
        digest = store.token_digest(token)
        hit = self._live.get(digest)
        if hit is None:
            hit = await self.db.read(lambda c: store.session_user(c, token))
            if hit is None:
                return None
            self._remember(digest, hit)
        else:
            self._live.move_to_end(digest)
        username, expires_at = hit
        if expires_at < time.time():
            self._live.pop(digest, None)
            return None
        return username

    def _remember(self, digest: str, session: tuple[str, float]) -> None:
        self._live[digest] = session
        while len(self._live) > MAX_ENTRIES:
            self._live.popitem(last=False)

    async def add(self, token: str, username: str, expires_at: float) -> None:
        revoked = await self.db.write(lambda c: store.add_session(c, token, username, expires_at))
        for digest in revoked:
            self._live.pop(digest, None)
        self._remember(store.token_digest(token), (username, expires_at))

    async def revoke(self, token: str) -> None:
        await self.db.write(lambda c: store.revoke_session(c, token))
        self._live.pop(store.token_digest(token), None)
