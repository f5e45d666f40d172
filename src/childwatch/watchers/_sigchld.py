"""The SIGCHLD watchers' base: the scans that Safe, Fast and MultiLoop share, and
the loop-side handler that Safe and Fast share.

A SIGCHLD tells that some child exited, not which: a scan asks
``waitid(P_ALL, WNOWAIT)`` for the exited children one by one
(:meth:`SigchldWatcher._scan_visible_exits`, the one scan loop), which costs
O(1) per exit as long as the exited children it shows are the watcher's own.
An exited child of someone else's hides the others (the kernel shows the
same one until it is reaped): then every registered pid is checked
(:meth:`SigchldWatcher._check_all`, O(registered)).  A child reaped behind
the watcher's back raises a SIGCHLD that shows nothing: every pid is checked
within :func:`~._base.theft_check_delay` of such a signal (the theft timer).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import weakref
from types import FrameType
from typing import Any, Callable, List, Optional, Tuple

from .._contract import call_in_loop, check_loop, is_event_loop, running_loop
from .._gevent import refuse_under_gevent
from .._syscalls import child_status, peek_any
from .._syscalls import reap as reap_child
from ..loops import refuse_sigchld, signal_wakeup_fd
from ._base import REAP_QUEUED, Entry, WatcherBase, theft_check_delay

CLEAR = "clear"
"""A scan ended with no exited child left in view."""
BUSY = "busy"
"""A scan stopped at an exited child of ours still being delivered: its reap rescans."""
HIDDEN = "hidden"
"""A scan stopped at an exited child that is not ours: it hides the others."""


def quiet_wakeup_fd(fd: int) -> None:
    """Make ``fd``, the signal wake-up fd, drop bytes without a warning once it is full.

    Python warns ("Exception ignored when trying to write to the signal wakeup
    fd", with a traceback, from the main thread) for every signal that finds
    the wake-up pipe full.  Under a flood of SIGCHLD (threads churning
    children) those warnings cost the main thread more than the interval
    between signals, and the loop that should drain the pipe never gets to it.
    A full pipe already says "a signal came": nothing is lost by not writing
    more.  If the wake-up fd is not ``fd`` (someone else's, or none), it is put
    back as it was found, quiet too.
    """
    try:
        previous = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    except ValueError:  # not the main thread, or fd closed: nothing changed
        return
    if previous != fd:
        signal.set_wakeup_fd(previous, warn_on_full_buffer=False)


REQUIET_INTERVAL = 0.01
"""Seconds between two re-quietings of a loop's wake-up fd by :class:`_KeepQuiet`."""


class _KeepQuiet:
    """The Python-level SIGCHLD handler of a loop with Safe/Fast attached (in the
    main thread, at once, whatever the loop is busy with): its wake-up fd quiet
    again (:func:`quiet_wakeup_fd`) if :data:`REQUIET_INTERVAL` has passed since
    it last was.  (``set_wakeup_fd`` costs two syscalls; an application's
    ``add_signal_handler()`` that makes the fd warn again is rare, and the pipe
    holds far more than 10 ms of signals.)"""

    __slots__ = ("fd", "quieted")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.quieted = time.monotonic()
        quiet_wakeup_fd(fd)

    def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
        now = time.monotonic()
        if now - self.quieted >= REQUIET_INTERVAL:
            self.quieted = now
            quiet_wakeup_fd(self.fd)


def _is_asyncio_noop(handler: Any) -> bool:
    """True for asyncio's own Python-level signal handler (a no-op: its loops
    learn of signals from the wake-up fd)."""
    return callable(handler) and getattr(handler, "__module__", "") == "asyncio.unix_events"


def _is_foreign(handler: Any) -> bool:
    """True for a Python handler that is not an event loop's own signal machinery
    (asyncio's no-op, or a method of a loop, as trio-asyncio installs) nor ours."""
    if not callable(handler) or _is_asyncio_noop(handler):
        return False
    if isinstance(handler, _KeepQuiet):
        return False
    return not is_event_loop(getattr(handler, "__self__", None))


class _LoopSigchld:
    """The one SIGCHLD handler childwatch keeps on a loop, shared by every Safe
    and Fast watcher attached to that loop.

    A loop holds one handler per signal, so watchers sharing a loop must share
    it: asyncio's own Safe and Fast each install theirs, and closing an old
    watcher re-attached to a new loop (what asyncio's policy does on
    ``set_event_loop()``) removes the new watcher's handler, which then never
    fires.  Here the handler goes only when its last watcher detaches.  A Python
    SIGCHLD handler it replaced is called after each dispatch, and put back
    when it goes (so is one installed after it).  The loop's signal wake-up fd
    is kept quiet when full (:func:`quiet_wakeup_fd`): at install, and by the
    Python-level SIGCHLD handler (asyncio's is a no-op; ours is
    :class:`_KeepQuiet`, at most every 10 ms), since any later ``add_signal_handler()`` of the
    application makes it warn again and the loop itself may be too busy to
    notice before a flood fills the pipe.
    """

    __slots__ = ("__weakref__", "loop", "previous", "scan_queued", "watchers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)
        self.watchers: List[LoopSigchldWatcher] = []
        self.scan_queued = False
        previous = signal.getsignal(signal.SIGCHLD)
        loop.add_signal_handler(signal.SIGCHLD, self._dispatch)
        wakeup_fd = signal_wakeup_fd(loop)
        if wakeup_fd is not None and _is_asyncio_noop(signal.getsignal(signal.SIGCHLD)):
            # (a loop whose signals arrive through the wake-up fd alone: the Python-level
            # handler is asyncio's no-op, ours can take its place)
            signal.signal(signal.SIGCHLD, _KeepQuiet(wakeup_fd))
        self.previous: Optional[Callable[[int, Optional[FrameType]], Any]] = (
            previous if callable(previous) and _is_foreign(previous) else None
        )

    def _dispatch(self) -> None:
        # In the loop's thread, once per signal byte.  The bytes of one wake-up
        # are handled in a row, and one scan queued after them serves them all.
        loop = self.loop()
        if not self.scan_queued and loop is not None:
            self.scan_queued = True
            loop.call_soon(self._scan)
        if self.previous is not None:
            self.previous(signal.SIGCHLD, None)  # the Python handler ours replaced

    def _scan(self) -> None:
        self.scan_queued = False  # first: a signal from now on queues a scan of its own
        for watcher in list(self.watchers):
            watcher._on_sigchld()

    def remove(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take the handler off the loop (which resets SIGCHLD to SIG_DFL): put back
        a Python handler installed after ours, or else the one ours replaced."""
        if loop.is_closed():
            return  # closing the loop removed its handlers
        current = signal.getsignal(signal.SIGCHLD)
        loop.remove_signal_handler(signal.SIGCHLD)
        theirs = current if _is_foreign(current) else self.previous
        if theirs is not None:
            signal.signal(signal.SIGCHLD, theirs)


_hubs: weakref.WeakValueDictionary[int, _LoopSigchld] = weakref.WeakValueDictionary()
"""The shared handler of each loop with a Safe/Fast watcher attached, by ``id(loop)``
(main thread only).  Only the loop's signal handler holds a hub: once the loop
drops it (``loop.close()``, or the loop is collected) the hub goes, and with
it the hold on its watchers."""


def _hub_of(loop: asyncio.AbstractEventLoop) -> Optional[_LoopSigchld]:
    hub = _hubs.get(id(loop))
    return hub if hub is not None and hub.loop() is loop else None


class SigchldWatcher(WatcherBase):
    """The scans of a watcher woken by SIGCHLD (Safe, Fast, MultiLoop)."""

    def __init__(self) -> None:
        super().__init__()
        # The pending check for children reaped behind our back: (its loop, its timer).
        self._theft_timer: Optional[Tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle]] = None
        # Children found exited at registration, to deliver from the loop: (the loop, its batch).
        self._exited_early: Optional[Tuple[asyncio.AbstractEventLoop, List[Tuple[Entry, int, bool]]]] = None

    def _after_fork_in_child(self) -> None:
        self._theft_timer = None
        self._exited_early = None
        super()._after_fork_in_child()

    def _deliver_early(
        self, loop: asyncio.AbstractEventLoop, entry: Entry, returncode: int, reap: bool
    ) -> None:
        """``entry``, just registered for the open ``loop`` (from outside its
        thread, or by MultiLoop), had exited already: its SIGCHLD came before it
        was ours.  Deliver it from the loop, with the others found so before the
        loop gets to them (one callback for them all), with the status read at
        registration (lock held)."""
        batch = self._exited_early
        if batch is None or batch[0] is not loop:
            batch = (loop, [])
            call_in_loop(loop, self._deliver_exited_early, batch[1])
            self._exited_early = batch
        batch[1].append((entry, returncode, reap))

    def _deliver_exited_early(self, batch: List[Tuple[Entry, int, bool]]) -> None:
        """In the loop: deliver a batch of :meth:`_deliver_early` (those removed or
        re-registered since, claimed no more, are not).  A batch is delivered
        once: by its own callback, or first by a scan that comes before it
        (:meth:`LoopSigchldWatcher._on_sigchld`), which empties it."""
        with self._lock:
            if self._exited_early is not None and self._exited_early[1] is batch:
                self._exited_early = None  # closed: a registration now starts a new batch
            items = batch[:]
            batch.clear()
        for entry, returncode, reap in items:
            with self._lock:
                claimed = self._claim(entry.pid, entry)
            if claimed is not None:
                self._deliver(claimed, returncode, reap)

    def _scan_visible_exits(self, dispatch: Callable[[Entry, int], None]) -> str:
        """Deliver our exited children, as ``waitid(P_ALL, WNOWAIT)`` shows them one by one.

        ``dispatch(entry, returncode)`` delivers each one claimed here:
        :meth:`~._base.WatcherBase._deliver` itself where the scan runs in the
        thread that calls back (Safe, Fast: their attached loop), else what
        hands it over (MultiLoop).  Returns why it stopped: :data:`CLEAR`,
        :data:`BUSY` or :data:`HIDDEN`.  An exited child of ours whose reap was
        queued on a loop that closed before running it is reaped here, and the
        scan goes on.
        """
        lock = self._lock  # (acquire/release, not ``with``: taken once per exit)
        while True:
            found = peek_any()
            if found is None:
                return CLEAR
            pid, returncode = found
            lock.acquire()
            try:
                entry = self._claim(pid)
                if entry is None:
                    stop = self._unclaimable(pid, returncode)
            finally:
                lock.release()
            if entry is not None:
                dispatch(entry, returncode)
            elif stop is not None:
                return stop

    def _unclaimable(self, pid: int, returncode: int) -> Optional[str]:
        """The scan met exited child ``pid``, which it cannot claim (lock held):
        why it stops there, or None if it goes on (the child is reaped now)."""
        entry = self._table.get(pid)
        if entry is None:
            return self._foreign_exit(pid, returncode)
        hop = entry.hop
        if hop is None or not hop.is_closed() or entry.state is not REAP_QUEUED:
            # (One handed to a loop that closed before delivering it stays, to be registered again.)
            return BUSY
        del self._table[pid]
        reap_child(pid)
        return None

    def _foreign_exit(self, pid: int, returncode: int) -> Optional[str]:
        """The scan met the exited child of someone else (lock held): :data:`HIDDEN`
        (it stops there), or None if the watcher reaped it (Fast)."""
        return HIDDEN

    def _check_all(self) -> None:
        """Check every registered pid: O(registered children)."""
        with self._lock:
            entries = self._registered_entries()
        for entry in entries:
            # Only that very entry: one registered since checked itself.
            self._deliver_if_exited(entry.pid, entry)

    def _schedule_theft_check(self, loop: asyncio.AbstractEventLoop) -> None:
        """Check every registered pid on ``loop`` within :func:`~._base.theft_check_delay`,
        unless such a check is pending already."""
        timer = self._theft_timer
        if timer is None or timer[0].is_closed():
            delay = theft_check_delay(len(self._registered))
            self._theft_timer = (loop, loop.call_later(delay, self._theft_check_now))

    def _theft_check_now(self) -> None:
        self._theft_timer = None
        if not self._closed:
            self._check_all()


class LoopSigchldWatcher(SigchldWatcher):
    """A watcher woken by SIGCHLD on the loop it is attached to.

    Callbacks run in that loop's thread.  With no loop attached (or the
    attached one closed), a registration attaches the running loop.  ``add_signal_handler`` only works
    for a loop in the main thread, and loops that forbid SIGCHLD handlers
    (uvloop) are refused with :class:`~childwatch.UnsupportedLoopError`.
    Every childwatch Safe/Fast watcher attached to one loop shares one handler
    there (:class:`_LoopSigchld`): detaching or closing one never silences another.
    """

    def __init__(self) -> None:
        super().__init__()
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def attach_loop(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        """Listen for SIGCHLD on ``loop`` (None: on no loop).  Attaching a closed
        watcher reopens it; ``attach_loop(None)`` on it does nothing."""
        loop = check_loop(loop)
        with self._lock:
            if loop is not None:
                refuse_under_gevent(type(self).__name__)
                refuse_sigchld(type(self).__name__, loop, through_loop=True)
                if threading.current_thread() is not threading.main_thread():
                    raise RuntimeError(
                        f"{type(self).__name__} handles SIGCHLD through loop.add_signal_handler(), which "
                        "works only from the main thread: attach it from there, or use "
                        "ThreadedChildWatcher or PidfdChildWatcher for loops in other threads"
                    )
            self._detach()
            if loop is None:
                return
            hub = _hub_of(loop)
            if hub is None:
                hub = _hubs[id(loop)] = _LoopSigchld(loop)
            hub.watchers.append(self)
            self._loop = loop
            self._closed = False
            if self._registered:
                # Children may have exited while no loop listened.
                call_in_loop(loop, self._check_all)

    def is_active(self) -> bool:
        """True if attached to a running loop, or if the first registration will
        attach to the loop running now (none attached, or the attached one closed)."""
        if self._loop is None or self._loop.is_closed():
            return running_loop() is not None
        return self._loop.is_running()

    def _detach(self) -> None:
        """Leave the loop: its handler, timers and the hubs are the main thread's
        (``signal.signal`` works only there), so from another thread (a
        ``close()`` anywhere) the leaving is handed to the loop, which runs in
        the main thread; the watcher is detached at once all the same."""
        loop, self._loop = self._loop, None
        timer, self._theft_timer = self._theft_timer, None
        if loop is None:
            self._leave(None, timer)
        elif (
            threading.current_thread() is threading.main_thread()
            or loop.is_closed()
            or not call_in_loop(loop, self._leave, loop, timer)
        ):
            self._leave(loop, timer)

    def _leave(
        self,
        loop: Optional[asyncio.AbstractEventLoop],
        timer: Optional[Tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle]],
    ) -> None:
        """Cancel the theft check and leave ``loop``'s hub (in the main thread)."""
        if timer is not None:
            timer[1].cancel()
        if loop is None:
            return
        hub = _hub_of(loop)
        if hub is None or self not in hub.watchers:
            return
        hub.watchers.remove(self)
        if not hub.watchers:
            del _hubs[id(loop)]
            hub.remove(loop)

    def _release_resources(self) -> None:
        with self._lock:
            self._detach()

    _loop_at_registration = False  # (asked below, when needed)

    def _watch(self, entry: Entry) -> Optional[Tuple[int, bool]]:
        loop = self._loop
        if loop is None or loop.is_closed():
            # asyncio.Runner(loop_factory=...) and 3.14+ loops never attach us.
            loop = entry.loop = running_loop()
            if loop is None:
                raise RuntimeError(
                    f"{type(self).__name__} needs an event loop: call attach_loop(loop) "
                    "or register children from a running loop"
                )
            self.attach_loop(loop)
        returncode, reap = self._status_at_registration(entry.pid)
        self._admit(entry)
        if returncode is None:
            return None
        if entry.loop is None:
            entry.loop = running_loop()
        if loop is entry.loop:
            # Registered from the loop's own thread: called back before
            # add_child_handler returns, as asyncio's Safe and Fast do.
            return returncode, reap
        self._deliver_early(loop, entry, returncode, reap)
        return None

    def _status_at_registration(self, pid: int) -> Tuple[Optional[int], bool]:
        """``(returncode, reap)`` of child ``pid`` being registered (lock held):
        the returncode None while it runs; ``reap`` False if the watcher reaped
        it already (Fast).  Raises ChildProcessError if ``pid`` is not our child."""
        return child_status(pid), True

    def _on_sigchld(self) -> None:
        # Called by the loop's shared handler: a scan that finds nothing costs one waitid().
        if self._closed:
            return
        early = self._exited_early
        if early is not None and early[0] is self._loop:
            # Delivered first, with the statuses already read: the scan need not find them.
            self._deliver_exited_early(early[1])
        self._scan()
        if self._registered and self._loop is not None:
            self._schedule_theft_check(self._loop)

    def _after_loop_delivery(self) -> None:
        # A child reaped late (after its asyncio transport learnt the status)
        # hid the exits behind it: scan again, in the attached loop's thread.
        loop = self._loop
        if self._closed or loop is None:
            return
        if loop is running_loop():
            self._scan()
        else:
            call_in_loop(loop, self._scan)

    def _scan(self) -> None:
        """Deliver the exits a SIGCHLD announced."""
        raise NotImplementedError
