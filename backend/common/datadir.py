"""One owner per data directory: a second stack on the same files must not start."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DataDirBusy(RuntimeError):
    pass


def lock(data_dir: Path):
    """Hold an exclusive lock on data_dir/owner.lock for the life of the returned file."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / "owner.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise DataDirBusy(
            f"data directory {data_dir} is in use by {owner}; stop it first or pass another --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"strife pid {os.getpid()}\n")
    handle.flush()
    return handle
