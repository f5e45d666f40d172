"""Pidfds read by the loop itself: one private epoll per loop, read through the loop's public ``add_reader``.

The only route of :class:`~.pidfd.PidfdChildWatcher`, and the first of
:class:`~.threaded.ThreadedChildWatcher` (the children registered from a
running loop, while they fit in its fd share): an exit is read and called
back in the loop's own thread, with no thread hop and no wake-up write.

Each loop gets a :class:`_Home`: an epoll of our own that the loop reads with
one ``add_reader``.  A child costs a ``pidfd_open`` and an ``epoll_ctl`` (its
pidfd registered ``EPOLLONESHOT``); its exit, a ``waitid`` that reads the
status without reaping and the ``close`` of its pidfd (which takes it out of
the epoll), plus one ``epoll_wait`` for every batch of exits the loop sees.
No selector bookkeeping per child, as asyncio's own pidfd watcher has (an
``add_reader`` and a ``remove_reader`` each).  (``EPOLLONESHOT``: a pidfd a
forked child still holds a copy of outlives our ``close``; disarmed once
reported, it cannot report again.)

Ownership: a child's :class:`_Reader` sits in its home's ``readers`` while it
is watched; whoever takes it out (under the watcher's lock) closes its pidfd,
in any thread.  The loop's thread acts on an event only under the lock, for
the reader registered under that fd *now*: an event for an fd since closed
finds nothing, one for an fd number since reused reads the newcomer's pidfd
(which names its very process) and re-arms it if it has not exited.

An idle home (no child left) is released :data:`IDLE_GRACE` seconds later in
its loop's thread if still idle (on CPython; at once on PyPy), at once if no
thread runs the loop: the loop stops reading it, then it is closed.  A loop that closes (or is
collected) with the home still read lets go of it without telling us: a weak
reference to the callable it held notices (:meth:`_Home.dropped`; at
``loop.close()`` on CPython, at the next garbage collection on PyPy), and the
children still watched there go to :meth:`LoopPidfds._adopt_orphans`, which
each watcher defines; every registration sweeps closed loops too.
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
import weakref
from typing import Callable, Dict, List, Optional, Set, Tuple

from .._contract import call_in_loop, running_loop
from .._syscalls import open_pidfd, read_exit
from ..loops import reader_methods
from ._base import Entry, WatcherBase

Orphan = Tuple[int, Entry]
"""A pidfd and its registered entry, left behind by a loop that closed."""

IDLE_GRACE = 0.05 if sys.implementation.name == "cpython" else 0.0
"""Seconds an idle home is kept on a running loop, for the next child (one
child at a time would otherwise set up and release a home per child).  Zero
where a closed loop's letting go of it shows only at a garbage collection
(PyPy): a loop closed within the grace would leave the epoll open until then."""

_ONE_EXIT = select.EPOLLIN | select.EPOLLONESHOT if sys.platform == "linux" else 0
_BATCH = 256  # exits read per epoll_wait


class _Home:
    """One loop's epoll of pidfds, read by that loop: the children watched
    there, by fd, and a weak reference to the callable the loop holds."""

    __slots__ = ("callback", "epoll", "loop", "readers", "release_queued", "watcher")

    def __init__(self, watcher: LoopPidfds, loop: asyncio.AbstractEventLoop) -> None:
        self.epoll = select.epoll()
        self.watcher = watcher
        self.loop = loop
        self.readers: Dict[int, _Reader] = {}  # (the watcher's lock)
        self.callback: Optional[weakref.ReferenceType[_Callback]] = None
        self.release_queued = False

    def close_pidfds(self) -> None:
        """Close the pidfds of the children still here (lock held): nobody watches them now."""
        for fd in self.readers:
            os.close(fd)
        self.readers.clear()

    def dropped(self, _callback: object) -> None:
        """The loop let go of our callable: if it still reads this home, its loop
        closed (or was collected).  (A weak reference's callback, not a
        ``__del__``: PyPy keeps whatever a finalizable object reaches alive
        for one more collection.)"""
        if self.callback is not None and not sys.is_finalizing():  # (at exit: no thread to hand it to)
            self.watcher._home_dropped(self)


class _Reader:
    """One child watched in a home: its entry and its pidfd."""

    __slots__ = ("entry", "fd", "home")

    def __init__(self, entry: Entry, fd: int, home: _Home) -> None:
        self.entry = entry
        self.fd = fd
        self.home = home


class _Callback:
    """What the loop holds for a :class:`_Home`, and nothing else does."""

    __slots__ = ("__weakref__", "home")

    def __init__(self, home: _Home) -> None:
        self.home = home

    def __call__(self) -> None:  # (no arguments: some loops' add_reader takes none, veloxloop's)
        self.home.watcher._on_ready(self.home)


def _in_loop_thread(home: _Home, fn: Callable[[_Home], None]) -> None:
    """``fn(home)`` now if no other thread runs its loop (the loop's reader
    list is then ours to change), else in the loop's thread."""
    loop = home.loop
    if (
        loop is running_loop()
        or loop.is_closed()
        or not loop.is_running()
        or not call_in_loop(loop, fn, home)
    ):
        fn(home)


class LoopPidfds(WatcherBase):
    """A watcher with the in-loop pidfd route (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._homes: Dict[asyncio.AbstractEventLoop, _Home] = {}  # (lock)
        self._orphaned: List[_Home] = []  # homes their loop let go of, to adopt (atomic appends)
        self._readerless: Set[type] = set()  # loop classes whose add_reader refused an epoll

    def _reads_in(self, loop: asyncio.AbstractEventLoop) -> bool:
        """False if loops of ``loop``'s class were seen to refuse ``add_reader``."""
        return type(loop) not in self._readerless

    def _in_loop_fds(self) -> int:
        """The fds this route holds: pidfds and the homes' epolls (lock held)."""
        return sum(len(home.readers) + 1 for home in self._homes.values())

    def _new_fds_in(self, loop: asyncio.AbstractEventLoop) -> int:
        """The fds watching one more child in ``loop`` takes (lock held)."""
        return 1 if loop in self._homes else 2

    def _watch_in_loop(self, entry: Entry, loop: asyncio.AbstractEventLoop) -> None:
        """Watch the new ``entry`` through a pidfd in ``loop``'s home and admit it
        (lock held).  Raises what ``pidfd_open`` or ``epoll_ctl`` raise, or what
        the loop's ``add_reader`` raises when a home is set up with ``loop``
        running in this thread or in none: nothing is registered then, and no
        fd is left open.  (From another thread the loop is asked to read a new
        home in its own.)"""
        fd = open_pidfd(entry.pid)  # (first: where pidfds fail, no home is made)
        try:
            home = self._homes.get(loop)
            if home is None:
                home = self._open_home(loop)
            try:
                home.epoll.register(fd, _ONE_EXIT)
            except BaseException:
                if not home.readers:
                    self._went_idle(home)
                raise
        except BaseException:
            os.close(fd)
            raise
        entry.handle = home.readers[fd] = _Reader(entry, fd, home)
        self._admit(entry)

    def _open_home(self, loop: asyncio.AbstractEventLoop) -> _Home:
        home = _Home(self, loop)
        try:
            _in_loop_thread(home, self._arm)
        except BaseException:
            home.epoll.close()
            raise
        self._homes[loop] = home
        return home

    def _arm(self, home: _Home) -> None:
        if home.epoll.closed:
            return  # released before its loop got to read it
        callback = _Callback(home)
        try:
            reader_methods(home.loop)[0](home.epoll.fileno(), callback)
        except Exception:
            self._readerless.add(type(home.loop))
            raise
        home.callback = weakref.ref(callback, home.dropped)

    def _on_ready(self, home: _Home) -> None:
        """In the loop's thread: pidfds in ``home`` turned readable; deliver their
        children right here.  A full batch is followed by another: the home is
        left with nothing ready (a loop reading it edge-triggered is told only of
        new readiness)."""
        while True:
            try:
                events = home.epoll.poll(0, _BATCH)
            except ValueError:
                return  # released meanwhile (the loop reads it no more)
            for index, (fd, _) in enumerate(events):
                try:
                    self._on_exit(home, fd)
                except BaseException:
                    self._rearm(home, [fd for fd, _ in events[index + 1 :]])  # not lost: reported again
                    raise
            if len(events) < _BATCH:
                return

    def _on_exit(self, home: _Home, fd: int) -> None:
        """``fd`` in ``home`` was reported readable: deliver its child if it exited.

        The status is read through the pidfd, which names the very process,
        never a newcomer that reused its pid (someone else's reap reads as
        ``(True, None)``)."""
        with self._lock:
            reader = home.readers.get(fd)
            if reader is None:
                return  # closed meanwhile: its remover took it
            entry = reader.entry
            exited, returncode = read_exit(entry.pid, fd)
            if not exited:
                home.epoll.modify(fd, _ONE_EXIT)  # readable (or a stale event), yet no exit: keep watching
                return
            del home.readers[fd]
            os.close(fd)  # (out of the epoll with it)
            claimed = self._claim(entry.pid, entry)
            if not home.readers:
                self._went_idle(home)
        if claimed is not None:
            self._deliver(claimed, returncode, returncode is not None)

    def _rearm(self, home: _Home, fds: List[int]) -> None:
        with self._lock:
            for fd in fds:
                if fd in home.readers:
                    home.epoll.modify(fd, _ONE_EXIT)

    def _went_idle(self, home: _Home) -> None:
        """``home`` has no child left (lock held): release it soon, unless one comes."""
        if not home.release_queued:
            home.release_queued = True
            _in_loop_thread(home, self._queue_release)

    def _queue_release(self, home: _Home) -> None:
        if IDLE_GRACE and home.loop is running_loop():
            home.loop.call_later(IDLE_GRACE, self._release_if_idle, home)
        else:
            self._release_if_idle(home)  # (no thread runs the loop)

    def _release_if_idle(self, home: _Home) -> None:
        """In the loop's thread (or with no thread running it): release ``home`` if it is still idle."""
        with self._lock:
            home.release_queued = False
            if home.readers or self._homes.get(home.loop) is not home:
                return
            del self._homes[home.loop]  # an idle watcher holds no loop either
        self._close_home(home)

    def _close_home(self, home: _Home) -> None:
        """In the loop's thread (or with no thread running it): stop the loop
        reading a home taken out of :attr:`_homes`, and close it."""
        home.callback = None  # (its weak reference goes first: no callback to run as the loop lets go)
        if not home.loop.is_closed() and not home.epoll.closed:
            reader_methods(home.loop)[1](home.epoll.fileno())
        home.epoll.close()

    def _unwatch_in_loop(self, entry: Entry) -> bool:
        """Lock held: stop watching the removed ``entry`` if this route watches
        it (True), closing its pidfd unless a delivery or its closed loop already took it."""
        reader = entry.handle
        if not isinstance(reader, _Reader):
            return False
        entry.handle = None
        home = reader.home
        if home.readers.get(reader.fd) is reader:
            del home.readers[reader.fd]
            os.close(reader.fd)
            if not home.readers:
                self._went_idle(home)
        return True

    def _loop_closed(self, entry: Entry) -> bool:
        """True if ``entry`` is (or was) watched in a loop that closed."""
        reader = entry.handle
        return isinstance(reader, _Reader) and reader.home.loop.is_closed()

    def _sweep_closed_loops(self) -> None:
        """Adopt the children of loops that closed (lock held; at each registration)."""
        for home in self._homes.values():
            if home.loop.is_closed():
                self._orphaned.append(home)
        if self._orphaned:
            self._adopt_orphaned()

    def _home_dropped(self, home: _Home) -> None:
        """``home``'s loop let go of it without us: it closed, or was collected.
        Adopt its children now, unless this thread is inside the watcher (a
        garbage collection may run anywhere): then at the next registration."""
        self._orphaned.append(home)
        owned = getattr(self._lock, "_is_owned", None)
        if owned is None or not owned():
            self._adopt_orphaned()

    def _adopt_orphaned(self) -> None:
        with self._lock:
            orphans: List[Orphan] = []
            while self._orphaned:
                home = self._orphaned.pop()
                if self._homes.get(home.loop) is home:
                    del self._homes[home.loop]
                orphans.extend((fd, reader.entry) for fd, reader in home.readers.items())
                home.readers.clear()  # the pidfds are the orphans' now
                home.callback = None
                home.epoll.close()  # (its loop reads it no more)
            if orphans:
                self._adopt_orphans(orphans)

    def _adopt_orphans(self, orphans: List[Orphan]) -> None:
        """Lock held: the pidfds (now ours) and entries of a loop that let go of them."""
        raise NotImplementedError

    def _release_readers(self) -> None:
        """Release every home (their children were dropped; a closed loop's, not
        yet adopted, have their pidfds closed)."""
        with self._lock:
            homes = list(self._homes.values())
            self._homes.clear()
            for home in homes:
                home.close_pidfds()
        for home in homes:
            _in_loop_thread(home, self._close_home)

    def _close_reader_fds(self) -> None:
        """Close every fd here and now, without telling any loop."""
        for home in self._homes.values():
            home.close_pidfds()
            home.callback = None
            home.epoll.close()
        self._homes.clear()

    def _after_fork_in_child(self) -> None:
        self._close_reader_fds()
        self._orphaned.clear()
        super()._after_fork_in_child()

    def __del__(self) -> None:
        # Unreachable: no open loop reads any of our homes (its callable would
        # hold us), so only homes of closed loops can be left.
        if getattr(self, "_homes", None):
            self._close_reader_fds()
