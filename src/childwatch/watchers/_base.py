"""The registration table and the delivery every watcher shares.

One table maps each pid to its :class:`Entry`, whose one ``state`` field says
where it is in the delivery rule of :mod:`childwatch._syscalls`:

- :data:`REGISTERED`: watched, its callback not called yet;
- :data:`DELIVERING`: *claimed* (:meth:`WatcherBase._claim`, under the lock,
  so exactly one thread delivers it), its callback called or about to be, the
  child a zombie until :meth:`WatcherBase._finish` reaps it and drops the
  entry.  Registering its pid again is refused, because its status already
  went to the earlier callback;
- :data:`REAP_QUEUED`: called back, its reap waiting in a loop for the
  loop's own bookkeeping (:meth:`WatcherBase._queue_reap`), or to follow the
  step the loop's own callback would have queued (:meth:`WatcherBase._queue_own_step`).

A scan that meets the zombie of an entry not yet reaped stops there: its reap
scans again (:meth:`WatcherBase._after_loop_delivery`).

Popen rule (all watchers): a :class:`subprocess.Popen` among the callback's
arguments, or the one an asyncio subprocess transport among them holds
(:func:`childwatch.loops.popen_of`), is evidence about the child that the
pid alone is not.  If it already holds a returncode when the child is
delivered, the Popen reaped the child itself (``send_signal()`` polls
first): that is the status delivered, and the pid, which may already belong
to a newcomer, is neither read nor reaped -- unless the watcher had reaped
the child itself (Fast): a Popen that polled meanwhile found no child
(ECHILD) and made up a returncode of 0, so the watcher's status is delivered
and given to the Popen.  Else the Popen is given the
status before the callback runs, so that it never waits on the pid again (it
would reap the zombie the watcher still holds).  The rule is applied under the
Popen's own lock (:func:`popen_lock`): a reap by the Popen in another thread
is then either finished or not begun.  And a registration of a pid
whose registered (or delivering) child is provably another process -- its
Popen holds a returncode, or the new registration carries a different Popen
for the same pid -- first delivers (or forgets) the old one instead of
replacing it: see :meth:`WatcherBase.add_child_handler`.

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
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

from .._contract import AbstractChildWatcher, ChildCallback, call_in_loop, is_event_loop, running_loop
from .._errors import logger
from .._gevent import refuse_under_gevent
from .._syscalls import PID_MAX, check_pid, not_a_child, read_exit, reaped_elsewhere
from .._syscalls import reap as reap_child  # (the methods' ``reap`` is a flag)
from ..loops import own_exit_step, popen_of, reap_waits_for

REGISTERED = "registered"
DELIVERING = "delivering"
REAP_QUEUED = "reap queued"

_REAP_WAIT_ITERATIONS = 4
"""How many loop iterations a queued reap waits at most for the loop's own
bookkeeping (:func:`childwatch.loops.reap_waits_for`): a bound, so that a
transport that never learns (a stdlib change) cannot keep a zombie forever."""


def theft_check_delay(children: int) -> float:
    """Seconds to wait before checking ``children`` registered pids one by one
    for a child reaped behind the watcher's back: 50 ms with up to 250
    children, 0.2 ms per child beyond (0.2 s for 1,000).  One check costs
    0.6-1.2 us per child, so however many children are registered and however
    often a check is due, the checks take under 1% of a CPU."""
    return max(0.05, 0.0002 * children)


class Entry:
    """One registered child: its callback, arguments, state and watcher-specific handle."""

    __slots__ = ("args", "callback", "epoch", "handle", "hop", "loop", "pid", "state")

    def __init__(
        self,
        pid: int,
        callback: ChildCallback,
        args: Tuple[Any, ...],
        epoch: int,
        loop: Optional[asyncio.AbstractEventLoop],
    ) -> None:
        self.pid = pid
        self.epoch = epoch
        """The watcher's :attr:`WatcherBase._epoch` at registration: a close() since drops it."""
        self.callback = callback
        self.args = args
        self.loop = loop
        """The loop running where the child was registered, if any (None too
        where the watcher does not ask at registration: see
        :attr:`WatcherBase._loop_at_registration`)."""
        self.handle: Any = None
        self.state = REGISTERED
        self.hop: Optional[asyncio.AbstractEventLoop] = None
        """Once claimed: the loop its delivery, then its reap, was handed to."""


POPEN_SETTLE_TIMEOUT = 1.0
"""How long a delivery waits for a Popen's own lock (see :func:`popen_lock`)."""


def collected_by(popen: Optional[subprocess.Popen[Any]]) -> Optional[int]:
    """The returncode ``popen`` holds (it reaped its child, or was told), or None."""
    returncode = None if popen is None else popen.returncode
    return returncode if isinstance(returncode, int) else None


def popen_lock(popen: Optional[subprocess.Popen[Any]]) -> Optional[Any]:
    """``popen``'s own lock, acquired (at most :data:`POPEN_SETTLE_TIMEOUT` waited for), for the
    caller to release once the Popen rule is applied; None if there is none to hold.
    ``poll()``/``wait()`` in another thread hold it from their ``waitpid()`` until the status is
    stored, and look at the returncode again under it before reaping.  So a reap in progress
    finishes before the returncode is read, and none starts between that read and the storing of
    the watcher's status (it would reap the zombie the watcher holds, whose pid a newcomer may
    then take).  Not held if that wait ran out (the lock's holder is the thread this runs in,
    interrupted by a signal handler): the rule is applied without it.  (Not a context manager: it
    is taken once per child.)"""
    lock = getattr(popen, "_waitpid_lock", None)  # (CPython's and PyPy's subprocess)
    if lock is None or not lock.acquire(timeout=POPEN_SETTLE_TIMEOUT):
        return None
    return lock


def exit_of(entry: Entry) -> Tuple[bool, Optional[int]]:
    """:func:`~childwatch._syscalls.read_exit` for a registered child: ``(True,
    None)`` without reading the pid if ``entry``'s Popen reaped it (the pid may
    be a newcomer's by now, running or not)."""
    if entry.args and collected_by(popen_of(entry.pid, entry.args)) is not None:
        return True, None  # (only an argument can carry a Popen)
    return read_exit(entry.pid)


def spawned_here(entry: Entry) -> bool:
    """True if a Popen among ``entry``'s arguments holds its pid and no
    returncode: a child this process spawned, not reaped through that Popen."""
    if not entry.args:
        return False
    popen = popen_of(entry.pid, entry.args)
    return popen is not None and collected_by(popen) is None


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


def _bound_to_a_closed_loop(callback: ChildCallback) -> bool:
    """True if ``callback`` is a method of an event loop that is closed."""
    loop = getattr(callback, "__self__", None)
    return is_event_loop(loop) and bool(loop.is_closed())  # type: ignore[union-attr]


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

    Subclasses implement :meth:`_watch` (start watching a new entry and
    :meth:`_admit` it), :meth:`_unwatch` (stop watching a removed entry) and
    :meth:`_release_resources`.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._table: Dict[int, Entry] = {}  # every entry, registered or not yet reaped
        # One item per REGISTERED entry of the table: append() and pop() are single
        # steps that MultiLoop's signal handler, running in this very thread between
        # two bytecodes, cannot split (it could split ``+= 1``, losing a count).
        self._registered: List[None] = []
        self._closed = False  # close() was called and nothing reopened the watcher since
        self._epoch = 0  # bumped by every close(): entries of an older epoch are dropped
        _live_watchers.add(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child: the parent's children are not ours, its threads are gone.

        The watcher starts empty and stays usable for the child's own children.
        """
        self._lock = threading.RLock()  # another thread may have held it at fork
        self._table.clear()
        self._registered.clear()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._registered)} children"
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
        lifecycle rule in this module's docstring).  A child that has already
        exited may be called back before this returns (Safe and Fast, from the
        loop's thread, as asyncio's namesakes do: see :meth:`_watch`).
        """
        if type(pid) is not int or not 0 < pid <= PID_MAX:
            check_pid(pid)  # raises the precise error
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        refuse_under_gevent(type(self).__name__)
        gone = None
        lock = self._lock  # (acquire/release, not ``with``: every registration takes it)
        lock.acquire()
        try:
            old = self._table.get(pid)
            if old is not None:
                register, gone = self._make_room(old, callback, args)
                if not register:
                    return
            loop = running_loop() if self._loop_at_registration else None
            entry = Entry(pid, callback, args, self._epoch, loop)
            exited = self._watch(entry)
            self._closed = False  # reopened, now that the registration held
            if exited is not None:
                self._claim(pid, entry)  # (the lock was held since the status was read)
        finally:
            lock.release()
            if gone is not None:
                self._dispatch(gone, None, reap=False)  # the Popen rule gives it its status
        if exited is not None:
            self._deliver(entry, *exited)

    def _make_room(
        self, old: Entry, callback: ChildCallback, args: Tuple[Any, ...]
    ) -> Tuple[bool, Optional[Entry]]:
        """A registration of the pid of ``old``, still in the table (lock held):
        ``(register, gone)``.  ``register`` is False if it only replaced the
        registered ``old``'s callback and arguments; ``gone`` is ``old`` if it is
        provably another process (claimed here: the caller delivers it).  Raises
        :func:`~childwatch._syscalls.not_a_child` if the pid's status went to an
        earlier callback."""
        pid, gone = old.pid, None
        entry: Optional[Entry] = old
        if old.state is REGISTERED:
            if self._stale(old):
                self._drop(old)  # its loop closed: watch it afresh
            elif another_process(old, args):
                gone = self._claim(pid, old)
                if gone is not None:
                    self._unwatch(gone)
            else:
                old.callback, old.args = callback, args
                return False, None
            entry = self._table.get(pid)
        if entry is not None and not another_process(entry, args):
            hop = entry.hop
            if hop is None or not hop.is_closed() or entry.state is REAP_QUEUED:
                raise not_a_child(pid)
            # Handed to a loop that closed first: never delivered, watched afresh.
        # (A delivering entry of another process -- its status went out, someone
        # reaped it before we did, the pid is a newcomer's -- is replaced: its
        # queued reap must not touch the newcomer.)
        return True, gone

    def remove_child_handler(self, pid: int) -> bool:
        """Stop watching ``pid``; True if it was registered.  The child is not reaped.

        On a closed watcher: False (nothing is registered), and it stays closed."""
        check_pid(pid)
        with self._lock:
            entry = self._table.get(pid)
            if entry is None or entry.state is not REGISTERED:
                return False
            self._drop(entry)
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
            for entry in self._registered_entries():
                self._drop(entry)
            if self._release_under_lock:  # no registration may slip in before the resources go
                self._release_resources()
                return
        self._release_resources()

    def is_active(self) -> bool:
        """True: a registration works now, closed or not (it reopens the watcher)."""
        return True

    def __enter__(self) -> WatcherBase:
        return self

    # -- for subclasses ---------------------------------------------------

    _release_under_lock = True
    """Whether :meth:`close` releases the resources in the same hold of the lock
    that closed the watcher (else a registration from another thread in
    between would reopen it on resources about to go, and never be
    delivered).  Threaded releases after it (it joins its waiter threads,
    which take the lock), and checks ``_closed`` and the epoch itself."""

    _loop_at_registration = True
    """Whether a registration records the loop running where it is made
    (``Entry.loop``).  Safe and Fast deliver in their attached loop and ask
    only when they need it (none attached, or a child found exited at
    registration): asking costs a ``getpid()`` on Python 3.9-3.11."""

    def _watch(self, entry: Entry) -> Optional[Tuple[int, bool]]:
        """Start watching the new ``entry`` and :meth:`_admit` it (lock held).

        Returns ``(returncode, reap)`` of a child found exited that
        :meth:`add_child_handler` is to deliver right away, once it has released
        the lock (None: the watcher delivers it later).  Raises
        :class:`ChildProcessError` (:func:`~childwatch._syscalls.child_status`)
        if its pid is not our child: nothing is registered then."""
        raise NotImplementedError

    def _stale(self, entry: Entry) -> bool:
        """True if ``entry`` can no longer be delivered (the loop watching it closed)."""
        return False

    def _unwatch(self, entry: Entry) -> None:
        """Stop watching ``entry``, no longer registered (lock held)."""

    def _release_resources(self) -> None:
        """Free what the watcher holds; called once by :meth:`close`."""

    def _admit(self, entry: Entry) -> None:
        """Put the new ``entry`` in the table, registered (lock held): it replaces
        whatever entry of its pid was not yet reaped."""
        self._registered.append(None)  # first: a handler may claim it once it is in the table
        self._table[entry.pid] = entry

    def _drop(self, entry: Entry) -> None:
        """Take the registered ``entry`` out of the table and :meth:`_unwatch` it (lock held)."""
        del self._table[entry.pid]
        self._registered.pop()
        self._unwatch(entry)

    def _registered_entries(self) -> List[Entry]:
        """The registered entries, as a list (lock held; the values are copied in one
        C call first: MultiLoop's signal handler may claim an entry mid-iteration)."""
        return [entry for entry in list(self._table.values()) if entry.state is REGISTERED]

    def _claim(self, pid: int, entry: Optional[Entry] = None) -> Optional[Entry]:
        """Make ``pid``'s registered entry :data:`DELIVERING` and return it; None
        if there is none (another thread claimed it, or it was removed).  Call
        it with the lock held.

        With ``entry`` given, claim only that very entry.
        """
        # A signal handler in this very thread (MultiLoop's; the RLock lets it
        # in) may run between any two lines: the entry is out of the table until
        # the claim is decided (the pop is the one step that cannot be taken
        # twice).  The handler sees no entry meanwhile: an exit it cannot
        # deliver, so it checks every pid, and this delivery rescans.
        current = self._table.pop(pid, None)
        if current is None:
            return None
        claimed = current.state is REGISTERED and (entry is None or current is entry)
        if claimed:
            current.state = DELIVERING
            current.hop = current.loop
            self._registered.pop()
        self._table[pid] = current
        return current if claimed else None

    def _dispatch(self, entry: Entry, returncode: Optional[int], reap: bool = True) -> None:
        """Deliver a claimed entry, in the thread that saw the exit (a subclass
        that sees exits outside the entry's loop hands it over:
        :meth:`_dispatch_to_loop`)."""
        self._deliver(entry, returncode, reap)

    def _dispatch_to_loop(self, entry: Entry, returncode: Optional[int], reap: bool = True) -> None:
        """Deliver a claimed entry in the thread of the loop it was registered from.

        For watchers that see exits outside any loop (a waiter thread, a signal
        handler): asyncio 3.14+ loops require their callback in the loop's own
        thread, and the wake-up makes a loop blocked in its selector see it.
        With no such loop, or once it is closed, deliver right here.
        """
        loop = entry.loop
        if loop is None or not call_in_loop(loop, self._deliver_in_loop, entry, returncode, reap, wake=True):
            self._deliver(entry, returncode, reap)

    def _deliver_in_loop(self, entry: Entry, returncode: Optional[int], reap: bool) -> None:
        self._deliver(entry, returncode, reap)
        self._after_loop_delivery()

    def _after_loop_delivery(self) -> None:
        """Called in a loop's thread after a handed-over delivery or a late reap:
        the zombie just reaped may have hidden other exits from a scan."""

    def _deliver(self, entry: Entry, returncode: Optional[int], reap: bool = True) -> None:
        """Call the claimed entry's callback, then reap the child (:meth:`_finish`).

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
            if popen is not None:
                held = popen_lock(popen)
                try:
                    collected = collected_by(popen)
                    if collected is not None and (reap or returncode is None):
                        returncode, reap = collected, False  # its Popen reaped it: the pid is not ours now
                    elif returncode is not None:  # (see the Popen rule)
                        popen.returncode = returncode  # so that it never waits on the pid we still hold
                finally:
                    if held is not None:
                        held.release()
        if returncode is None:
            returncode = reaped_elsewhere(entry.pid)
        queued = False
        try:
            if getattr(entry.callback, "__self__", None) is not None and _bound_to_a_closed_loop(
                entry.callback
            ):
                # It could only raise "Event loop is closed" (asyncio's own
                # _child_watcher_callback, a test's loop gone): say so, as asyncio does.
                logger.warning(
                    "the loop that handles pid %d is closed: its status %d is dropped", entry.pid, returncode
                )
            else:
                queued = reap and bool(args) and self._queue_own_step(entry, returncode)
                if not queued:
                    entry.callback(entry.pid, returncode, *args)
        except Exception as exc:
            self._report(entry, exc)
        finally:
            if not (queued or (reap and args and self._queue_reap(entry))):
                self._finish(entry, reap)

    def _finish(self, entry: Entry, reap: bool) -> None:
        """``entry`` is done: drop it and reap its child if ``reap`` -- unless the
        pid is not this entry's any more (a newcomer may own it: :meth:`add_child_handler`)."""
        lock = self._lock  # (acquire/release, not ``with``: taken once per child)
        lock.acquire()
        try:
            if self._table.get(entry.pid) is entry:
                del self._table[entry.pid]
                if reap:
                    reap_child(entry.pid)
        finally:
            lock.release()

    def _queue_reap(self, entry: Entry) -> bool:
        """Reap ``entry``'s child later, in a loop, if the loop's adapter says its
        own bookkeeping must learn the status first
        (:func:`childwatch.loops.reap_waits_for`: the 3.9-3.13 stdlib loop's
        transports).  The reap is queued on that loop and waits there
        (:meth:`_reap_when_learnt`); the entry is :data:`REAP_QUEUED`
        meanwhile.  False: reap now (no such wait, the pid went to a newcomer,
        or the loop is closed)."""
        waits = reap_waits_for(entry.callback, entry.args)
        if waits is None:
            return False
        loop, learnt = waits
        if not self._mark_reap_queued(entry, loop):
            return False  # its pid went to a newcomer: _finish leaves it alone
        if call_in_loop(loop, self._reap_when_learnt, entry, learnt, _REAP_WAIT_ITERATIONS):
            return True
        with self._lock:  # the loop is closed: nobody will learn more
            entry.state = DELIVERING
        return False

    def _queue_own_step(self, entry: Entry, returncode: int) -> bool:
        """Delivering in the loop's own thread to the loop's own callback, which
        would only queue its transport's step (:func:`childwatch.loops.own_exit_step`:
        the 3.9-3.13 stdlib loop's): queue that step here instead, with the reap
        right after it (:meth:`_step_then_reap`): no thread-safe hand-over (a
        wake-up write the loop then reads) and no reap waiting for the step.
        True if so; False: the callback is called as usual."""
        step = own_exit_step(entry.callback, entry.args)
        if step is None:
            return False
        loop, run, iterations = step
        if loop is not running_loop() or not self._mark_reap_queued(entry, loop):
            return False
        loop.call_soon(self._step_then_reap, entry, run, returncode, iterations - 1)
        return True

    def _step_then_reap(
        self, entry: Entry, run: Callable[[int], object], returncode: int, iterations_left: int
    ) -> None:
        """In the loop, ``iterations_left`` iterations on: ``run(returncode)`` (its
        error goes to the loop's exception handler, as the callback's step's
        would), then the queued reap."""
        if iterations_left > 0:
            asyncio.get_running_loop().call_soon(
                self._step_then_reap, entry, run, returncode, iterations_left - 1
            )
            return
        try:
            run(returncode)
        finally:
            self._reap_queued(entry)

    def _mark_reap_queued(self, entry: Entry, loop: asyncio.AbstractEventLoop) -> bool:
        """Make ``entry`` :data:`REAP_QUEUED` on ``loop``; False if its pid went to a newcomer."""
        with self._lock:
            if self._table.get(entry.pid) is not entry:
                return False
            entry.hop, entry.state = loop, REAP_QUEUED
        return True

    def _reap_when_learnt(self, entry: Entry, learnt: Any, iterations_left: int) -> None:
        """In the loop: reap once ``learnt()`` (or after :data:`_REAP_WAIT_ITERATIONS`
        loop iterations, whatever happens)."""
        if not learnt() and iterations_left > 0:
            asyncio.get_running_loop().call_soon(self._reap_when_learnt, entry, learnt, iterations_left - 1)
            return
        self._reap_queued(entry)

    def _reap_queued(self, entry: Entry) -> None:
        """In the loop: reap the queued ``entry``'s child, unless it is no longer
        queued: a scan reaped it (its loop being closed), or its pid went to a newcomer."""
        with self._lock:
            if self._table.get(entry.pid) is not entry or entry.state is not REAP_QUEUED:
                return
            del self._table[entry.pid]
            reap_child(entry.pid)
        self._after_loop_delivery()

    def _deliver_if_exited(self, pid: int, entry: Optional[Entry] = None) -> bool:
        """Read ``pid``'s status and, if it has exited, claim and deliver it; True if it has.

        With ``entry``, only that very entry is delivered.
        """
        if entry is None:
            with self._lock:
                entry = self._table.get(pid)
        if entry is None or entry.state is not REGISTERED:
            exited, returncode = read_exit(pid)
        else:
            exited, returncode = exit_of(entry)
        if exited:
            self._deliver_exit(pid, entry, returncode)
        return exited

    def _deliver_exit(self, pid: int, entry: Optional[Entry], returncode: Optional[int]) -> None:
        """Claim ``pid`` (only ``entry``, if given) and dispatch the status read
        of it (None: reaped by someone else)."""
        with self._lock:
            claimed = self._claim(pid, entry)
        if claimed is not None:
            self._dispatch(claimed, returncode, returncode is not None)

    def _report(self, entry: Entry, exc: BaseException) -> None:
        message = f"exception in child watcher callback {entry.callback!r} for pid {entry.pid}"
        loop = running_loop()
        if loop is not None:
            loop.call_exception_handler({"message": message, "exception": exc})
        else:
            logger.error(message, exc_info=exc)
