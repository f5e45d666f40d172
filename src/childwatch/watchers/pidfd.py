"""PidfdChildWatcher: a pidfd per child, read by the loop through its public add_reader."""

from __future__ import annotations

import asyncio
import errno
import os
from typing import List, Optional

from .. import _fds
from .._contract import check_loop, running_loop
from .._syscalls import child_status
from ._base import Entry
from ._loop_pidfds import LoopPidfds, Orphan


class PidfdChildWatcher(LoopPidfds):
    """Linux pidfds read by the event loop itself: no signals, no threads.

    Each child is watched on the loop running when it is registered (or, for
    a registration from outside any loop, on the loop given to
    :meth:`attach_loop`), through a pidfd that loop reads with its public
    ``add_reader``, so it works on uvloop and other third-party loops too.
    Callbacks run in that loop's thread.  Every pidfd is closed when its
    child is delivered or removed (or the watcher is closed, or the loop
    closes): an idle watcher holds no fd.  The children of a loop closed before they exit are never called
    back (no thread is there to wait for them); they stay registered, and a
    registration of their pid watches it afresh.  The loop's reader holds
    the watcher while it has children there.
    """

    def __init__(self) -> None:
        super().__init__()
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def attach_loop(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        """Set the loop used for registrations made outside a running loop
        (None: only registrations from a running loop work).  Attaching a
        closed watcher to a loop reopens it."""
        loop = check_loop(loop)
        with self._lock:
            self._loop = loop
            if loop is not None:
                self._closed = False

    def is_active(self) -> bool:
        """True if a registration made here and now has a loop to watch it on."""
        if running_loop() is not None:
            return True
        loop = self._loop
        return loop is not None and not loop.is_closed()

    def _watch(self, entry: Entry) -> None:
        loop = entry.loop or self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError(
                "PidfdChildWatcher needs an event loop: register children from a "
                "running loop or call attach_loop(loop) first"
            )
        child_status(entry.pid)
        self._sweep_closed_loops()
        try:
            self._watch_in_loop(entry, loop)
        except OSError as exc:
            raise type(exc)(
                exc.errno, f"pidfd_open({entry.pid}) failed: {exc.strerror}; {self._advice(exc)}"
            ) from exc

    def _advice(self, exc: OSError) -> str:
        """What to do about ``pidfd_open``'s failure (lock held)."""
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            return "PidfdChildWatcher needs Linux 5.3+ with pidfd_open allowed (use ThreadedChildWatcher otherwise)"
        mine = self._in_loop_fds()
        soft = _fds.soft_limit()
        held = _fds.held()
        cause = "the system's file table is full" if exc.errno == errno.ENFILE else "the fd limit is reached"
        return (
            f"{cause}: this process holds {'all its' if held is None else held} fds, its soft RLIMIT_NOFILE "
            f"is {soft}, {mine} of them are this watcher's (a pidfd per child, an epoll per loop); use "
            "ThreadedChildWatcher (or default_watcher()), which waits for any number of children within "
            f"{_fds.DEFAULT_FD_SHARE:.0%} of the limit, or raise the soft limit "
            "(resource.setrlimit(resource.RLIMIT_NOFILE, ...))"
        )

    def _adopt_orphans(self, orphans: List[Orphan]) -> None:
        """No thread to wait in: the children of a closed loop stay registered,
        unwatched (a registration of their pid watches it afresh), their pidfds closed."""
        for fd, _ in orphans:
            os.close(fd)

    _stale = LoopPidfds._loop_closed

    def _unwatch(self, entry: Entry) -> None:
        self._unwatch_in_loop(entry)

    def _release_resources(self) -> None:
        self._release_readers()
