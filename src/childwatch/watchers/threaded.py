"""ThreadedChildWatcher: no signals; a waiter thread, usable from any thread and loop."""

from __future__ import annotations

import asyncio
import collections
import os
import select
import threading
from typing import Any, Deque, Dict, Optional, Tuple

from .._status import logger, wait_exit
from ._base import Entry, WatcherBase, check_loop


class ThreadedChildWatcher(WatcherBase):
    """Waits in threads; never touches SIGCHLD, works on every loop and without one.

    On Linux one waiter thread per watcher polls a pidfd per child (so a
    thousand children cost one thread and a thousand fds).  Where
    ``pidfd_open`` fails (old kernel, seccomp, fd exhaustion) that child gets
    a thread of its own, blocked in ``waitid(WNOWAIT)``.

    A child registered from a running loop is called back in that loop's
    thread; one registered outside any loop, in the waiter thread.  Either
    way the child is still a zombie while its callback runs: its pid cannot
    be reused before the callback has returned.  :meth:`close`
    stops the waiter thread and closes every pidfd; a per-child fallback
    thread ends when its child exits (it cannot be interrupted).
    :meth:`attach_loop` only validates its argument: no loop is needed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._thread: Optional[threading.Thread] = None
        self._wake_r = -1
        self._wake_w = -1
        self._stop = False
        # (add?, entry) for the waiter thread, which owns every pidfd it polls.
        self._ops: Deque[Tuple[bool, Entry]] = collections.deque()

    _dispatch = WatcherBase._dispatch_to_loop

    def attach_loop(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        check_loop(loop)
        with self._lock:
            self._check_open()

    def _watch(self, entry: Entry) -> None:
        self._probe(entry.pid)
        fd = None
        try:
            fd = os.pidfd_open(entry.pid)
            self._start_waiter()
        except (AttributeError, OSError, RuntimeError) as exc:  # no pidfd, no fds, no thread
            if fd is not None:
                os.close(fd)
                fd = None
            logger.debug("cannot poll a pidfd for %d (%s): waiting in a thread of its own", entry.pid, exc)
        if fd is None:
            threading.Thread(
                target=self._wait_one, args=(entry,), name=f"childwatch-waitpid-{entry.pid}", daemon=True
            ).start()  # its _check waits for our lock, held until the entry is in the table
        entry.handle = fd
        self._entries[entry.pid] = entry
        if fd is not None:
            self._queue(True, entry)

    def _unwatch(self, entry: Entry) -> None:
        if entry.handle is not None:
            self._queue(False, entry)

    def _release_resources(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stop = True  # after close() queued its last op: nothing wakes us later
        self._wake()
        if thread is not threading.current_thread():
            thread.join()

    def _start_waiter(self) -> None:
        if self._thread is not None:
            return
        wake_r, wake_w = os.pipe()
        thread = threading.Thread(target=self._run, name="childwatch-threaded", daemon=True)
        self._wake_r, self._wake_w = wake_r, wake_w
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        try:
            thread.start()
        except BaseException:
            os.close(wake_r)
            os.close(wake_w)
            self._wake_r = self._wake_w = -1
            raise
        self._thread = thread

    def _queue(self, add: bool, entry: Entry) -> None:
        self._ops.append((add, entry))
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the thread is already due to wake up

    def _wait_one(self, entry: Entry) -> None:
        try:
            wait_exit(entry.pid)
        except ChildProcessError:
            pass  # reaped behind our back: _check reports it
        self._check_reporting(entry)

    def _check_reporting(self, entry: Entry, pidfd: Optional[int] = None) -> None:
        """_check in a thread of ours: even SystemExit from a callback is reported, not fatal."""
        try:
            self._check(entry.pid, entry, pidfd)
        except BaseException as exc:
            self._report(entry, exc)

    def _after_fork_in_child(self) -> None:
        for entry in self._entries.values():
            if entry.handle is not None:
                os.close(entry.handle)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._thread, self._wake_r, self._wake_w, self._stop = None, -1, -1, False
        self._ops.clear()
        super()._after_fork_in_child()

    def _run(self) -> None:
        # epoll's wait costs O(ready fds), poll's O(registered fds).
        poller: Any = select.epoll() if hasattr(select, "epoll") else select.poll()
        poller.register(self._wake_r, select.POLLIN)
        polled: Dict[int, Entry] = {}
        try:
            while True:
                for fd, _ in poller.poll():
                    if fd == self._wake_r:
                        self._drain()
                        continue
                    entry = polled.pop(fd)
                    poller.unregister(fd)
                    self._check_reporting(entry, fd)
                    os.close(fd)
                while self._ops:
                    add, entry = self._ops.popleft()
                    fd = entry.handle
                    if add:
                        polled[fd] = entry
                        poller.register(fd, select.POLLIN)
                    elif polled.get(fd) is entry:
                        del polled[fd]
                        poller.unregister(fd)
                        os.close(fd)
                if self._stop:
                    return
        finally:
            for fd in polled:
                os.close(fd)
            if hasattr(poller, "close"):
                poller.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def _drain(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
