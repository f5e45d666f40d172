"""MultiLoopChildWatcher: one process-wide SIGCHLD handler, loops in any thread."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import weakref
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

from .._contract import check_loop, running_loop
from .._gevent import refuse_under_gevent
from .._syscalls import child_status
from ..loops import refuse_sigchld
from ._base import REGISTERED, Entry
from ._sigchld import BUSY, HIDDEN, SigchldWatcher

_Handler = Union[Callable[[int, Optional[FrameType]], Any], int, None]


class _ProcessSigchld:
    """The one ``signal.signal(SIGCHLD)`` handler shared by every MultiLoopChildWatcher.

    A watcher joins when it first needs the handler (from the main thread)
    and leaves when it is closed; the handler goes, and the one it replaced
    comes back, when the last member leaves from the main thread (from another
    thread it stays, dispatching to nobody, until then).  Members are held
    weakly: an abandoned watcher that watches nothing is garbage-collected
    (one with registered children is kept alive by :data:`_busy` until they are
    delivered).  The member list is a tuple replaced whole, so the handler,
    which may interrupt the main thread anywhere, reads it without a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # writers only; never taken by the handler
        self._members: Tuple[weakref.ref[MultiLoopChildWatcher], ...] = ()
        self._previous: _Handler = None
        self._installed = False

    def join(self, watcher: MultiLoopChildWatcher) -> None:
        """Make ``watcher`` a member (call from the main thread)."""
        with self._lock:
            self._members = (*self._live(None), weakref.ref(watcher))
            if not self._installed:
                # What the handler reads is in place before it can first run (right after signal()).
                self._previous = signal.getsignal(signal.SIGCHLD)
                signal.signal(signal.SIGCHLD, self._handle)
                signal.siginterrupt(signal.SIGCHLD, False)
                self._installed = True

    def leave(self, watcher: MultiLoopChildWatcher) -> None:
        """``watcher`` is no member any more; the last one out restores the handler."""
        with self._lock:
            self._members = self._live(watcher)
            if self._members or not self._installed:
                return
            if threading.current_thread() is not threading.main_thread():
                return  # signal.signal() works only there: the next leave in it restores
            self._installed = False
            # Restore the previous handler only if nobody replaced ours meanwhile.
            if signal.getsignal(signal.SIGCHLD) == self._handle:
                previous = signal.SIG_DFL if self._previous is None else self._previous
                signal.signal(signal.SIGCHLD, previous)

    def _live(
        self, dropping: Optional[MultiLoopChildWatcher]
    ) -> Tuple[weakref.ref[MultiLoopChildWatcher], ...]:
        return tuple(ref for ref in self._members if ref() not in (None, dropping))

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        for ref in self._members:
            watcher = ref()
            if watcher is not None:
                watcher._on_sigchld()
        previous = self._previous
        if callable(previous):
            previous(signum, frame)


_process_sigchld = _ProcessSigchld()
if hasattr(os, "register_at_fork"):  # another thread may hold its lock at fork
    os.register_at_fork(after_in_child=lambda: setattr(_process_sigchld, "_lock", threading.Lock()))

_busy: Set[MultiLoopChildWatcher] = set()
"""Members with registered children: held here until those are delivered, as
asyncio's signal handler held its watcher."""


class _MainThreadWakeup:
    """Wakes the main thread's loops for SIGCHLD while children are registered.

    Python runs a signal handler only between bytecodes of the main thread.
    A SIGCHLD that arrives just before a loop in the main thread blocks in
    its selector is handled only once something else wakes that loop: with
    nothing else to do, the child's status waits for the loop's next timer
    (asyncio's own MultiLoop watcher has this race: bpo-38323).  While any
    MultiLoop watcher has children (:data:`_busy`), the C-level handler
    writes to a pipe of ours (``signal.set_wakeup_fd``) that every loop
    children were registered from in the main thread reads, so the loop wakes
    and the Python handler runs at once.  If a wakeup fd is already set (a
    loop's ``add_signal_handler`` sets its own, which wakes that loop) it is
    kept, made quiet when full as ours is (a flood of SIGCHLD must not
    turn into a warning per signal: :func:`~._sigchld.quiet_wakeup_fd`).
    Everything here runs in the main thread, never in the signal handler:
    the pipe goes, and the previous wakeup fd comes back, when a loop's
    callback or a close() finds no watcher busy.
    """

    def __init__(self) -> None:
        self._pipe: Optional[Tuple[int, int]] = None
        # Plain references without callbacks: a WeakSet is changed by the garbage collector, in
        # whichever thread it runs (free-threaded CPython: while this one iterates it).
        self._loops: Set[weakref.ref[asyncio.AbstractEventLoop]] = set()
        self._last: Callable[[], Optional[asyncio.AbstractEventLoop]] = lambda: None  # the loop armed last

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make ``loop`` wake up for SIGCHLD if it runs in the main thread (else do nothing)."""
        if self._pipe is not None and self._last() is loop:
            return  # (every registration asks: mostly for the loop armed last, armed still)
        if threading.current_thread() is not threading.main_thread():
            return
        if self._pipe is None:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            if previous != -1:  # someone's: keep it, quiet when full (quiet_wakeup_fd)
                signal.set_wakeup_fd(previous, warn_on_full_buffer=False)
                os.close(r)
                os.close(w)
                return
            self._pipe = (r, w)
        ref = weakref.ref(loop)
        if ref not in self._loops:  # (live references compare by their loops)
            loop.add_reader(self._pipe[0], self._drain)
            self._loops.add(ref)
        self._last = ref

    def _drain(self) -> None:
        if self._pipe is None:
            return  # readiness the loop collected before remove_reader (uringcore runs it still)
        try:
            while len(os.read(self._pipe[0], 4096)) == 4096:  # a short read emptied the pipe
                pass
        except BlockingIOError:  # a wake-up with nothing to read
            pass
        self.disarm_if_idle()

    def disarm_if_idle(self) -> None:
        """Drop the pipe if no watcher is busy (a no-op outside the main thread)."""
        if self._pipe is None or _busy or threading.current_thread() is not threading.main_thread():
            return
        r, w = self._pipe
        self._pipe = None
        current = signal.set_wakeup_fd(-1)
        if current != w:  # someone replaced ours meanwhile: theirs stays
            signal.set_wakeup_fd(current)
        for ref in self._loops:
            loop = ref()
            if loop is not None and not loop.is_closed():
                loop.remove_reader(r)
        self._loops.clear()
        self._last = lambda: None
        os.close(r)
        os.close(w)


_wakeup = _MainThreadWakeup()


class MultiLoopChildWatcher(SigchldWatcher):
    """A ``signal.signal(SIGCHLD)`` handler shared by every loop and thread.

    The handler is installed from the main thread, by :meth:`attach_loop` or
    the first registration, and the previous one restored when the last
    MultiLoop watcher is closed (from the main thread; see
    :class:`_ProcessSigchld`).  Children can then be registered from any
    thread, with or without a loop.  A child registered from a running loop is called back in
    that loop's thread; one registered outside any loop, in whichever thread
    finds its exit: the main thread's signal handler, a loop's thread scanning
    after a delivery there, or the registering thread if it had already
    exited (such a callback must be thread-safe and must not wait for locks
    the main thread may hold).  Python runs
    signal handlers only in the main thread, between bytecodes: while the
    main thread is blocked in C code that a signal does not interrupt (a
    signal delivered to another thread interrupts nothing in the main
    thread), statuses wait until it runs Python code again.

    Unlike asyncio's, a SIGCHLD arriving while the handler runs does not
    re-enter it (the running handler scans again instead), and every status
    is claimed exactly once: no child is ever reported as 255 because a
    nested handler reaped it first.  A handler that was installed before this
    one is still called after it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._installed = False  # a member of _process_sigchld
        self._scanning = threading.Lock()
        self._rescan = False
        self._theft_due = False  # a SIGCHLD arrived since every pid was last checked
        self._signals = 0  # SIGCHLDs handled so far (only ever grows)
        self._exited_at_probe: Dict[int, int] = {}  # registering now, and found exited: their returncodes
        # Entries registered outside any loop (a superset: claimed ones leave lazily).
        self._loopless: Dict[int, Entry] = {}
        # The last loop found to allow SIGCHLD handlers.
        self._allowed: Callable[[], Optional[asyncio.AbstractEventLoop]] = lambda: None

    def attach_loop(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        """Install the SIGCHLD handler (``loop`` only validated: children are
        delivered on the loop they were registered from).  Attaching a closed
        watcher to a loop reopens it; ``attach_loop(None)`` does nothing."""
        loop = check_loop(loop)
        with self._lock:
            if loop is not None:
                refuse_under_gevent(type(self).__name__)
                refuse_sigchld(type(self).__name__, loop)
                self._install()
                self._closed = False

    def is_active(self) -> bool:
        return self._installed or threading.current_thread() is threading.main_thread()

    def _dispatch_to_loop(self, entry: Entry, returncode: Optional[int], reap: bool = True) -> None:
        """As for every watcher; but a child registered outside any loop whose
        status someone else collected is delivered from a thread of its own when
        the main thread (the signal handler) finds it: the Popen rule may wait
        for that child's Popen to store its status, and the handler may have
        interrupted that very Popen's ``wait()`` in the main thread."""
        if (
            entry.loop is None
            and returncode is None
            and threading.current_thread() is threading.main_thread()
        ):
            threading.Thread(
                target=self._deliver,
                args=(entry, None, reap),
                name="childwatch-multiloop-deliver",
                daemon=True,
            ).start()
            return
        super()._dispatch_to_loop(entry, returncode, reap)

    # Never call back from inside a signal handler: hand over to the loop.
    _dispatch = _dispatch_to_loop

    def _dispatcher(self, in_loop: Optional[asyncio.AbstractEventLoop]) -> Callable[[Entry, int], None]:
        """How a scan running in ``in_loop``'s callback (None: in the signal
        handler) delivers what it claims: that loop's own children at once,
        the others handed over to their loop."""
        if in_loop is None:
            return self._dispatch_to_loop

        def dispatch(entry: Entry, returncode: int) -> None:
            if entry.loop is in_loop:
                self._deliver(entry, returncode)
            else:
                self._dispatch_to_loop(entry, returncode)

        return dispatch

    def _after_fork_in_child(self) -> None:
        self._scanning = threading.Lock()
        self._loopless.clear()
        self._exited_at_probe.clear()
        super()._after_fork_in_child()

    def _install(self) -> None:
        if self._installed:
            return
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "MultiLoopChildWatcher installs a process-wide SIGCHLD handler: "
                "attach it, or register its first child, from the main thread"
            )
        _process_sigchld.join(self)
        self._installed = True

    def _release_resources(self) -> None:
        _busy.discard(self)
        _wakeup.disarm_if_idle()
        if self._installed:
            self._installed = False
            _process_sigchld.leave(self)

    def _unwatch(self, entry: Entry) -> None:
        if not self._registered:
            _busy.discard(self)

    def _watch(self, entry: Entry) -> None:
        loop = entry.loop
        if loop is not None and self._allowed() is not loop:
            refuse_sigchld(type(self).__name__, loop)
            self._allowed = weakref.ref(loop)
        self._install()
        returncode = child_status(entry.pid)
        if loop is not None:
            _wakeup.arm(loop)  # may raise (no fd left): nothing is registered then
        self._admit(entry)
        _busy.add(self)
        if loop is None:
            self._loopless[entry.pid] = entry
            if returncode is not None:
                self._exited_at_probe[entry.pid] = returncode  # delivered once registered
        elif returncode is not None:
            self._deliver_early(loop, entry, returncode, True)

    def _check_loopless(self) -> None:
        """Check the children registered outside any loop: no loop rescans for them."""
        if not self._loopless:
            return  # (most scans: every child has a loop)
        with self._lock:
            for pid, entry in list(self._loopless.items()):
                if self._table.get(pid) is not entry or entry.state is not REGISTERED:
                    del self._loopless[pid]
            entries = list(self._loopless.values())
        for entry in entries:
            self._deliver_if_exited(entry.pid, entry)

    def add_child_handler(self, pid: int, callback: Callable[..., object], *args: Any) -> None:
        signals = self._signals
        super().add_child_handler(pid, callback, *args)
        # A child that exited before it was registered raised no SIGCHLD we will see:
        # it is delivered with the status read at registration, from its loop
        # (:meth:`_deliver_early`), or without one right here, now.  One handled
        # while it was being registered may have met its exit before it was in the
        # table: check it then.  Otherwise it exits later, and that SIGCHLD's scan finds it.
        returncode = self._exited_at_probe.pop(pid, None)
        if returncode is not None:
            self._deliver_exit(pid, None, returncode)
        elif self._signals != signals:
            self._deliver_if_exited(pid)

    def _deliver_exited_early(self, batch: List[Tuple[Entry, int, bool]]) -> None:
        super()._deliver_exited_early(batch)
        self._after_loop_delivery()

    def _on_sigchld(self) -> None:
        """Called by the shared handler, in the main thread between bytecodes."""
        self._signals += 1
        if not self._closed and self._table:  # with nothing in the table there is nothing to deliver
            self._theft_due = True
            self._guarded_scan(None)

    def _after_loop_delivery(self) -> None:
        # The child just reaped in the loop's thread hid the exits behind it:
        # those registered from this loop are delivered right here.
        if not self._closed and self._registered:
            self._guarded_scan(running_loop())
        self._leave_busy_if_idle()
        _wakeup.disarm_if_idle()

    def _guarded_scan(self, in_loop: Optional[asyncio.AbstractEventLoop]) -> None:
        """Scan, never twice at once: a SIGCHLD that arrives during a scan (in
        the signal handler, or in another thread) makes the running scan go again.

        ``in_loop``: the loop whose callback runs this scan (None in the signal
        handler); its own children are delivered directly, others handed over.
        """
        while True:
            self._rescan = True  # set before trying: a scan ending now sees it
            if not self._scanning.acquire(blocking=False):
                return
            try:
                self._rescan = False
                self._scan(in_loop)
            finally:
                self._scanning.release()
            if not self._rescan:
                self._leave_busy_if_idle()
                return

    def _leave_busy_if_idle(self) -> None:
        with self._lock:
            if not self._registered:
                _busy.discard(self)  # nothing left to deliver: collectable once abandoned

    def _scan(self, in_loop: Optional[asyncio.AbstractEventLoop]) -> None:
        """O(1) per exit while the exits are ours.  Every pid is checked when a
        foreign zombie hides the view, and after a SIGCHLD once the view is
        empty (a child reaped behind our back shows only then): at once in the
        signal handler, within THEFT_CHECK_DELAY when a loop scans."""
        stop = self._scan_visible_exits(self._dispatcher(in_loop))
        if stop is BUSY:
            # Ours, being delivered in its loop: the reap there rescans.
            # Children registered outside any loop have no such rescan.
            self._check_loopless()
        elif stop is HIDDEN:
            self._theft_due = False
            self._check_all()
        elif self._theft_due:
            self._theft_due = False
            if not self._registered:
                return
            if in_loop is None:
                self._check_all()  # the signal handler: there is no loop to defer it on
            else:
                self._schedule_theft_check(in_loop)
