"""Live sessions in memory, so a call does not wait on the database to know its caller.

The database stays the truth, and other replicas of the tier write it too (a logout
there revokes the token here), so a session is trusted for RECHECK_S after it was
last checked against the database. The tokens in use are checked together, in one
read every RECHECK_S / 2 (recheck_forever); a token idle longer is read again when it
is next used. So a token revoked on any replica stops working here within RECHECK_S,
and a logout on this replica at once. Bounded: at most MAX_ENTRIES sessions, oldest
use dropped first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

from backend.common import loops
from backend.common.db import Database
from backend.gateway import store

MAX_ENTRIES = 50_000
RECHECK_S = 0.5
MAX_RECHECKED = 5_000  # tokens checked in one round; the rest are read when next used


@dataclass
class _Session:
    username: str
    expires_at: float  # time.time()
    checked_at: float  # the clock's, when the database last said it is live


class SessionCache:
    def __init__(self, db: Database, clock=time.monotonic) -> None:
        self.db = db
        self._clock = clock
        self._live: OrderedDict[str, _Session] = OrderedDict()  # by token digest
        self._used: set[str] = set()  # digests used since the last recheck

    async def user_for(self, token: str) -> str | None:
        """The username of a live, unexpired session with this token, or None."""
        digest = store.token_digest(token)
        hit = self._live.get(digest)
        if hit is None or self._clock() - hit.checked_at > RECHECK_S:
            checked_at = self._clock()
            found = await self.db.read(lambda c: store.session_user(c, token))
            if found is None:
                self._live.pop(digest, None)
                return None
            hit = self._remember(digest, _Session(found[0], found[1], checked_at))
        else:
            self._live.move_to_end(digest)
        if hit.expires_at < time.time():
            self._live.pop(digest, None)
            return None
        if len(self._used) < MAX_RECHECKED:
            self._used.add(digest)
        return hit.username

    def _remember(self, digest: str, session: _Session) -> _Session:
        self._live[digest] = session
        self._live.move_to_end(digest)
        while len(self._live) > MAX_ENTRIES:
            self._live.popitem(last=False)
        return session

    async def recheck_forever(self) -> None:
        await loops.every(RECHECK_S / 2, self.recheck_once, "session recheck")

    async def recheck_once(self) -> None:
        """Check the tokens used since the last round against the database, in one read."""
        used, self._used = [d for d in self._used if d in self._live], set()
        if not used:
            return
        checked_at = self._clock()
        live = await self.db.read(partial(store.live_sessions, digests=used))
        for digest in used:
            session = self._live.get(digest)
            if session is None:
                continue
            if digest in live:
                session.checked_at = max(session.checked_at, checked_at)
            else:
                self._live.pop(digest, None)

    async def add(self, token: str, username: str, expires_at: float) -> None:
        revoked = await self.db.write(lambda c: store.add_session(c, token, username, expires_at))
        for digest in revoked:
            self._live.pop(digest, None)
        self._remember(store.token_digest(token), _Session(username, expires_at, self._clock()))

    async def revoke(self, token: str) -> None:
        await self.db.write(lambda c: store.revoke_session(c, token))
        self._live.pop(store.token_digest(token), None)
