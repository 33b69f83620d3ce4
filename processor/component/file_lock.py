"""An exclusive lock beside a state file, so two processor instances never share one."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO


def exclusive_lock(path: Path, in_use: Exception) -> IO[bytes]:
    """Hold ``PATH.lock`` exclusively for as long as the returned file stays open; raise
    ``in_use`` (which says what to do) when another instance holds it."""
    handle = open(path.with_name(path.name + ".lock"), "ab")  # noqa: SIM115 - held open
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise in_use from None
    return handle
