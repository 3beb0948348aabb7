"""Live sessions in memory, so most calls do not wait on the database to know their caller.

The database stays the truth, and other replicas of the tier write it too (a
logout there revokes the token here): a session read from it is trusted for
RECHECK_S only, then read again. So a revoked token stops working on every replica
within RECHECK_S, and a logout on this replica at once. Bounded: at most
MAX_ENTRIES sessions, oldest use dropped first.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from backend.common.db import Database
from backend.gateway import store

MAX_ENTRIES = 50_000
RECHECK_S = 0.5


class SessionCache:
    def __init__(self, db: Database, clock=time.monotonic) -> None:
        self.db = db
        self._clock = clock
        self._live: OrderedDict[str, tuple[str, float, float]] = OrderedDict()  # digest -> (user, expires_at, read_at)

    async def user_for(self, token: str) -> str | None:
        """The username of a live, unexpired session with this token, or None."""
        digest = store.token_digest(token)
        hit = self._live.get(digest)
        if hit is None or self._clock() - hit[2] > RECHECK_S:
            found = await self.db.read(lambda c: store.session_user(c, token))
            if found is None:
                self._live.pop(digest, None)
                return None
            hit = self._remember(digest, found)
        else:
            self._live.move_to_end(digest)
        username, expires_at, _ = hit
        if expires_at < time.time():
            self._live.pop(digest, None)
            return None
        return username

    def _remember(self, digest: str, session: tuple[str, float]) -> tuple[str, float, float]:
        entry = (session[0], session[1], self._clock())
        self._live[digest] = entry
        self._live.move_to_end(digest)
        while len(self._live) > MAX_ENTRIES:
            self._live.popitem(last=False)
        return entry

    async def add(self, token: str, username: str, expires_at: float) -> None:
        revoked = await self.db.write(lambda c: store.add_session(c, token, username, expires_at))
        for digest in revoked:
            self._live.pop(digest, None)
        self._remember(store.token_digest(token), (username, expires_at))

    async def revoke(self, token: str) -> None:
        await self.db.write(lambda c: store.revoke_session(c, token))
        self._live.pop(store.token_digest(token), None)
