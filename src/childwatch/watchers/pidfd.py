"""PidfdChildWatcher: a pidfd per child, watched by the loop's public add_reader."""

from __future__ import annotations

import asyncio
import os
from typing import Optional, Tuple

from ._base import Entry, WatcherBase, check_loop, running_loop


class PidfdChildWatcher(WatcherBase):
    """Linux pidfds read by the event loop itself: no signals, no threads.

    Each child is watched on the loop running when it is registered (or, for
    a registration from outside any loop, on the loop given to
    :meth:`attach_loop`), through the loop's public ``add_reader``, so it
    works on uvloop and other third-party loops too.  Callbacks run in that
    loop's thread.  Every pidfd is closed when its child is delivered,
    removed, or the watcher closed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def attach_loop(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        """Set the loop used for registrations made outside a running loop."""
        loop = check_loop(loop)
        with self._lock:
            self._check_open()
            self._loop = loop

    def _watch(self, entry: Entry) -> None:
        here = running_loop()
        loop = here or self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError(
                "PidfdChildWatcher needs an event loop: register children from a "
                "running loop or call attach_loop(loop) first"
            )
        self._probe(entry.pid)
        try:
            fd = os.pidfd_open(entry.pid)
        except OSError as exc:
            raise type(exc)(
                exc.errno,
                f"pidfd_open({entry.pid}) failed: {exc.strerror}; PidfdChildWatcher needs Linux 5.3+ "
                "with pidfd_open allowed (use ThreadedChildWatcher otherwise)",
            ) from exc
        entry.handle = (loop, fd)
        self._entries[entry.pid] = entry
        try:
            if loop is here:
                loop.add_reader(fd, self._on_exit, entry)
            else:
                loop.call_soon_threadsafe(self._add_reader, entry)
        except BaseException:
            del self._entries[entry.pid]
            entry.handle = None
            os.close(fd)
            raise

    def _stale(self, entry: Entry) -> bool:
        handle: Optional[Tuple[asyncio.AbstractEventLoop, int]] = entry.handle
        return handle is not None and handle[0].is_closed()

    def _after_fork_in_child(self) -> None:
        for entry in self._entries.values():
            if entry.handle is not None:
                os.close(entry.handle[1])
        super()._after_fork_in_child()

    def _add_reader(self, entry: Entry) -> None:
        with self._lock:
            handle: Optional[Tuple[asyncio.AbstractEventLoop, int]] = entry.handle
            if handle is not None:
                handle[0].add_reader(handle[1], self._on_exit, entry)

    def _on_exit(self, entry: Entry) -> None:
        handle: Optional[Tuple[asyncio.AbstractEventLoop, int]] = entry.handle
        if handle is None:
            return  # removed meanwhile
        loop, fd = handle
        loop.remove_reader(fd)  # the fd stays open while the status is read through it
        self._check(entry.pid, entry, fd)
        self._drop_fd(entry)

    def _unwatch(self, entry: Entry) -> None:
        handle: Optional[Tuple[asyncio.AbstractEventLoop, int]] = entry.handle
        if handle is None:
            return
        loop = handle[0]
        if loop is running_loop() or loop.is_closed():
            self._drop_fd(entry)
        else:
            try:
                loop.call_soon_threadsafe(self._drop_fd, entry)
            except RuntimeError:  # the loop closed meanwhile
                self._drop_fd(entry)

    def _drop_fd(self, entry: Entry) -> None:
        """Stop reading ``entry``'s pidfd and close it, exactly once."""
        with self._lock:
            handle: Optional[Tuple[asyncio.AbstractEventLoop, int]] = entry.handle
            entry.handle = None
        if handle is None:
            return
        loop, fd = handle
        if not loop.is_closed():
            loop.remove_reader(fd)
        os.close(fd)
