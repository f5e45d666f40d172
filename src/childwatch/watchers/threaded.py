"""ThreadedChildWatcher: no signals; a waiter thread, usable from any thread and loop."""

from __future__ import annotations

import asyncio
import collections
import os
import select
import threading
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from .._status import logger, wait_exit
from .._syscalls import pidfd_open
from ._base import Entry, WatcherBase, check_loop, read_exit

_RETIRE_JOIN_TIMEOUT = 1.0
"""Seconds a loop waits at most for a retiring waiter thread to end (it has
nothing left to do but return)."""


class _Waiter:
    """One run of the waiter thread: its wake-up pipe and its queue of
    ``(add?, entry)`` operations.  The thread owns every pidfd it polls and
    ends when it polls nothing and nothing is queued; the next registration
    starts a new run."""

    __slots__ = ("ops", "thread", "wake_r", "wake_w")

    def __init__(self, target: Callable[[_Waiter], None]) -> None:
        self.ops: Deque[Tuple[bool, Entry]] = collections.deque()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.thread = threading.Thread(target=target, args=(self,), name="childwatch-threaded", daemon=True)
        try:
            self.thread.start()
        except BaseException:
            self.close_pipe()
            raise

    def queue(self, add: bool, entry: Entry) -> None:
        self.ops.append((add, entry))
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the thread is already due to wake up

    def drain(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def close_pipe(self) -> None:
        os.close(self.wake_r)
        os.close(self.wake_w)


def _forget(poller: Any, fd: int) -> None:
    """Stop polling ``fd`` and close it.  Unregistered first, even from epoll:
    epoll drops a closed fd only once no other process (a forked child) holds it."""
    poller.unregister(fd)
    os.close(fd)


class ThreadedChildWatcher(WatcherBase):
    """Waits in threads; never touches SIGCHLD, works on every loop and without one.

    On Linux one waiter thread per watcher polls a pidfd per child (so a
    thousand children cost one thread and a thousand fds).  Where
    ``pidfd_open`` fails (old kernel, seccomp, fd exhaustion) that child gets
    a thread of its own, blocked in ``waitid(WNOWAIT)``.

    A child registered from a running loop is called back in that loop's
    thread; one registered outside any loop, in the waiter thread.  Either
    way the child is still a zombie while its callback runs: its pid cannot
    be reused before the callback has returned.  The waiter thread runs only
    while there are children to wait for: an idle watcher holds no thread
    and no fd, and while it has children the thread keeps it alive (an
    abandoned watcher still delivers them).  :meth:`close` drops the
    children and waits for the waiter thread to end; a per-child fallback
    thread ends when its child exits (it cannot be interrupted).
    :meth:`attach_loop` only validates its argument: no loop is needed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._waiter: Optional[_Waiter] = None  # the running waiter thread, if any
        # The waiter thread that retired last, while it delivers its last batch.
        self._retiring: Optional[threading.Thread] = None

    _dispatch = WatcherBase._dispatch_to_loop

    def attach_loop(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        check_loop(loop)

    def _watch(self, entry: Entry) -> None:
        self._probe(entry.pid)
        fd = None
        try:
            fd = pidfd_open(entry.pid)
            if self._waiter is None:
                self._waiter = _Waiter(self._run)
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
            assert self._waiter is not None
            self._waiter.queue(True, entry)

    def _unwatch(self, entry: Entry) -> None:
        if entry.handle is not None:
            # A polled entry is in the waiter's table or queue, so its thread
            # runs: it drops the handle (lock not held) only as it takes the
            # entry out, and _retire (under the lock) comes after that.
            assert self._waiter is not None
            self._waiter.queue(False, entry)

    def _release_resources(self) -> None:
        """Wait for the waiter thread, which ends now that close() unqueued
        every child (unless another thread registers one meanwhile), and for
        one that retired just before (what it still delivers, close() dropped)."""
        epoch = self._epoch
        waiter, retiring = self._waiter, self._retiring
        me = threading.current_thread()
        if retiring is not None and retiring is not me:
            retiring.join(_RETIRE_JOIN_TIMEOUT)
        if waiter is None or waiter.thread is me:
            return
        while waiter.thread.is_alive() and self._closed and self._epoch == epoch:
            waiter.thread.join(0.1)

    def _wait_one(self, entry: Entry) -> None:
        try:
            wait_exit(entry.pid)
        except ChildProcessError:
            pass  # reaped behind our back: _check reports it
        self._reporting(entry, self._check, entry.pid, entry)

    def _reporting(self, entry: Entry, deliver: Callable[..., object], *args: Any) -> None:
        """``deliver(*args)`` in a thread of ours: even SystemExit from a callback is reported, not fatal."""
        try:
            deliver(*args)
        except BaseException as exc:
            self._report(entry, exc)

    def _after_fork_in_child(self) -> None:
        for entry in self._entries.values():
            if entry.handle is not None:
                os.close(entry.handle)
        if self._waiter is not None:
            self._waiter.close_pipe()  # its thread is not in this process
            self._waiter = None
        self._retiring = None
        super()._after_fork_in_child()

    def _run(self, waiter: _Waiter) -> None:
        # epoll's wait costs O(ready fds), poll's O(registered fds).
        poller: Any = select.epoll() if hasattr(select, "epoll") else select.poll()
        poller.register(waiter.wake_r, select.POLLIN)
        polled: Dict[int, Entry] = {}
        spent: List[int] = []  # pidfds done with, closed once this round's exits are handed over
        last = False
        try:
            while not last:
                exits = []
                for fd, _ in poller.poll():
                    if fd == waiter.wake_r:
                        waiter.drain()
                        continue
                    entry = polled.pop(fd)
                    entry.handle = None  # no longer ours to unqueue: _unwatch leaves it be
                    exits.append((entry, read_exit(entry.pid, fd)))  # a pidfd is readable once it exited
                    spent.append(fd)
                while waiter.ops:
                    add, entry = waiter.ops.popleft()
                    fd = entry.handle
                    if add:
                        polled[fd] = entry
                        poller.register(fd, select.POLLIN)
                    elif polled.get(fd) is entry:
                        del polled[fd]
                        entry.handle = None
                        spent.append(fd)
                last = not polled and self._retire(waiter)
                here = self._hand_over(exits, waiter.thread if last else None)
                while spent:
                    _forget(poller, spent.pop())
                if last:
                    self._close_waiter(waiter, poller)  # before any status is delivered in this thread
                for entry, returncode in here:
                    self._reporting(entry, self._deliver_exit, entry.pid, entry, returncode)
        except BaseException:
            logger.exception("the waiter thread of %r failed; its children are no longer watched", self)
            with self._lock:
                if self._waiter is waiter:
                    self._waiter = None
            for fd in [*polled, *spent]:
                os.close(fd)
            if not last:
                self._close_waiter(waiter, poller)
            raise
        finally:
            with self._lock:
                if self._retiring is waiter.thread:
                    self._retiring = None  # a finished thread must not be kept (nor be seen dangling)

    def _hand_over(
        self, exits: List[Tuple[Entry, Tuple[bool, Optional[int]]]], retiring: Optional[threading.Thread]
    ) -> List[Tuple[Entry, Optional[int]]]:
        """Hand the exits one poll found to their loops, before this thread
        closes what it is done with (a loop may be about to close); return
        those to deliver in this thread (no loop, or it closed).

        From a ``retiring`` thread (this batch is its last act), a loop's
        exits go over whole, and the loop joins the thread before delivering
        them: code that learns a status there (a test checking for leaked
        threads after its last child, say) finds the watcher idle, with no
        thread and no fd."""
        here: List[Tuple[Entry, Optional[int]]] = []
        by_loop: Dict[asyncio.AbstractEventLoop, List[Tuple[Entry, Optional[int]]]] = {}
        for entry, (exited, returncode) in exits:
            if not exited:
                continue
            if entry.loop is None:
                here.append((entry, returncode))
            elif retiring is not None:
                by_loop.setdefault(entry.loop, []).append((entry, returncode))
            else:
                self._reporting(entry, self._deliver_exit, entry.pid, entry, returncode)  # to its loop
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._deliver_after, retiring, batch)
            except RuntimeError:  # the loop closed: deliver here, as _dispatch_to_loop does
                here += batch
        return here

    def _deliver_after(
        self, thread: Optional[threading.Thread], batch: List[Tuple[Entry, Optional[int]]]
    ) -> None:
        """In the loop's thread: wait for ``thread`` to end (it only returns
        now; bounded all the same), then deliver ``batch``."""
        if thread is not None:
            thread.join(_RETIRE_JOIN_TIMEOUT)
        for entry, returncode in batch:
            claimed = self._claim(entry.pid, entry)
            if claimed is not None:
                self._deliver_in_loop(claimed, returncode, returncode is not None)

    def _retire(self, waiter: _Waiter) -> bool:
        """True if ``waiter``'s thread may end: nothing is queued for it (and
        nothing can be: :meth:`_watch` queues under the lock, or starts a new one)."""
        with self._lock:
            if waiter.ops:
                return False
            if self._waiter is waiter:
                self._waiter = None
            self._retiring = waiter.thread
            return True

    @staticmethod
    def _close_waiter(waiter: _Waiter, poller: Any) -> None:
        if hasattr(poller, "close"):
            poller.close()
        waiter.close_pipe()
