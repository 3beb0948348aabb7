"""Named fault points for tests: off unless STRIFE_TEST_MODE=1 and STRIFE_FAULTS names them.

STRIFE_FAULTS is a comma-separated list of point names, e.g.
`gateway.crash_after_commit_record`. Outside test mode a non-empty STRIFE_FAULTS
stops the process at start, so a fault can never be switched on in production.
"""

from __future__ import annotations

import os
import sys

from backend.common import jsonlog
from backend.common.events import Event

POINTS = {
    "bank.crash_after_yes": "a bank exits right after writing its YES vote, before answering",
    "bank.hang_after_yes": "a bank writes its YES vote and then never answers",
    "bank.slow_commits": "a bank waits SLOW_COMMIT_S before it applies a commit (a slow disk, say)",
    "bank.slow_start": "a bank waits SLOW_START_S before it listens (a slow host at start-up, say)",
    "gateway.no_heartbeats": "a gateway replica serves but never heartbeats (as if the store were slow for it)",
    "gateway.crash_before_claim_on_disk": "the gateway exits once the votes came, not waiting for its claim's commit",
    "gateway.crash_before_decision": "the gateway exits after the votes came, before recording a decision",
    "gateway.crash_after_commit_record": "the gateway exits after recording COMMIT, before sending it",
    "gateway.crash_after_first_commit": "the gateway exits after sending COMMIT to one bank only",
}


SLOW_COMMIT_S = 1.2  # under the gateway's DECISION_SEND_TIMEOUT_S: the commits still land in one try
SLOW_START_S = 2.0  # longer than a gateway takes to start serving


def _enabled() -> frozenset[str]:
    names = frozenset(n.strip() for n in os.environ.get("STRIFE_FAULTS", "").split(",") if n.strip())
    if not names:
        return names
    if os.environ.get("STRIFE_TEST_MODE") != "1":
        sys.exit("STRIFE_FAULTS is set but STRIFE_TEST_MODE is not 1: fault points are for tests only")
    unknown = names - POINTS.keys()
    if unknown:
        sys.exit(f"unknown fault points: {', '.join(sorted(unknown))}; known: {', '.join(sorted(POINTS))}")
    return names


ENABLED = _enabled()


def active(name: str) -> bool:
    assert name in POINTS, name
    return name in ENABLED


def crash(name: str) -> None:
    """Exit at once, as SIGKILL would, if fault point `name` is on."""
    if active(name):
        jsonlog.emit(Event.FAULT, level="warning", msg=name)
        jsonlog.flush()
        os._exit(77)
