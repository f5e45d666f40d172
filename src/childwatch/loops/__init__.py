"""Loop adapters: what each event loop family allows, behind one interface.

An adapter answers, for the loops it recognises: can a custom child watcher
drive this loop's own subprocesses (and how to set and get it), and may
SIGCHLD-driven watchers run on it.  Built-in adapters cover stdlib asyncio
(by Python version), uvloop, trio-asyncio, rloop, and loopmini and talyn
(which reap their own children).  Third-party loops plug in
with :func:`register_loop_adapter` or an entry point in the
``childwatch.loops`` group whose object is a :class:`LoopAdapter` instance or
a zero-argument callable returning one.

Everything childwatch knows of a particular loop lives in this package: the
adapters (one module per loop family; stdlib asyncio has one per hook,
:mod:`.stdlib_3_9_to_3_13` and :mod:`.stdlib_3_14_plus`), and the questions
the watchers ask about a loop's own objects while delivering
(:func:`popen_of`, :func:`reap_waits_for`, :func:`own_exit_step`) or registering
(:func:`refuse_sigchld`).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from asyncio import selector_events
from typing import Any, Callable, Dict, List, Optional, Tuple

from .._contract import ChildCallback
from .._errors import UnsupportedLoopError
from ._adapter import LoopAdapter
from ._identity import class_name, distribution_version, family
from .own_reapers import own_reapers
from .rloop_adapter import RloopAdapter

if sys.version_info >= (3, 14):
    from .stdlib_3_14_plus import StdlibAdapter
else:
    from .stdlib_3_9_to_3_13 import StdlibAdapter

__all__ = [
    "LoopAdapter",
    "StdlibAdapter",
    "adapter_for",
    "adapters",
    "class_name",
    "distribution_version",
    "family",
    "no_adapter_reason",
    "own_exit_step",
    "popen_of",
    "reader_methods",
    "reap_waits_for",
    "refuse_sigchld",
    "register_loop_adapter",
    "sigchld_refusal",
    "signal_wakeup_fd",
    "stdlib_adapter",
]

ENTRY_POINT_GROUP = "childwatch.loops"

_lock = threading.Lock()
_registered: List[LoopAdapter] = []
_from_entry_points: Optional[List[LoopAdapter]] = None
_loading = threading.local()  # .now: this thread is loading the entry points
_stdlib = StdlibAdapter()
_builtin: List[LoopAdapter] = [*own_reapers(), RloopAdapter(), _stdlib]


def stdlib_adapter() -> StdlibAdapter:
    """The adapter for stdlib asyncio on this Python (it also holds the process-wide default)."""
    return _stdlib


def register_loop_adapter(adapter: LoopAdapter) -> None:
    """Add ``adapter``; it is consulted before every adapter registered earlier
    and before the entry-point and built-in adapters."""
    if not isinstance(adapter, LoopAdapter):
        raise TypeError(f"adapter must be a childwatch.loops.LoopAdapter, not {type(adapter).__name__}")
    with _lock:
        _registered.insert(0, adapter)


def _load_entry_points() -> List[LoopAdapter]:
    from importlib.metadata import entry_points

    found: List[LoopAdapter] = []
    if sys.version_info >= (3, 10):
        eps = list(entry_points(group=ENTRY_POINT_GROUP))
    else:
        eps = list(entry_points().get(ENTRY_POINT_GROUP, []))
    for ep in eps:
        obj = ep.load()
        adapter = obj if isinstance(obj, LoopAdapter) else obj()
        if not isinstance(adapter, LoopAdapter):
            raise TypeError(f"entry point {ep.name!r} in {ENTRY_POINT_GROUP} did not give a LoopAdapter")
        found.append(adapter)
    return found


def adapters() -> List[LoopAdapter]:
    """Every adapter, in the order they are consulted."""
    global _from_entry_points
    if _from_entry_points is None and not getattr(_loading, "now", False):
        # Loaded outside the lock: a plugin may register an adapter, or ask for one,
        # as it is imported (asked meanwhile, from that thread, it has none yet).
        _loading.now = True
        try:
            found = _load_entry_points()
        finally:
            _loading.now = False
        with _lock:
            if _from_entry_points is None:
                _from_entry_points = found
    with _lock:
        return [*_registered, *(_from_entry_points or []), *_builtin]


def no_adapter_reason(loop: object) -> str:
    """Why childwatch cannot drive ``loop``'s subprocesses when no adapter matches it."""
    return (
        f"childwatch has no adapter for {class_name(loop)}; "
        "register one with childwatch.loops.register_loop_adapter()"
    )


def adapter_for(loop: asyncio.AbstractEventLoop) -> Optional[LoopAdapter]:
    """The first adapter that recognises ``loop``, or None."""
    for adapter in adapters():
        if adapter.matches(loop):
            return adapter
    return None


def sigchld_refusal(
    adapter: LoopAdapter, loop: asyncio.AbstractEventLoop, through_loop: bool
) -> Optional[str]:
    """Why ``adapter``'s ``loop`` forbids SIGCHLD watchers, or None: all of them
    (:meth:`LoopAdapter.sigchld_refusal`), or, if ``through_loop``, those whose
    handler goes through the loop's ``add_signal_handler`` (Safe and Fast:
    :meth:`LoopAdapter.signal_handler_refusal`)."""
    reason = adapter.sigchld_refusal(loop)
    if reason is None and through_loop:
        reason = adapter.signal_handler_refusal(loop)
    return reason


def refuse_sigchld(watcher_name: str, loop: asyncio.AbstractEventLoop, through_loop: bool = False) -> None:
    """Raise :class:`UnsupportedLoopError` if ``loop`` forbids the SIGCHLD watcher
    ``watcher_name`` (``through_loop``: see :func:`sigchld_refusal`)."""
    adapter = adapter_for(loop)
    if adapter is None:
        return
    reason = sigchld_refusal(adapter, loop, through_loop)
    if reason is not None:
        raise UnsupportedLoopError(
            f"{watcher_name} cannot run on {adapter.name} ({class_name(loop)}): {reason}"
        )


def signal_wakeup_fd(loop: asyncio.AbstractEventLoop) -> Optional[int]:
    """The fd ``loop.add_signal_handler`` sets as the signal wake-up fd, if its
    adapter knows it (:meth:`LoopAdapter.signal_wakeup_fd`)."""
    adapter = adapter_for(loop)
    return adapter.signal_wakeup_fd(loop) if adapter is not None else None


_SELECTOR_LOOP = selector_events.BaseSelectorEventLoop
_stdlib_readers: Dict[type, bool] = {}


def reader_methods(
    loop: asyncio.AbstractEventLoop,
) -> Tuple[Callable[..., Any], Callable[[int], Any]]:
    """How to have ``loop`` read a pidfd the caller just opened, and stop: its
    ``add_reader`` and ``remove_reader`` -- or, for a loop whose public ones are
    the stdlib selector loop's own (not overridden), the methods they hand over
    to once their checks pass (the fd is no transport's, the loop is open: true
    of a fresh pidfd read by an open loop), as asyncio's own pidfd watcher
    calls them: half the cost.  Decided once per loop class."""
    cls = type(loop)
    stdlib = _stdlib_readers.get(cls)
    if stdlib is None:
        stdlib = _stdlib_readers[cls] = (
            getattr(cls, "add_reader", None) is _SELECTOR_LOOP.add_reader
            and getattr(cls, "remove_reader", None) is _SELECTOR_LOOP.remove_reader
            and callable(getattr(cls, "_add_reader", None))
            and callable(getattr(cls, "_remove_reader", None))
        )
    if stdlib:
        return loop._add_reader, loop._remove_reader  # type: ignore[attr-defined]
    return loop.add_reader, loop.remove_reader


def popen_of(pid: int, args: Tuple[Any, ...]) -> Optional[subprocess.Popen[Any]]:
    """The :class:`subprocess.Popen` of child ``pid`` among a callback's arguments:
    one of them, or the one an asyncio subprocess transport among them holds
    (``transport._proc``: stdlib asyncio's on every Python, and the loops
    derived from it)."""
    for arg in args:
        for candidate in (arg, getattr(arg, "_proc", None)):
            if isinstance(candidate, subprocess.Popen) and candidate.pid == pid:
                return candidate
    return None


def reap_waits_for(
    callback: ChildCallback, args: Tuple[Any, ...]
) -> Optional[Tuple[asyncio.AbstractEventLoop, Callable[[], bool]]]:
    """If the child just delivered to ``callback(pid, returncode, *args)`` must
    stay a zombie until a loop's own bookkeeping has learnt its status:
    ``(loop, learnt)``, the loop in whose thread to wait and a test to run
    there, else None (reap at once).  Only the stdlib adapter asks for such a
    wait (:meth:`LoopAdapter.reap_waits_for`)."""
    return _stdlib.reap_waits_for(callback, args)


def own_exit_step(
    callback: ChildCallback, args: Tuple[Any, ...]
) -> Optional[Tuple[asyncio.AbstractEventLoop, Callable[[int], object], int]]:
    """``(loop, step, iterations)`` if ``callback(pid, returncode, *args)`` only has
    ``loop`` run ``step(returncode)`` that many iterations later, else None: the
    3.9-3.13 stdlib loop's own callback (:meth:`LoopAdapter.own_exit_step`)."""
    return _stdlib.own_exit_step(callback, args)
