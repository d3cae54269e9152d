"""One writer per workdir: an exclusive `fcntl.flock` on `WORKDIR/.lock`, which holds the
writer's host and pid.

The kernel drops the lock when its process ends, however it ends, so a lock file left by a
killed run is stale by construction: the next writer takes it over and says whose it was. The
file is removed on release, so a refused run leaves the workdir as it found it. Guaranteed on
one machine's local file system; on network file systems flock is as reliable as the server's
lock support.
"""
from __future__ import annotations

import errno
import fcntl
import os
import pathlib
import socket

from absl import logging

from training.errors import UserError

LOCK_FILE = ".lock"


class WorkdirLockedError(UserError):
    """Another process is writing into the workdir."""


class WorkdirLock:
    """`with WorkdirLock(workdir, purpose="train"):` holds the workdir exclusively, or raises
    `WorkdirLockedError` naming the holder."""

    def __init__(self, workdir: str | pathlib.Path, purpose: str = "train"):
        self.path = pathlib.Path(workdir) / LOCK_FILE
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                raise WorkdirLockedError(
                    f"{self.path.parent} is in use by {holder}; wait for that run to end (or stop it), or use "
                    "another workdir") from None
            # The holder before us may have removed the file after we opened it: lock the current one.
            if self.path.exists() and os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                break
            os.close(fd)
        previous = os.pread(fd, 512, 0).decode(errors="replace").strip()
        if previous:
            logging.warning("Taking over the stale lock of %s in %s (that process is gone)", previous,
                            self.path.parent)
        mine = f"score-sde {self.purpose} on host {socket.gethostname()} pid {os.getpid()}".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, mine, 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
