"""Shared by Safe and Fast: SIGCHLD delivered through the loop's add_signal_handler."""

from __future__ import annotations

import asyncio
import signal
import threading
import weakref
from types import FrameType
from typing import Any, Callable, List, Optional, Tuple

from .._contract import is_event_loop
from .._gevent import refuse_under_gevent
from .._loop_rules import refuse_sigchld
from ._base import Entry, WatcherBase, call_soon_on, check_loop, running_loop


def _is_foreign(handler: Any) -> bool:
    """True for a Python handler that is not an event loop's own signal machinery
    (asyncio's no-op, or a method of a loop, as trio-asyncio installs)."""
    if not callable(handler) or getattr(handler, "__module__", "") == "asyncio.unix_events":
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
    when it goes (so is one installed after it).
    """

    __slots__ = ("__weakref__", "loop", "previous", "watchers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)
        self.watchers: List[LoopSigchldWatcher] = []
        previous = signal.getsignal(signal.SIGCHLD)
        loop.add_signal_handler(signal.SIGCHLD, self._dispatch)
        self.previous: Optional[Callable[[int, Optional[FrameType]], Any]] = (
            previous if callable(previous) and _is_foreign(previous) else None
        )

    def _dispatch(self) -> None:
        # In the loop's thread, once per signal byte.
        for watcher in list(self.watchers):
            watcher._on_sigchld()
        if self.previous is not None:
            self.previous(signal.SIGCHLD, None)  # the Python handler ours replaced

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


class LoopSigchldWatcher(WatcherBase):
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
        # Children found exited at registration, to check from the loop: (the loop, its batch).
        self._exited_early: Optional[Tuple[asyncio.AbstractEventLoop, List[Entry]]] = None

    def _after_fork_in_child(self) -> None:
        self._exited_early = None
        super()._after_fork_in_child()

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
            if self._entries:
                # Children may have exited while no loop listened.
                loop.call_soon_threadsafe(self._check_all)

    def is_active(self) -> bool:
        """True if attached to a running loop, or if the first registration will
        attach to the loop running now (none attached, or the attached one closed)."""
        if self._loop is None or self._loop.is_closed():
            return running_loop() is not None
        return self._loop.is_running()

    def _detach(self) -> None:
        loop, self._loop = self._loop, None
        self._cancel_theft_check()
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

    def _watch(self, entry: Entry) -> None:
        if self._loop is None or self._loop.is_closed():
            # asyncio.Runner(loop_factory=...) and 3.14+ loops never attach us.
            loop = running_loop()
            if loop is None:
                raise RuntimeError(
                    f"{type(self).__name__} needs an event loop: call attach_loop(loop) "
                    "or register children from a running loop"
                )
            self.attach_loop(loop)
        assert self._loop is not None
        exited = self._probe(entry.pid)
        self._entries[entry.pid] = entry
        if exited:
            # Its SIGCHLD came before it was ours: deliver it from the loop, with the
            # others found so before the loop gets to them (one callback for them all).
            batch = self._exited_early
            if batch is None or batch[0] is not self._loop:
                batch = (self._loop, [])
                call_soon_on(self._loop, self._check_exited_early, batch[1])
                self._exited_early = batch
            batch[1].append(entry)

    def _check_exited_early(self, entries: List[Entry]) -> None:
        with self._lock:
            if self._exited_early is not None and self._exited_early[1] is entries:
                self._exited_early = None  # closed: a registration now starts a new batch
        for entry in entries:
            self._check(entry.pid, entry)

    def _on_sigchld(self) -> None:
        # Called by the loop's shared handler: a scan that finds nothing costs one waitid().
        if self._closed:
            return
        self._scan()
        if self._entries and self._loop is not None:
            self._schedule_theft_check(self._loop)

    def _after_loop_delivery(self) -> None:
        # A child reaped late (after its asyncio transport learnt the status)
        # hid the exits behind it: scan again, in the attached loop's thread.
        loop = self._loop
        if self._closed or loop is None or loop.is_closed():
            return
        if loop is running_loop():
            self._scan()
        else:
            loop.call_soon_threadsafe(self._scan)

    def _scan(self) -> None:
        """Deliver the exits a SIGCHLD announced."""
        raise NotImplementedError
