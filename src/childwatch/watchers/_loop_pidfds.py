"""Pidfds read by the loop itself, each through the loop's public ``add_reader``.

The only route of :class:`~.pidfd.PidfdChildWatcher`, and the first of
:class:`~.threaded.ThreadedChildWatcher` (the children registered from a
running loop, while they fit in its fd share): an exit is read and called
back in the loop's own thread, with no thread hop and no wake-up write, at
the cost of asyncio's own pidfd path (one ``add_reader`` and one
``remove_reader`` per child; no fd is held once the child is delivered).

Ownership: a child's :class:`_Reader` sits in :attr:`LoopPidfds._readers`
while it is watched; whoever takes it out (:meth:`LoopPidfds._take`, under the
watcher's lock) owns its pidfd and retires it, in the loop's thread: the
loop stops reading the fd before it is closed.

A loop that closes (or is collected) with children still read lets go of
their readers without telling us: a weak reference to each reader's callable notices
(:meth:`LoopPidfds._reader_dropped`; at ``loop.close()`` on CPython, at the
next garbage collection on PyPy) and hands the child to
:meth:`LoopPidfds._adopt_orphans`, which each watcher defines; every
registration sweeps closed loops too.
"""

from __future__ import annotations

import asyncio
import os
import sys
import weakref
from typing import Callable, Dict, List, Optional, Set, Tuple

from .._contract import call_in_loop, running_loop
from .._syscalls import open_pidfd, read_exit
from ..loops import reader_methods
from ._base import Entry, WatcherBase

Orphan = Tuple[int, Entry]
"""A pidfd and its registered entry, left behind by a loop that closed."""


class _Reader:
    """One child read by a loop: its entry (None once we stop reading it
    ourselves), its pidfd, the loop, and a weak reference to the callable
    the loop holds (its callback tells us when the loop lets go of it)."""

    __slots__ = ("callback", "entry", "fd", "loop", "watcher")

    def __init__(self, watcher: LoopPidfds, entry: Entry, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.watcher = watcher
        self.entry: Optional[Entry] = entry
        self.fd = fd
        self.loop = loop
        self.callback: Optional[weakref.ReferenceType[_Callback]] = None

    def dropped(self, _callback: object) -> None:
        """The loop let go of our callable: if we still read this child, its
        loop closed (or was collected).  (A weak reference's callback, not a
        ``__del__``: PyPy keeps whatever a finalizable object reaches alive
        for one more collection.)"""
        if self.entry is not None and not sys.is_finalizing():  # (at exit: no thread to hand it to)
            self.watcher._reader_dropped(self)


class _Callback:
    """What the loop holds for a :class:`_Reader`, and nothing else does."""

    __slots__ = ("__weakref__", "reader")

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader

    def __call__(self) -> None:  # (no arguments: some loops' add_reader takes none, veloxloop's)
        self.reader.watcher._on_ready(self.reader)


def _in_loop_thread(reader: _Reader, fn: Callable[[_Reader], None]) -> None:
    """``fn(reader)`` now if no other thread runs its loop (the loop's reader
    list is then ours to change), else in the loop's thread."""
    loop = reader.loop
    if (
        loop is running_loop()
        or loop.is_closed()
        or not loop.is_running()
        or not call_in_loop(loop, fn, reader)
    ):
        fn(reader)


class LoopPidfds(WatcherBase):
    """A watcher with the in-loop pidfd route (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._readers: Dict[asyncio.AbstractEventLoop, Dict[int, _Reader]] = {}  # per loop, by fd (lock)
        self._orphaned: List[_Reader] = []  # readers their loop let go of, to adopt (atomic appends)
        self._readerless: Set[type] = set()  # loop classes whose add_reader refused a pidfd

    def _reads_in(self, loop: asyncio.AbstractEventLoop) -> bool:
        """False if loops of ``loop``'s class were seen to refuse ``add_reader``."""
        return type(loop) not in self._readerless

    def _in_loop_fds(self) -> int:
        """The pidfds this route holds (lock held)."""
        return sum(map(len, self._readers.values()))

    def _watch_in_loop(self, entry: Entry, loop: asyncio.AbstractEventLoop) -> None:
        """Watch the new ``entry`` through a pidfd read by ``loop`` and admit it
        (lock held).  Raises what ``pidfd_open`` raises, or what the loop's
        ``add_reader`` raises when ``loop`` runs in this thread or in none:
        nothing is registered then, and no fd is left open.  (From another
        thread the loop is asked to read it in its own.)"""
        fd = open_pidfd(entry.pid)
        reader = _Reader(self, entry, fd, loop)
        try:
            _in_loop_thread(reader, self._arm)
        except BaseException:
            reader.entry = None
            os.close(fd)
            raise
        entry.handle = reader
        readers = self._readers.get(loop)
        if readers is None:
            readers = self._readers[loop] = {}
        readers[fd] = reader
        self._admit(entry)

    def _arm(self, reader: _Reader) -> None:
        if reader.entry is None:
            return  # removed before its loop got to read it
        callback = _Callback(reader)
        try:
            reader_methods(reader.loop)[0](reader.fd, callback)
        except Exception:
            self._readerless.add(type(reader.loop))
            raise
        reader.callback = weakref.ref(callback, reader.dropped)

    def _take(self, reader: _Reader) -> bool:
        """Take ``reader`` out of :attr:`_readers` (lock held); False if it was not there."""
        readers = self._readers.get(reader.loop)
        if readers is None or readers.get(reader.fd) is not reader:
            return False
        del readers[reader.fd]
        if not readers:
            del self._readers[reader.loop]  # an idle watcher holds no loop either
        return True

    def _stop_reading(self, reader: _Reader) -> None:
        """In the loop's thread (or with no thread running it): stop reading a
        taken reader's pidfd and close it."""
        reader.entry = None
        reader.callback = None  # (its weak reference goes first: no callback to run as the loop lets go)
        if not reader.loop.is_closed():
            reader_methods(reader.loop)[1](reader.fd)
        os.close(reader.fd)

    def _on_ready(self, reader: _Reader) -> None:
        """In the loop's thread: the child's pidfd is readable; deliver it right here.

        The status is read through the pidfd before the reader is taken: only
        this thread retires the readers of a running loop (:func:`_in_loop_thread`),
        so the fd stays open meanwhile; and a pidfd names the very process,
        never a newcomer that reused its pid (someone else's reap reads as
        ``(True, None)``)."""
        entry = reader.entry
        if entry is None:
            return
        exited, returncode = read_exit(entry.pid, reader.fd)
        if not exited:
            return  # readable, yet no exit to see: keep watching
        with self._lock:
            if not self._take(reader):
                return  # removed meanwhile: whoever took it retires it
            claimed = self._claim(entry.pid, entry)
        self._stop_reading(reader)
        if claimed is not None:
            self._deliver(claimed, returncode, returncode is not None)

    def _unwatch_in_loop(self, entry: Entry) -> bool:
        """Lock held: stop watching the removed ``entry`` if this route watches
        it (True), retiring its reader unless a delivery already took it."""
        reader = entry.handle
        if not isinstance(reader, _Reader):
            return False
        entry.handle = None
        if self._take(reader):
            _in_loop_thread(reader, self._stop_reading)
        return True

    def _loop_closed(self, entry: Entry) -> bool:
        """True if ``entry`` is (or was) read by a loop that closed."""
        reader = entry.handle
        return isinstance(reader, _Reader) and reader.loop.is_closed()

    def _sweep_closed_loops(self) -> None:
        """Adopt the children of loops that closed (lock held; at each registration)."""
        for loop in [loop for loop in self._readers if loop.is_closed()]:
            self._orphaned.extend(self._readers[loop].values())
        if self._orphaned:
            self._adopt_orphaned()

    def _reader_dropped(self, reader: _Reader) -> None:
        """``reader``'s loop let go of it without us: it closed, or was collected.
        Adopt its child now, unless this thread is inside the watcher (a
        garbage collection may run anywhere): then at the next registration."""
        self._orphaned.append(reader)
        owned = getattr(self._lock, "_is_owned", None)
        if owned is None or not owned():
            self._adopt_orphaned()

    def _adopt_orphaned(self) -> None:
        with self._lock:
            orphans = []
            while self._orphaned:
                reader = self._orphaned.pop()
                entry = reader.entry
                if entry is not None and self._take(reader):
                    reader.entry = None  # its loop no longer reads it: the fd is all that is left
                    orphans.append((reader.fd, entry))
            if orphans:
                self._adopt_orphans(orphans)

    def _adopt_orphans(self, orphans: List[Orphan]) -> None:
        """Lock held: the pidfds (now ours) and entries of a loop that let go of them."""
        raise NotImplementedError

    def _release_readers(self) -> None:
        """Retire every reader left (a closed loop's children, not yet adopted)."""
        with self._lock:
            readers = [reader for by_fd in self._readers.values() for reader in by_fd.values()]
            self._readers.clear()
        for reader in readers:
            _in_loop_thread(reader, self._stop_reading)

    def _close_reader_fds(self) -> None:
        """Close every pidfd here and now, without telling any loop."""
        for by_fd in self._readers.values():
            for reader in by_fd.values():
                reader.entry = None
                os.close(reader.fd)
        self._readers.clear()

    def _after_fork_in_child(self) -> None:
        self._close_reader_fds()
        self._orphaned.clear()
        super()._after_fork_in_child()

    def __del__(self) -> None:
        # Unreachable: no open loop reads any of our pidfds (its reader would
        # hold us), so only readers of closed loops can be left.
        if getattr(self, "_readers", None):
            self._close_reader_fds()
