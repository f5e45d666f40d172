"""ThreadedChildWatcher: no signals; pidfds read by the loop, at most two waiter threads beyond; any thread and loop."""

from __future__ import annotations

import asyncio
import collections
import os
import select
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from .. import _fds
from .._contract import call_in_loop, check_loop
from .._errors import logger
from .._syscalls import child_status, open_pidfd, peek_any, read_exit
from ._base import REGISTERED, Entry, WatcherBase, exit_of, spawned_here, theft_check_delay
from ._loop_pidfds import LoopPidfds, Orphan

_RETIRE_JOIN_TIMEOUT = 1.0
"""Seconds a loop waits at most for a retiring waiter thread to end (it has
nothing left to do but return)."""

_BUDGET_TTL = 1.0
"""Seconds the fd share read from the soft ``RLIMIT_NOFILE`` is used before it is read again."""

_WAITER_FDS = 3
"""The fds of a pidfd waiter run besides its pidfds: its wake-up pipe and its epoll."""

_FDLESS_FIRST_DELAY = 0.001
"""Seconds the fd-less waiter first waits for an exited child it cannot
deliver (another code's, or one of ours being delivered) to be reaped before
it checks its children one by one; the wait doubles while the same child
stays, up to :func:`~._base.theft_check_delay` for as many children."""

Exit = Tuple[Entry, Tuple[bool, Optional[int]]]
"""An entry and what :func:`read_exit` read of it."""


class _WaiterThread(threading.Thread):
    """A waiter's daemon thread.  Several threads may join it at once (each
    loop it delivers to, and close()): their joins take turns, because PyPy
    3.9's ``Thread.join`` raises (RuntimeError or AssertionError in
    ``_wait_for_tstate_lock``) when two threads join one thread as it ends."""

    def __init__(self, target: Callable[..., None], name: str, args: Tuple[Any, ...] = ()) -> None:
        super().__init__(target=target, args=args, name=name, daemon=True)
        self._join_turn = threading.Lock()

    def join(self, timeout: Optional[float] = None) -> None:
        if timeout is None:
            with self._join_turn:
                super().join()
            return
        deadline = time.monotonic() + timeout
        if self._join_turn.acquire(timeout=max(timeout, 0)):
            try:
                super().join(max(deadline - time.monotonic(), 0))
            finally:
                self._join_turn.release()


class _Waiter:
    """One run of the pidfd waiter thread: its wake-up pipe, its epoll and its
    queue of ``(add?, entry)`` operations.  The thread owns every pidfd it
    polls and ends when it polls nothing and nothing is queued; the next
    registration with a pidfd starts a new run."""

    __slots__ = ("ops", "poller", "thread", "wake_r", "wake_w")

    def __init__(self, target: Callable[[_Waiter], None]) -> None:
        self.ops: Deque[Tuple[bool, Entry]] = collections.deque()
        self.wake_r, self.wake_w = os.pipe()
        try:
            os.set_blocking(self.wake_r, False)
            os.set_blocking(self.wake_w, False)
            # epoll's wait costs O(ready fds), poll's O(registered fds).
            self.poller: Any = select.epoll() if hasattr(select, "epoll") else select.poll()
        except BaseException:
            self.close_pipe()
            raise
        self.poller.register(self.wake_r, select.POLLIN)
        self.thread = _WaiterThread(target, "childwatch-threaded", (self,))
        try:
            self.thread.start()
        except BaseException:
            self.close_fds()
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

    def close_fds(self) -> None:
        if hasattr(self.poller, "close"):
            self.poller.close()
        self.close_pipe()


class ThreadedChildWatcher(LoopPidfds):
    """Never touches SIGCHLD; works on every loop and without one, any number of children.

    Three ways to wait, none of them holding a thread or an fd while it has
    no child:

    - *In the loop*: a child registered from a running loop whose
      ``add_reader`` works is watched through a pidfd (Linux 5.3+) read by
      the loop itself (as :class:`PidfdChildWatcher` does): its exit is read
      and called back in the loop's thread, with no thread hop.  If that
      loop closes before the child exits, the child goes to the pidfd waiter
      (at ``loop.close()`` on CPython, at the next garbage collection or
      registration on PyPy) and is called back there.
    - The *pidfd waiter*, a thread polling a pidfd per child: the children
      registered outside any loop, or from a loop that refuses ``add_reader``.
    - Both use pidfds only while the watcher holds at most ``fd_share`` of the
      soft ``RLIMIT_NOFILE`` (default :data:`childwatch._fds.DEFAULT_FD_SHARE`,
      a quarter: 256 fds of 1024, counting every pidfd and the waiter's pipe
      and epoll), checked at each registration (the limit itself read at most
      once a second, and whenever a registration would go past the share).
      Every other child (beyond that share, or where ``pidfd_open`` fails:
      old kernel, seccomp, fd exhaustion) goes to the *fd-less waiter*, a
      thread blocked in ``waitid(P_ALL, WEXITED | WNOWAIT)``: it wakes when
      any child of the process has exited, without reaping it, and delivers
      it if it is one of its children (the next exit shows once that child is
      reaped, after its callback).  An exited child it cannot deliver (another
      code's zombie, or one of ours still being delivered) hides the others:
      it then waits for that child to be reaped and, while it stays, checks
      its children one by one with ``waitid(P_PID, WNOHANG | WNOWAIT)``, after
      1 ms, then at doubling intervals up to 50 ms or 0.2 ms per child, so
      that however long a foreign zombie stays, the checks take under 1% of
      a CPU (and statuses may come that late meanwhile).

    So any number of children cost at most two threads and ``fd_share`` of
    the soft limit (0: no fd at all, every child to the fd-less waiter); the
    application keeps the rest.  No SIGCHLD handler, no ``waitpid(-1)``:
    only the children registered here are ever reaped.

    A child registered from a running loop is called back in that loop's
    thread (unless the loop closed first); one registered outside any loop,
    in a waiter thread.  Either
    way the child is still a zombie while its callback runs: its pid cannot
    be reused before the callback has returned.  An idle watcher holds no
    thread and no fd, and while it has children its threads keep it alive
    (an abandoned watcher still delivers them; so do the loops it reads
    pidfds in).  :meth:`close` drops the children and waits for the pidfd
    waiter to end.  The fd-less waiter,
    blocked in ``waitid`` while children it dropped still run, cannot be
    interrupted: it ends at the next exit of any child of the process (a
    registration meanwhile uses it again).  :meth:`attach_loop` only
    validates its argument: no loop is needed.
    """

    def __init__(self, fd_share: float = _fds.DEFAULT_FD_SHARE) -> None:
        super().__init__()
        self._fd_share = _fds.check_share(fd_share)
        self._waiter: Optional[_Waiter] = None  # the running pidfd waiter, if any
        self._pidfds = 0  # pidfds open (lock)
        self._budget = (0, -_BUDGET_TTL)  # the fds the share allows, and when the limit was read (lock)
        self._fdless: Dict[int, Entry] = {}  # the fd-less waiter's children (lock)
        self._fdless_thread: Optional[threading.Thread] = None  # the running fd-less waiter, if any
        self._reaped = threading.Event()  # set at each reap: the exit the fd-less waiter sees may change
        # Waiter threads (of either kind) that retired, while they deliver their last batch (lock).
        self._retiring: Set[threading.Thread] = set()

    _dispatch = WatcherBase._dispatch_to_loop
    _stale = LoopPidfds._loop_closed  # re-registered, a child of a closed loop is watched afresh
    _release_under_lock = False  # (it joins its waiters: see WatcherBase._release_under_lock)

    def attach_loop(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        check_loop(loop)

    def _watch(self, entry: Entry) -> None:
        """A child of a Popen among the arguments that has not collected it
        (an asyncio transport's) is known to be ours: in a loop, its pidfd
        is all that is asked (a child reaped by code that bypassed its Popen
        is then reported at its exit, 255 and a warning, not refused here)."""
        spawned = spawned_here(entry)
        if not spawned:
            child_status(entry.pid)
        self._sweep_closed_loops()
        loop = entry.loop  # (running in this thread)
        if loop is not None and self._reads_in(loop) and self._fits(self._new_fds_in(loop)):
            try:
                self._watch_in_loop(entry, loop)
                return
            except Exception as exc:  # no pidfd, no fd, or the loop refuses add_reader
                logger.debug(
                    "cannot read a pidfd for %d in %r (%s): a waiter thread waits for it",
                    entry.pid,
                    loop,
                    exc,
                )
        if spawned:
            child_status(entry.pid)
        fd = self._open_pidfd(entry.pid)
        if fd is None:
            self._start_fdless()
        self._admit(entry)
        self._wait_in_a_thread(entry, fd)

    def _fits(self, fds: int) -> bool:
        """True if ``fds`` more keep the watcher within its fd share (lock held;
        the pidfd waiter's own fds always counted).  The soft limit is read
        again (a syscall) when the share read last would be exceeded, or was
        read over :data:`_BUDGET_TTL` ago: an application that lowers its
        limit meanwhile may see the watcher past its new share that long
        (``pidfd_open`` failing at the limit sends a child to the fd-less waiter)."""
        wanted = self._pidfds + self._in_loop_fds() + _WAITER_FDS + fds
        budget, read_at = self._budget
        now = time.monotonic()
        if wanted > budget or now - read_at > _BUDGET_TTL:
            budget = _fds.budget(self._fd_share)
            self._budget = (budget, now)
        return wanted <= budget

    def _start_fdless(self) -> None:
        """Have the fd-less waiter run (lock held); RuntimeError if no thread can be had."""
        if self._fdless_thread is None:
            thread = _WaiterThread(self._run_fdless, "childwatch-fdless")
            thread.start()  # it waits for our lock, held until the entry is in the table
            self._fdless_thread = thread

    def _wait_in_a_thread(self, entry: Entry, fd: Optional[int]) -> None:
        """Have a waiter wait for the registered ``entry`` (lock held): the pidfd
        waiter on ``fd``, or the fd-less one (``fd`` None: it runs)."""
        entry.handle = fd
        if fd is None:
            self._fdless[entry.pid] = entry
        else:
            assert self._waiter is not None
            self._waiter.queue(True, entry)

    def _open_pidfd(self, pid: int) -> Optional[int]:
        """A pidfd for ``pid`` in a running pidfd waiter (lock held), or None:
        it would take the watcher past its fd share, or no pidfd, fd or thread
        can be had."""
        if not self._fits(1):
            return None
        fd = None
        try:
            fd = open_pidfd(pid)
            self._start_waiter()
        except (OSError, RuntimeError) as exc:  # no pidfd, no fds, no thread
            if fd is not None:
                os.close(fd)
            logger.debug("cannot poll a pidfd for %d (%s): the fd-less waiter waits for it", pid, exc)
            return None
        self._pidfds += 1
        return fd

    def _start_waiter(self) -> None:
        """Have the pidfd waiter run (lock held); OSError or RuntimeError if it cannot."""
        if self._waiter is None:
            self._waiter = _Waiter(self._run)

    def _adopt_orphans(self, orphans: List[Orphan]) -> None:
        """The children of a loop that closed: to the pidfd waiter, with their
        pidfds, or to the fd-less one (they are called back in its thread)."""
        for pidfd, entry in orphans:
            if self._table.get(entry.pid) is not entry or entry.state is not REGISTERED:
                os.close(pidfd)  # (delivered or removed meanwhile: not ours to wait for)
                continue
            fd: Optional[int] = pidfd
            try:
                self._start_waiter()
                self._pidfds += 1
            except (OSError, RuntimeError):
                os.close(pidfd)
                fd = None
                try:
                    self._start_fdless()
                except RuntimeError:
                    logger.exception(
                        "no thread can wait for pid %d of a closed loop: it is no longer watched", entry.pid
                    )
                    self._drop(entry)
                    continue
            self._wait_in_a_thread(entry, fd)

    def _close_pidfd(self, fd: int) -> None:
        os.close(fd)
        with self._lock:
            self._pidfds -= 1

    def _unwatch(self, entry: Entry) -> None:
        if self._unwatch_in_loop(entry):
            return
        if entry.handle is not None:
            # A polled entry is in the waiter's table or queue, so its thread
            # runs: it drops the handle (lock not held) only as it takes the
            # entry out, and _retire (under the lock) comes after that.
            assert self._waiter is not None
            self._waiter.queue(False, entry)
        elif self._fdless.get(entry.pid) is entry:
            del self._fdless[entry.pid]

    def _release_resources(self) -> None:
        """Wait for the pidfd waiter, which ends now that close() unqueued
        every child (unless another thread registers one meanwhile), and for
        a waiter that retired just before (what it still delivers, close()
        dropped); wake the fd-less waiter if it is between two checks: it ends then."""
        self._release_readers()
        self._reaped.set()
        epoch = self._epoch
        with self._lock:
            waiter, retiring = self._waiter, list(self._retiring)
        me = threading.current_thread()
        for thread in retiring:
            if thread is not me:
                thread.join(_RETIRE_JOIN_TIMEOUT)
        if waiter is None or waiter.thread is me:
            return
        while waiter.thread.is_alive() and self._closed and self._epoch == epoch:
            waiter.thread.join(0.1)

    def _finish(self, entry: Entry, reap: bool) -> None:
        super()._finish(entry, reap)
        self._tell_fdless()

    def _after_loop_delivery(self) -> None:
        self._tell_fdless()  # a queued reap (see WatcherBase._queue_reap)

    def _tell_fdless(self) -> None:
        """A child was reaped: the exit the fd-less waiter sees may have changed.
        (Only a running one is told: one started later takes a fresh look first,
        after :meth:`_start_fdless` has set :attr:`_fdless_thread` under the lock.)"""
        if self._fdless_thread is not None:
            self._reaped.set()

    def _reporting(self, entry: Entry, deliver: Callable[..., object], *args: Any) -> None:
        """``deliver(*args)`` in a thread of ours: even SystemExit from a callback is reported, not fatal."""
        try:
            deliver(*args)
        except BaseException as exc:
            self._report(entry, exc)

    def _after_fork_in_child(self) -> None:
        for entry in self._table.values():
            if isinstance(entry.handle, int):  # (a tuple: in a loop's epoll, closed by LoopPidfds)
                os.close(entry.handle)
        if self._waiter is not None:
            self._waiter.close_fds()  # its thread is not in this process
            self._waiter = None
        self._pidfds = 0
        self._fdless.clear()
        self._fdless_thread = None
        self._retiring.clear()
        self._reaped = threading.Event()
        super()._after_fork_in_child()

    def _run(self, waiter: _Waiter) -> None:
        poller = waiter.poller
        polled: Dict[int, Entry] = {}
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
                    poller.unregister(fd)
                    exits.append((entry, read_exit(entry.pid, fd)))  # a pidfd is readable once it exited
                    self._close_pidfd(fd)
                while waiter.ops:
                    add, entry = waiter.ops.popleft()
                    fd = entry.handle
                    if add:
                        polled[fd] = entry
                        poller.register(fd, select.POLLIN)
                    elif polled.get(fd) is entry:
                        del polled[fd]
                        entry.handle = None
                        poller.unregister(fd)
                        self._close_pidfd(fd)
                last = not polled and self._retire(waiter)
                if last:
                    waiter.close_fds()  # before anyone learns the last statuses
                self._deliver_batch(exits, waiter.thread if last else None)
        except BaseException:
            logger.exception("the waiter thread of %r failed; its children are no longer watched", self)
            with self._lock:
                if self._waiter is waiter:
                    self._waiter = None
            for fd in polled:
                self._close_pidfd(fd)
            if not last:
                waiter.close_fds()
            raise
        finally:
            self._retired(waiter.thread)

    def _run_fdless(self) -> None:
        """The fd-less waiter: deliver the children in :attr:`_fdless` as
        ``waitid(P_ALL, WNOWAIT)`` shows their exits (see the class docstring)."""
        stuck: Optional[int] = None  # the exited child we cannot deliver, seen last time
        delay = _FDLESS_FIRST_DELAY
        try:
            while True:
                self._reaped.clear()
                if self._hand_over([]):
                    return  # nothing left to wait for
                found = peek_any(block=True)  # None: no child at all (ours were reaped elsewhere)
                with self._lock:
                    entry = None if found is None else self._fdless.get(found[0])
                if found is not None and entry is not None:
                    stuck, delay = None, _FDLESS_FIRST_DELAY
                    if self._hand_over([(entry, (True, found[1]))]):
                        return
                    continue
                head = None if found is None else found[0]
                if head != stuck:
                    stuck, delay = head, _FDLESS_FIRST_DELAY
                if self._reaped.wait(delay):
                    continue  # a child of ours was reaped: the head may have moved
                with self._lock:
                    fdless = list(self._fdless.items())
                delay = min(2 * delay, theft_check_delay(len(fdless)))
                if self._hand_over([(entry, exit_of(entry)) for _, entry in fdless]):
                    return
        except BaseException:
            logger.exception(
                "the fd-less waiter thread of %r failed; its children are no longer watched", self
            )
            with self._lock:
                if self._fdless_thread is threading.current_thread():
                    self._fdless_thread = None
            raise
        finally:
            self._retired(threading.current_thread())

    def _hand_over(self, exits: List[Exit]) -> bool:
        """In the fd-less waiter: take the exited ``exits`` out of
        :attr:`_fdless` and deliver them; True (the thread must end now) if
        none is left (and none can come: :meth:`_watch` adds under the lock,
        or starts a new thread)."""
        thread = threading.current_thread()
        with self._lock:
            taken = [
                (entry, status)
                for entry, status in exits
                if status[0] and self._fdless.get(entry.pid) is entry
            ]
            for entry, _ in taken:
                del self._fdless[entry.pid]
            last = not self._fdless
            if last:
                self._retiring.add(thread)
                if self._fdless_thread is thread:
                    self._fdless_thread = None
        self._deliver_batch(taken, thread if last else None)
        return last

    def _deliver_batch(self, exits: List[Exit], retiring: Optional[threading.Thread]) -> None:
        """Deliver the exits a waiter found.  From a ``retiring`` thread (this
        batch is its last act), those for a loop are handed over whole, and the
        loop joins the thread before delivering them: code that learns a status
        there (a test checking for leaked threads after its last child, say)
        finds the watcher idle, with no thread and no fd."""
        by_loop: Dict[asyncio.AbstractEventLoop, List[Tuple[Entry, Optional[int]]]] = {}
        for entry, (exited, returncode) in exits:
            if not exited:
                continue
            if retiring is not None and entry.loop is not None:
                by_loop.setdefault(entry.loop, []).append((entry, returncode))
            else:
                self._reporting(entry, self._deliver_exit, entry.pid, entry, returncode)
        for loop, batch in by_loop.items():
            assert retiring is not None
            if not call_in_loop(loop, self._deliver_after, retiring, batch):
                for entry, returncode in batch:  # the loop closed: deliver here, as _dispatch_to_loop does
                    self._reporting(entry, self._deliver_exit, entry.pid, entry, returncode)

    def _deliver_after(self, thread: threading.Thread, batch: List[Tuple[Entry, Optional[int]]]) -> None:
        """In the loop's thread: wait for ``thread`` to end (it only returns
        now; bounded all the same), then deliver ``batch``."""
        thread.join(_RETIRE_JOIN_TIMEOUT)
        for entry, returncode in batch:
            with self._lock:
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
            self._retiring.add(waiter.thread)
            return True

    def _retired(self, thread: threading.Thread) -> None:
        """``thread`` (a waiter) ends: a finished thread is not kept (nor seen dangling)."""
        with self._lock:
            self._retiring.discard(thread)
