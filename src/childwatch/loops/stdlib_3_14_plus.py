"""stdlib asyncio on Python 3.14+: each loop keeps a private watcher in ``loop._watcher``.

The loop reads ``self._watcher`` once per subprocess, before it spawns the
child, and calls only ``add_child_handler(pid, self._child_watcher_callback,
transport)`` on it (no ``with`` block, no ``attach_loop``); that callback
finishes the transport at once, so it must run in the loop's thread.  That
attribute is the one hook left.  childwatch takes it over, once, with a data
descriptor on the loop class (:class:`_WatcherSlot`), which every stdlib loop
reads through, whenever it was made.  What a loop gets, first match:

1. the watcher set for it with :func:`childwatch.set_child_watcher` (or, for
   a loop made after a process-wide :meth:`StdlibAdapter.set_default`, that
   default), called exactly as the loop calls its own;
2. with :func:`consult_policy` on (``childwatch.legacy.install()``), the event
   loop policy's watcher, as 3.9–3.13's loop asked for it
   (:class:`_ThroughPolicy`): resolved before the spawn, checked
   ``is_active()``, entered with ``with``, and given a callback that hands the
   status to the loop's thread (:class:`LoopRelay`), so watchers that call back
   from any thread work as they did on 3.13;
3. the loop's own private watcher (also what a plain ``loop._watcher = w``
   assignment after the loop was made sets).
"""

from __future__ import annotations

import asyncio
import asyncio.events
import asyncio.unix_events
import threading
import weakref
from typing import Any, Callable, Optional, Tuple

from .._contract import AbstractChildWatcher, ChildCallback
from ._adapter import LoopAdapter, selector_wakeup_fd
from ._identity import class_name

_lock = threading.Lock()
_per_loop: weakref.WeakKeyDictionary[Any, AbstractChildWatcher] = weakref.WeakKeyDictionary()
_default: Optional[AbstractChildWatcher] = None
_policy_consulted = False

NOT_ACTIVE = "asyncio.get_child_watcher() is not activated, subprocess support is not installed."
"""3.9–3.13's error for a policy watcher that is not active, raised before the spawn."""


class LoopRelay:
    """``callback(pid, returncode, *args)`` run in ``loop``'s thread, called from any
    thread (3.9–3.13's loop callback did this hop itself; 3.14's does not)."""

    __slots__ = ("callback", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: ChildCallback) -> None:
        self.loop = loop
        self.callback = callback

    def __call__(self, pid: int, returncode: int, *args: Any) -> None:
        self.loop.call_soon_threadsafe(self.callback, pid, returncode, *args)


class _ThroughPolicy:
    """The policy's ``watcher`` as one loop's subprocess path calls it: ``with watcher:``
    around the registration, the loop's callback relayed to its thread."""

    __slots__ = ("loop", "watcher")

    def __init__(self, loop: asyncio.AbstractEventLoop, watcher: Any) -> None:
        self.loop = loop
        self.watcher = watcher

    def add_child_handler(self, pid: int, callback: ChildCallback, *args: Any) -> None:
        with self.watcher:
            self.watcher.add_child_handler(pid, LoopRelay(self.loop, callback), *args)


def _policy_watcher() -> Any:
    """The policy's watcher (made on first use, as the policy does), or None
    for a policy without child watchers (NotImplementedError)."""
    try:
        return asyncio.events._get_event_loop_policy().get_child_watcher()  # type: ignore[attr-defined]
    except NotImplementedError:
        return None


class _WatcherSlot:
    """``_UnixSelectorEventLoop._watcher``, as childwatch resolves it (see the module docstring).

    Reading it is the loop's first step of a subprocess: with the policy
    consulted, the policy's watcher is fetched and checked here, before the
    spawn, as on 3.9–3.13.  childwatch itself never reads it (it asks
    :func:`_own` and the tables), so reading has no side effect elsewhere.
    """

    def __get__(self, loop: Any, owner: Any = None) -> Any:
        if loop is None:
            return self
        watcher = _per_loop.get(loop)
        if watcher is not None:
            return watcher
        if _policy_consulted:
            found = _policy_watcher()
            if found is not None:
                if not found.is_active():
                    raise RuntimeError(NOT_ACTIVE)
                return _ThroughPolicy(loop, found)
        return _own(loop)

    def __set__(self, loop: Any, value: Any) -> None:
        """The loop's ``__init__`` sets its private watcher (the process default,
        if any, becomes its watcher); a later assignment replaces the loop's
        watcher, whatever childwatch had set."""
        with _lock:
            if "_watcher" not in vars(loop):
                if _default is not None:
                    _per_loop[loop] = _default
            else:
                _per_loop.pop(loop, None)
            vars(loop)["_watcher"] = value


def _own(loop: Any) -> Any:
    """The loop's own watcher (the private one its ``__init__`` made)."""
    return vars(loop).get("_watcher")


def _take_slot() -> None:
    cls = vars(asyncio.unix_events)["_UnixSelectorEventLoop"]
    with _lock:
        if not isinstance(vars(cls).get("_watcher"), _WatcherSlot):
            cls._watcher = _WatcherSlot()


def consult_policy() -> None:
    """From now on, every stdlib loop without a watcher set by childwatch asks the
    event loop policy for one, as on 3.9–3.13 (``childwatch.legacy.install()``)."""
    global _policy_consulted
    _take_slot()
    _policy_consulted = True


def policy_consulted() -> bool:
    return _policy_consulted


class StdlibAdapter(LoopAdapter):
    name = "asyncio"

    def matches(self, loop: asyncio.AbstractEventLoop) -> bool:
        return isinstance(loop, asyncio.SelectorEventLoop)

    def version(self) -> Optional[str]:
        import platform  # (here: only reports ask)

        return platform.python_version()

    def set_child_watcher(
        self, loop: asyncio.AbstractEventLoop, watcher: Optional[AbstractChildWatcher]
    ) -> None:
        _take_slot()
        with _lock:
            if watcher is None:
                _per_loop.pop(loop, None)
            else:
                _per_loop[loop] = watcher

    def get_child_watcher(self, loop: asyncio.AbstractEventLoop) -> Optional[AbstractChildWatcher]:
        """The watcher set for ``loop``, else (with the policy consulted) the
        policy's, made on first use as 3.9–3.13's was; else None: the loop's own."""
        watcher: Any = _per_loop.get(loop)
        if watcher is None and _policy_consulted:
            watcher = _policy_watcher()
        if watcher is None:
            watcher = _own(loop)
        return watcher if isinstance(watcher, AbstractChildWatcher) else None

    def current_watcher_name(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        watcher: Any = _per_loop.get(loop)
        if watcher is None and _policy_consulted:
            policy = asyncio.events._get_event_loop_policy()  # type: ignore[attr-defined]
            watcher = getattr(policy, "_watcher", None)
            if watcher is None and callable(getattr(policy, "get_child_watcher", None)):
                return "none yet (the policy creates its default on first use)"
        return class_name(watcher if watcher is not None else _own(loop))

    def signal_wakeup_fd(self, loop: asyncio.AbstractEventLoop) -> Optional[int]:
        return selector_wakeup_fd(loop)

    def subprocess_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return None

    def set_default(self, watcher: Optional[AbstractChildWatcher]) -> None:
        """The watcher every stdlib loop created from now on starts with (None: their own)."""
        global _default
        _take_slot()
        with _lock:
            _default = watcher

    def get_default(self) -> Optional[AbstractChildWatcher]:
        return _default

    def reap_waits_for(
        self, callback: ChildCallback, args: Tuple[Any, ...]
    ) -> Optional[Tuple[asyncio.AbstractEventLoop, Callable[[], bool]]]:
        """A :class:`LoopRelay` hands the status to its loop's thread later than the
        watcher's callback returns: the child stays a zombie until the loop's
        subprocess transport (the relayed callback's one argument) has its
        returncode.  Any other callback (the loop's own, called in its thread,
        finishes the transport at once): None."""
        if not isinstance(callback, LoopRelay) or len(args) != 1:
            return None
        transport = args[0]
        if not isinstance(transport, asyncio.SubprocessTransport):
            return None
        return callback.loop, lambda: transport.get_returncode() is not None
