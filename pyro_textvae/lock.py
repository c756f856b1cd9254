"""An exclusive lock on a run (or results) folder for the whole life of a process that writes it.

A writer (``train``, ``train --resume``, ``evaluate`` writing ``eval.json``, ``experiment``) opens
``FOLDER/.lock`` and takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on it, then writes its process id
into it. A second writer fails at once with :class:`FolderInUseError` naming the folder and that
id; readers (``sample``, ``reconstruct``, ``compare``) take no lock. The kernel drops the lock when
the holder's file is closed, so a killed process never leaves a stale lock; the ``.lock`` file
itself stays (removing it would race with a process opening it) and counts as no content.
``flock`` locks work between processes on one machine's local file systems. The lock is opened
without following links (``O_NOFOLLOW``) and only as a regular file: a ``.lock`` that is a
symbolic link, a folder or a FIFO is refused naming it, so no process id is written through it.
"""
from __future__ import annotations

import fcntl
import os
import time
from types import TracebackType

from .errors import CheckpointError
from .io import make_folder, open_regular

LOCK_NAME = ".lock"


class FolderInUseError(CheckpointError):
    """Another process holds the folder's lock."""


def _holder(fd: int) -> str:
    """The process id the holder wrote (it writes just after locking: wait a moment for it)."""
    for _ in range(50):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return f"process {text}"
        time.sleep(0.01)
    return "another process"


class FolderLock:
    """Hold ``folder``'s lock from construction until :meth:`release` (or the end of a ``with``);
    creates ``folder`` when it does not exist."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = make_folder(folder)
        path = self.folder / LOCK_NAME
        try:
            fd = open_regular(path, os.O_RDWR | os.O_CREAT, follow=False, mode=0o644)
        except OSError as error:
            raise CheckpointError(f"{path}: cannot open the folder's lock ({error.strerror or error})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FolderInUseError(f"folder {str(self.folder)!r} is in use by {holder} (it holds {path}); "
                                   "wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the lock up (a second call does nothing)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()
