"""The registration table and delivery rules every watcher shares.

Delivery rule (all watchers): a child's status is read without reaping it
(``waitid(WNOWAIT)``), its entry is *claimed* (removed from the table under
the lock, so exactly one thread delivers it), the callback is called, and the
child is reaped only after the callback has returned -- for an asyncio
subprocess on 3.9-3.13, only once its transport has learnt the status (see
:meth:`WatcherBase._reap_after_transport`).  An entry that is claimed but not
yet reaped is "delivering"; registering its pid again is refused, because its
status already went to the earlier callback.  Scans that meet a delivering
zombie stop there: its reap scans again (:meth:`WatcherBase._after_loop_delivery`).

Popen rule (all watchers): a :class:`subprocess.Popen` among the callback's
arguments, or the ``_proc`` of an asyncio subprocess transport, is evidence
about the child that the pid alone is not.  If it already holds a returncode
when the child is delivered, the Popen reaped the child itself
(``send_signal()`` polls first): that is the status delivered, and the pid,
which may already belong to a newcomer, is neither read nor reaped.  Else the
Popen is given the status before the callback runs, so that it never waits
on the pid again (it would reap the zombie the watcher still holds).  And a
registration of a pid whose registered (or delivering) child is provably
another process -- its Popen holds a returncode, or the new registration
carries a different Popen for the same pid -- first delivers (or forgets)
the old one instead of replacing it: see :meth:`WatcherBase.add_child_handler`.

Lifecycle rule (all watchers, as asyncio's namesakes behave and as asyncio's
policy and CPython's own tests use them): :meth:`WatcherBase.close` stops
watching and releases every resource, but the object stays usable.  A closed
watcher is a new one again: ``close()`` and ``attach_loop(None)`` are no-ops
on it, ``remove_child_handler()`` answers False, and ``attach_loop(loop)`` or
``add_child_handler()`` reopens it.  Registrations dropped by ``close()`` are
never delivered, not even after a reopen (each entry remembers the *epoch* it
was registered in).  Nothing raises because a watcher is closed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

from .._contract import AbstractChildWatcher, ChildCallback, is_event_loop
from .._gevent import refuse_under_gevent
from .._status import PID_MAX, logger, not_a_child, peek, peek_any, peek_pidfd, reaped_elsewhere, release


def read_exit(pid: int, pidfd: Optional[int] = None) -> Tuple[bool, Optional[int]]:
    """``(exited, returncode)`` of child ``pid``, read without reaping it
    (through ``pidfd`` if given); returncode None if someone else reaped it."""
    try:
        returncode = peek(pid) if pidfd is None else peek_pidfd(pidfd)
    except ChildProcessError:
        return True, None
    return returncode is not None, returncode


def exit_of(pid: int, entry: Optional[Entry], pidfd: Optional[int] = None) -> Tuple[bool, Optional[int]]:
    """:func:`read_exit` for a registered child: ``(True, None)`` without
    reading the pid if ``entry``'s Popen reaped it (the pid may be a
    newcomer's by now, running or not)."""
    if entry is not None and entry.args and collected_by(popen_of(pid, entry.args)) is not None:
        return True, None  # (only an argument can carry a Popen)
    return read_exit(pid, pidfd)


class Entry:
    """One registered child: its callback, arguments and watcher-specific handle."""

    __slots__ = ("args", "callback", "epoch", "handle", "hop", "loop", "pid", "reap_queued")

    def __init__(self, pid: int, callback: ChildCallback, args: Tuple[Any, ...], epoch: int) -> None:
        self.pid = pid
        self.epoch = epoch
        """The watcher's :attr:`WatcherBase._epoch` at registration: a close() since drops it."""
        self.callback = callback
        self.args = args
        self.loop = running_loop()
        """The loop running where the child was registered, if any."""
        self.handle: Any = None
        # Once claimed (in WatcherBase._delivering): the loop its delivery, then its reap, was handed to.
        self.hop: Optional[asyncio.AbstractEventLoop] = None
        self.reap_queued = False
        """Claimed, called back, its reap queued on ``hop`` (see WatcherBase._reap_after_transport)."""


def popen_of(pid: int, args: Tuple[Any, ...]) -> Optional[subprocess.Popen[Any]]:
    """The :class:`subprocess.Popen` of child ``pid`` among a callback's arguments
    (itself, or the ``_proc`` of an asyncio subprocess transport), or None."""
    for arg in args:
        for candidate in (arg, getattr(arg, "_proc", None)):
            if isinstance(candidate, subprocess.Popen) and candidate.pid == pid:
                return candidate
    return None


def collected_by(popen: Optional[subprocess.Popen[Any]]) -> Optional[int]:
    """The returncode ``popen`` holds (it reaped its child, or was told), or None."""
    returncode = None if popen is None else popen.returncode
    return returncode if isinstance(returncode, int) else None


def _bound_to_a_closed_loop(callback: ChildCallback) -> bool:
    """True if ``callback`` is a method of an event loop that is closed."""
    loop = getattr(callback, "__self__", None)
    return is_event_loop(loop) and bool(loop.is_closed())  # type: ignore[union-attr]


def another_process(old: Entry, args: Tuple[Any, ...]) -> bool:
    """True if ``old``'s child is provably not the process a registration of the
    same pid with ``args`` is for: its Popen holds a returncode (it is gone), or
    ``args`` carry a different Popen (one Popen is one process)."""
    before = popen_of(old.pid, old.args)
    if before is None:
        return False  # a bare pid: nothing tells (see the README's "Not promised")
    if collected_by(before) is not None:
        return True
    now = popen_of(old.pid, args)
    return now is not None and now is not before


_STDLIB_SCHEDULES_EXIT = sys.version_info < (3, 14)
"""On 3.9-3.13 the stdlib loop's ``_child_watcher_callback`` only *schedules*
``transport._process_exited()``; on 3.14+ it calls it at once."""

_REAP_WAIT_ITERATIONS = 4
"""How many loop iterations a deferred reap waits at most for the transport's
``_process_exited()`` (which the stdlib runs one or two iterations after the
watcher's callback): a bound, so that a transport that never learns (a
stdlib change) cannot keep a zombie forever."""

THEFT_CHECK_DELAY = 0.05
"""Seconds after a SIGCHLD before every registered pid is checked once, to
catch children reaped behind the watcher's back (at most one such O(n) check
per delay, however many signals arrive) -- with up to 250 registered children;
see :data:`THEFT_CHECK_DELAY_PER_CHILD` beyond."""

THEFT_CHECK_DELAY_PER_CHILD = 0.0002
"""With more than 250 registered children the delay is this many seconds per
registered child (0.2 s for 1,000): one check costs 0.6-1.2 us per child, so
however many children are registered and however fast they exit, the checks
take under 1% of a CPU."""


def check_pid(pid: object) -> int:
    """Return ``pid`` if it is a valid pid; raise TypeError/ValueError otherwise."""
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    if pid <= 0:
        raise ValueError(f"pid must be a positive int, got {pid}")
    if pid > PID_MAX:
        raise ValueError(f"pid {pid} is out of range (max {PID_MAX})")
    return pid


def check_loop(loop: object) -> Optional[asyncio.AbstractEventLoop]:
    """Return ``loop`` if it is None or an open event loop (an
    :class:`asyncio.AbstractEventLoop` or a duck-typed one: :func:`is_event_loop`)."""
    if loop is None:
        return None
    if not is_event_loop(loop):
        raise TypeError(f"loop must be an asyncio event loop or None, not {type(loop).__name__}")
    if loop.is_closed():  # type: ignore[attr-defined]
        raise RuntimeError(f"cannot attach to a closed event loop: {loop!r}")
    return loop  # type: ignore[return-value]  # a duck-typed loop serves as one


def running_loop() -> Optional[asyncio.AbstractEventLoop]:
    """The event loop running in this thread, or None.

    Through ``asyncio.get_running_loop()``, looked up at each call: trio-asyncio
    replaces asyncio's functions with its own, which raise RuntimeError in a Trio task."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def call_soon_on(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any) -> None:
    """Queue ``callback(*args)`` on ``loop``: with ``call_soon`` from the loop's
    own thread (no wake-up write needed, it runs its queue next), else with
    ``call_soon_threadsafe``.  RuntimeError if the loop is closed."""
    if loop is running_loop():
        loop.call_soon(callback, *args)
    else:
        loop.call_soon_threadsafe(callback, *args)


_live_watchers: weakref.WeakSet[WatcherBase] = weakref.WeakSet()


def _forget_parent_children() -> None:
    for watcher in list(_live_watchers):
        try:
            watcher._after_fork_in_child()
        except Exception:  # one watcher's trouble must not leave the others dirty
            logger.exception("resetting %r after fork failed", watcher)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_children)


class WatcherBase(AbstractChildWatcher):
    """Validation, the pid table, claiming and delivery.

    Subclasses implement :meth:`_watch` (start watching a new entry),
    :meth:`_unwatch` (stop watching a removed entry) and :meth:`_release_resources`.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entries: Dict[int, Entry] = {}
        # Claimed, not yet reaped (see Entry.hop and Entry.reap_queued).
        self._delivering: Dict[int, Entry] = {}
        # The pending check for children reaped behind our back: (its loop, its timer).
        self._theft_timer: Optional[Tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle]] = None
        self._closed = False  # close() was called and nothing reopened the watcher since
        self._epoch = 0  # bumped by every close(): entries of an older epoch are dropped
        _live_watchers.add(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child: the parent's children are not ours, its threads are gone.

        The watcher starts empty and stays usable for the child's own children.
        """
        self._lock = threading.RLock()  # another thread may have held it at fork
        self._entries.clear()
        self._delivering.clear()
        self._theft_timer = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._entries)} children"
        return f"<{type(self).__name__} {state}>"

    # -- the contract ---------------------------------------------------

    def add_child_handler(self, pid: int, callback: ChildCallback, *args: Any) -> None:
        """Call ``callback(pid, returncode, *args)`` once child ``pid`` exits.

        Raises TypeError for a non-int pid or a non-callable callback,
        ValueError for a pid out of range, and :class:`ChildProcessError`
        when ``pid`` is not a child of this process (or its status was
        already collected), :class:`UnsupportedLoopError` under gevent's
        monkey-patching (:mod:`childwatch._gevent`).  Registering a pid that is already registered
        replaces its callback and arguments -- unless the registered child is
        provably another process (:func:`another_process`: pids are reused at
        once on a busy machine): then the old entry is delivered first, with
        the status its Popen holds (or 255 and a warning), and the new one is
        registered.  On a closed watcher it reopens the watcher (see the
        lifecycle rule in this module's docstring).
        """
        if type(pid) is not int or not 0 < pid <= PID_MAX:
            check_pid(pid)  # raises the precise error
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        refuse_under_gevent(type(self).__name__)
        gone = None
        try:
            with self._lock:
                entry = self._entries.get(pid)
                if entry is not None and self._stale(entry):
                    del self._entries[pid]  # its loop closed: watch it afresh
                    self._unwatch(entry)
                    entry = None
                if entry is not None and another_process(entry, args):
                    gone = self._claim(pid, entry)
                    if gone is not None:
                        self._unwatch(gone)
                    entry = None
                if entry is not None:
                    entry.callback, entry.args = callback, args
                    return
                self._register(pid, callback, args)
        finally:
            if gone is not None:
                self._dispatch(gone, None, reap=False)  # the Popen rule gives it its status

    def _register(self, pid: int, callback: ChildCallback, args: Tuple[Any, ...]) -> None:
        """A new entry for ``pid``, which has none (lock held)."""
        delivering = self._delivering.get(pid)
        if delivering is not None and another_process(delivering, args):
            # Its status went out; someone reaped it before we did, and the
            # pid is this newcomer's now: its queued reap must not touch it.
            del self._delivering[pid]
        elif delivering is not None:
            hop = delivering.hop
            if hop is None or not hop.is_closed() or delivering.reap_queued:
                raise not_a_child(pid)
            del self._delivering[pid]  # handed to a loop that closed first: never delivered
        entry = Entry(pid, callback, args, self._epoch)
        self._watch(entry)
        self._closed = False  # reopened, now that the registration held

    def remove_child_handler(self, pid: int) -> bool:
        """Stop watching ``pid``; True if it was registered.  The child is not reaped.

        On a closed watcher: False (nothing is registered), and it stays closed."""
        check_pid(pid)
        with self._lock:
            entry = self._entries.pop(pid, None)
            if entry is None:
                return False
            self._unwatch(entry)
            return True

    def close(self) -> None:
        """Stop watching and release every resource; any number of times.

        Children still registered are left alone: they are not reaped and
        their callbacks are never called.  Wait for them yourself, or
        register them with another watcher (or this one, which reopens it).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._epoch += 1
            entries = list(self._entries.values())
            self._entries.clear()
            for entry in entries:
                self._unwatch(entry)
        self._release_resources()

    def is_active(self) -> bool:
        """True: a registration works now, closed or not (it reopens the watcher)."""
        return True

    def __enter__(self) -> WatcherBase:
        return self

    # -- for subclasses ---------------------------------------------------

    def _watch(self, entry: Entry) -> None:
        """Start watching ``entry`` and add it to the table (lock held)."""
        raise NotImplementedError

    def _stale(self, entry: Entry) -> bool:
        """True if ``entry`` can no longer be delivered (the loop watching it closed)."""
        return False

    def _unwatch(self, entry: Entry) -> None:
        """Stop watching ``entry``, already removed from the table (lock held)."""

    def _release_resources(self) -> None:
        """Free what the watcher holds; called once by :meth:`close`."""

    def _probe(self, pid: int) -> bool:
        """Raise :class:`ChildProcessError` unless ``pid`` is our child; True if it already exited."""
        try:
            return peek(pid) is not None
        except ChildProcessError:
            raise not_a_child(pid) from None

    def _claim(self, pid: int, entry: Optional[Entry] = None) -> Optional[Entry]:
        """Take ``pid``'s entry out of the table; None if another thread has it.

        With ``entry`` given, claim only that very entry.
        """
        with self._lock:
            current = self._entries.get(pid)
            if current is None or (entry is not None and current is not entry):
                return None
            # pop, not del: a signal handler in this very thread (the RLock lets
            # it in) may have claimed it since the get.
            if self._entries.pop(pid, None) is not current:
                return None
            current.hop = current.loop
            self._delivering[pid] = current
            return current

    def _dispatch_to_loop(self, entry: Entry, returncode: Optional[int], reap: bool = True) -> None:
        """Deliver a claimed entry in the thread of the loop it was registered from.

        For watchers that see exits outside any loop (a waiter thread, a signal
        handler): asyncio 3.14+ loops require their callback in the loop's own
        thread.  With no such loop, or once it is closed, deliver right here.
        """
        loop = entry.loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._deliver_in_loop, entry, returncode, reap)
                return
            except RuntimeError:  # closed meanwhile
                pass
        self._deliver(entry, returncode, reap=reap)

    def _deliver_in_loop(self, entry: Entry, returncode: Optional[int], reap: bool) -> None:
        self._deliver(entry, returncode, reap)
        self._after_loop_delivery()

    def _after_loop_delivery(self) -> None:
        """Called in a loop's thread after a handed-over delivery or a late reap:
        the zombie just reaped may have hidden other exits from a scan."""

    def _deliver(self, entry: Entry, returncode: Optional[int], reap: bool = True) -> None:
        """Call the claimed entry's callback, then reap the child.

        ``returncode`` None: someone else reaped the child.  The Popen rule
        (module docstring) is applied only now, in the delivering thread: a
        signal handler may have interrupted that very Popen between its
        ``waitpid()`` and its storing of the status, and a task may have made
        it reap the child since the status was read.
        """
        if entry.epoch != self._epoch:
            # close() dropped it: no callback any more; the child is left to the caller.
            self._finish(entry, reap=False)
            return
        args = entry.args
        if args:  # only an argument can carry a Popen (the common bare callback skips the rule)
            popen = popen_of(entry.pid, args)
            collected = collected_by(popen)
            if collected is not None:
                returncode, reap = collected, False  # its Popen reaped it: the pid is not ours now
            elif popen is not None and returncode is not None:
                popen.returncode = returncode  # so that it never waits on the pid we still hold
        if returncode is None:
            returncode = reaped_elsewhere(entry.pid)
        try:
            if _bound_to_a_closed_loop(entry.callback):
                # It could only raise "Event loop is closed" (asyncio's own
                # _child_watcher_callback, a test's loop gone): say so, as asyncio does.
                logger.warning(
                    "the loop that handles pid %d is closed: its status %d is dropped", entry.pid, returncode
                )
            else:
                entry.callback(entry.pid, returncode, *args)
        except Exception as exc:
            self._report(entry, exc)
        finally:
            # A transport is the one argument of the loop's callback (_reap_after_transport).
            if not (reap and _STDLIB_SCHEDULES_EXIT and len(args) == 1 and self._reap_after_transport(entry)):
                self._finish(entry, reap)

    def _finish(self, entry: Entry, reap: bool) -> None:
        """``entry`` is done: reap its child if ``reap`` and the pid is still
        this entry's (a newcomer may own it by now: :meth:`_register`)."""
        with self._lock:
            if self._delivering.get(entry.pid) is not entry:
                return
            del self._delivering[entry.pid]
            if reap:
                release(entry.pid)

    _dispatch = _deliver
    """Deliver a claimed entry (in the thread that saw the exit, unless a
    subclass hands it to a loop with :meth:`_dispatch_to_loop`)."""

    def _reap_after_transport(self, entry: Entry) -> bool:
        """For an asyncio subprocess (3.9-3.13), reap the child only after its
        transport has learnt the status.  The loop's ``_child_watcher_callback``
        only schedules ``transport._process_exited()``: one loop iteration later
        on 3.9, 3.12 and 3.13, two on 3.10 and 3.11.  Until it has run, a
        ``kill()`` still signals the pid (3.13.0 without any check), so it must
        not be released: the reap is queued on the same loop and waits there
        (:meth:`_reap_deferred`).  The child stays "delivering" meanwhile.
        False if the callback is not such a loop's (or the loop is closed):
        reap now."""
        if getattr(entry.callback, "__name__", None) != "_child_watcher_callback":
            return False
        loop = getattr(entry.callback, "__self__", None)
        transport = entry.args[0] if len(entry.args) == 1 else None
        if not isinstance(loop, asyncio.AbstractEventLoop) or not isinstance(
            transport, asyncio.SubprocessTransport
        ):
            return False
        with self._lock:
            if self._delivering.get(entry.pid) is not entry:
                return False  # its pid went to a newcomer: _finish leaves it alone
            entry.hop, entry.reap_queued = loop, True
        try:
            call_soon_on(loop, self._reap_deferred, entry, transport, _REAP_WAIT_ITERATIONS)
        except RuntimeError:  # the loop is closed: nobody will learn more
            with self._lock:
                entry.reap_queued = False
            return False
        return True

    def _reap_deferred(
        self, entry: Entry, transport: asyncio.SubprocessTransport, iterations_left: int
    ) -> None:
        """In the transport's loop: reap once the transport knows the returncode
        (or after :data:`_REAP_WAIT_ITERATIONS` loop iterations, whatever happens),
        unless the entry is no longer delivering: a scan reaped it (its loop
        being closed), or its pid went to a newcomer (:meth:`add_child_handler`)."""
        if transport.get_returncode() is None and iterations_left > 0:
            asyncio.get_running_loop().call_soon(self._reap_deferred, entry, transport, iterations_left - 1)
            return
        with self._lock:
            if self._delivering.get(entry.pid) is not entry or not entry.reap_queued:
                return
            del self._delivering[entry.pid]
            release(entry.pid)
        self._after_loop_delivery()

    def _in_flight(self, pid: int) -> bool:
        """True if ``pid`` was claimed and is not reaped yet: whoever scans stops
        at it, and its reap rescans (:meth:`_after_loop_delivery`).

        A pid whose reap was queued on a loop that closed before running it
        is reaped here (False).  One handed to a loop that closed before
        delivering it stays, to be registered again.
        """
        with self._lock:
            entry = self._delivering.get(pid)
            if entry is None:
                return False
            hop = entry.hop
            if hop is None or not hop.is_closed() or not entry.reap_queued:
                return True
            del self._delivering[pid]
        release(pid)
        return False

    def _check(self, pid: int, entry: Optional[Entry] = None, pidfd: Optional[int] = None) -> bool:
        """Deliver ``pid``'s status if it has exited; True if it has.

        With ``pidfd``, the status is read through it: a child reaped behind our
        back is then told apart from a new process that reused its pid.
        """
        if entry is None:
            with self._lock:
                entry = self._entries.get(pid)
        exited, returncode = exit_of(pid, entry, pidfd)
        if exited:
            self._deliver_exit(pid, entry, returncode)
        return exited

    def _deliver_exit(self, pid: int, entry: Optional[Entry], returncode: Optional[int]) -> None:
        """Claim ``pid`` (only ``entry``, if given) and dispatch the status that
        :func:`read_exit` read (None: reaped by someone else)."""
        claimed = self._claim(pid, entry)
        if claimed is not None:
            self._dispatch(claimed, returncode, reap=returncode is not None)

    def _deliver_visible_exits(self) -> bool:
        """Deliver our exited children, as ``waitid(P_ALL, WNOWAIT)`` shows them one by one.

        O(1) per exit.  Returns True if it stopped at an exited child that is not
        ours: that zombie hides the others, and only :meth:`_check_all` can find
        them.  It stops (False) at one of ours still being delivered: its reap
        rescans (:meth:`_after_loop_delivery`).
        """
        while True:
            found = peek_any()
            if found is None:
                return False
            pid, returncode = found
            entry = self._claim(pid)
            if entry is None:
                return not self._in_flight(pid)
            self._dispatch(entry, returncode)

    def _check_all(self) -> None:
        """Check every registered pid: O(registered children)."""
        with self._lock:
            entries = list(self._entries.items())
        for pid, entry in entries:
            self._check(pid, entry)  # only that very entry: one re-registered since checked itself

    def _schedule_theft_check(self, loop: asyncio.AbstractEventLoop) -> None:
        """Check every registered pid on ``loop`` within :data:`THEFT_CHECK_DELAY`
        (:data:`THEFT_CHECK_DELAY_PER_CHILD` per child if that is longer),
        unless such a check is pending already."""
        timer = self._theft_timer
        if timer is None or timer[0].is_closed():
            delay = max(THEFT_CHECK_DELAY, THEFT_CHECK_DELAY_PER_CHILD * len(self._entries))
            self._theft_timer = (loop, loop.call_later(delay, self._theft_check_now))

    def _cancel_theft_check(self) -> None:
        """Drop the pending check (call it in its loop's thread)."""
        timer, self._theft_timer = self._theft_timer, None
        if timer is not None:
            timer[1].cancel()

    def _theft_check_now(self) -> None:
        self._theft_timer = None
        if not self._closed:
            self._check_all()

    def _report(self, entry: Entry, exc: BaseException) -> None:
        message = f"exception in child watcher callback {entry.callback!r} for pid {entry.pid}"
        loop = running_loop()
        if loop is not None:
            loop.call_exception_handler({"message": message, "exception": exc})
        else:
            logger.error(message, exc_info=exc)
