"""Exclusive use of a work folder or cache by one process: a second process that wants it stops with a message
naming the holder, instead of both writing the same files."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class LockedError(RuntimeError):
    """Another process holds the lock; the message names it and the lock file."""


@contextlib.contextmanager
def exclusive(lock_file: str | Path, what: str):
    """Hold `lock_file` (created if absent) for the block; LockedError at once when another process holds it. The
    holder's pid is written into the file; the operating system releases the lock when the holder exits or dies."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise LockedError(
                f"{what} is in use by process {holder} (lock {lock_file}); wait for it to finish or stop it, then rerun"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
