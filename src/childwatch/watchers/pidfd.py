"""PidfdChildWatcher: a pidfd per child, gathered in one epoll per loop, which
the loop watches through its public add_reader."""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import select
from typing import Callable, Dict, Optional, Tuple

from .. import _fds
from .._contract import call_in_loop, check_loop, running_loop
from .._syscalls import child_status, open_pidfd
from ._base import REGISTERED, Entry, WatcherBase


class _Poller:
    """The pidfds of the children watched on one loop, in one epoll.

    The loop reads the epoll's fd (``add_reader``); a pidfd leaves the epoll
    when it is closed, once its child is delivered or removed.  ``by_fd`` is
    guarded by the watcher's lock: whoever pops a pidfd from it owns that fd
    and closes it.
    """

    __slots__ = ("by_fd", "epoll", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.by_fd: Dict[int, Entry] = {}


def _in_loop_thread(loop: asyncio.AbstractEventLoop, fn: Callable[[_Poller], None], poller: _Poller) -> None:
    """``fn(poller)`` now if no other thread runs ``loop`` (its reader list is
    then ours to change), else in the loop's thread."""
    if (
        loop.is_closed()
        or loop is running_loop()
        or not loop.is_running()
        or not call_in_loop(loop, fn, poller)
    ):
        fn(poller)


class PidfdChildWatcher(WatcherBase):
    """Linux pidfds read by the event loop itself: no signals, no threads.

    Each child is watched on the loop running when it is registered (or, for
    a registration from outside any loop, on the loop given to
    :meth:`attach_loop`).  The pidfds of one loop's children sit in one
    epoll, whose fd the loop watches through its public ``add_reader``, so it
    works on uvloop and other third-party loops too, and a registration
    costs one ``epoll_ctl`` instead of the loop's reader bookkeeping.
    Callbacks run in that loop's thread.  Every pidfd is closed when its
    child is delivered or removed, and a loop's epoll when its last child
    is (or the watcher is closed, or, for a loop closed with children still
    registered, at the next registration): an idle watcher holds no fd.
    The loop's reader holds the watcher while it has children there; one
    garbage-collected with children of closed loops closes their fds.
    """

    def __init__(self) -> None:
        super().__init__()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._pollers: Dict[asyncio.AbstractEventLoop, _Poller] = {}

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
        poller = self._pollers.get(loop) or self._new_poller(loop)
        try:
            fd = open_pidfd(entry.pid)
        except OSError as exc:
            raise type(exc)(
                exc.errno, f"pidfd_open({entry.pid}) failed: {exc.strerror}; {self._advice(exc)}"
            ) from exc
        try:
            poller.epoll.register(fd, select.EPOLLIN)
        except BaseException:
            os.close(fd)
            raise
        entry.handle = (poller, fd)
        poller.by_fd[fd] = entry
        self._admit(entry)

    def _advice(self, exc: OSError) -> str:
        """What to do about ``pidfd_open``'s failure (lock held)."""
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            return "PidfdChildWatcher needs Linux 5.3+ with pidfd_open allowed (use ThreadedChildWatcher otherwise)"
        mine = sum(len(poller.by_fd) + 1 for poller in self._pollers.values())  # pidfds and epolls
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

    def _new_poller(self, loop: asyncio.AbstractEventLoop) -> _Poller:
        """An epoll for ``loop``'s children, read by ``loop`` (lock held)."""
        for closed in [other for other in self._pollers if other.is_closed()]:
            self._drop_poller(self._pollers.pop(closed))
        poller = _Poller(loop)
        try:
            _in_loop_thread(loop, self._arm, poller)
        except BaseException:
            poller.epoll.close()
            raise
        self._pollers[loop] = poller
        return poller

    def _arm(self, poller: _Poller) -> None:
        if not poller.epoll.closed:
            # A bare callable: some loops' add_reader takes no callback arguments (veloxloop).
            poller.loop.add_reader(poller.epoll.fileno(), functools.partial(self._on_ready, poller))

    def _on_ready(self, poller: _Poller) -> None:
        """In the loop's thread: deliver the children whose pidfds are readable."""
        try:
            events = poller.epoll.poll(0)
        except ValueError:  # closed by close() in another thread meanwhile
            return
        for fd, _ in events:
            with self._lock:
                entry = poller.by_fd.pop(fd, None)
            if entry is None:
                continue  # removed meanwhile: its fd is closed by whoever popped it
            kept = False
            try:
                if not self._deliver_if_exited(entry.pid, entry, fd):  # the status is read through the pidfd
                    with self._lock:  # readable, yet no exit to see: keep watching
                        kept = entry.state is REGISTERED and self._table.get(entry.pid) is entry
                        kept = kept and not poller.epoll.closed
                        if kept:
                            poller.by_fd[fd] = entry
            finally:
                if not kept:
                    os.close(fd)
        self._drop_if_idle(poller)

    def _drop_if_idle(self, poller: _Poller) -> None:
        """Let ``poller`` go once it watches nothing: an idle watcher holds no fd."""
        with self._lock:
            if poller.by_fd or self._pollers.get(poller.loop) is not poller:
                return
            del self._pollers[poller.loop]  # a registration from now on makes a new one
        _in_loop_thread(poller.loop, self._disarm, poller)

    def _stale(self, entry: Entry) -> bool:
        handle: Optional[Tuple[_Poller, int]] = entry.handle
        return handle is not None and handle[0].loop.is_closed()

    def _unwatch(self, entry: Entry) -> None:
        """Lock held: close the pidfd unless a delivery already owns it."""
        handle: Optional[Tuple[_Poller, int]] = entry.handle
        entry.handle = None
        if handle is not None:
            poller, fd = handle
            if poller.by_fd.get(fd) is entry:
                del poller.by_fd[fd]
                os.close(fd)  # which also takes it out of the epoll
                self._drop_if_idle(poller)

    def _release_resources(self) -> None:
        with self._lock:
            pollers = list(self._pollers.values())
            self._pollers.clear()
        for poller in pollers:
            self._drop_poller(poller)

    def _drop_poller(self, poller: _Poller) -> None:
        """Close the pidfds left in ``poller`` (children of a closed loop), stop
        the loop reading it and close its epoll."""
        with self._lock:
            fds = list(poller.by_fd)
            poller.by_fd.clear()
        for fd in fds:
            os.close(fd)
        _in_loop_thread(poller.loop, self._disarm, poller)

    def _disarm(self, poller: _Poller) -> None:
        if poller.epoll.closed:
            return
        if not poller.loop.is_closed():
            poller.loop.remove_reader(poller.epoll.fileno())
        poller.epoll.close()

    def _close_fds(self) -> None:
        """Close every pidfd and epoll here and now, without telling any loop."""
        for poller in self._pollers.values():
            for fd in poller.by_fd:
                os.close(fd)
            poller.by_fd.clear()
            poller.epoll.close()
        self._pollers.clear()

    def _after_fork_in_child(self) -> None:
        self._close_fds()
        super()._after_fork_in_child()

    def __del__(self) -> None:
        # Unreachable: no open loop reads any of our epolls (it would hold us),
        # so only pollers of closed loops can be left.
        if getattr(self, "_pollers", None):
            self._close_fds()
