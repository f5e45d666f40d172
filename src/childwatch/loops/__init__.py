"""Loop adapters: what each event loop family allows, behind one interface.

An adapter answers, for the loops it recognises: can a custom child watcher
drive this loop's own subprocesses (and how to set and get it), and may
SIGCHLD-driven watchers run on it.  Built-in adapters cover stdlib asyncio
(by Python version), uvloop, trio-asyncio, rloop, and loopmini and talyn
(which reap their own children).  Third-party loops plug in
with :func:`register_loop_adapter` or an entry point in the
``childwatch.loops`` group whose object is a :class:`LoopAdapter` instance or
a zero-argument callable returning one.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import List, Optional

from ._adapter import LoopAdapter
from ._util import class_name
from .own_reapers import own_reapers
from .rloop_adapter import RloopAdapter

if sys.version_info >= (3, 14):
    from .stdlib_private import StdlibAdapter
else:
    from .stdlib_policy import StdlibAdapter

__all__ = [
    "LoopAdapter",
    "StdlibAdapter",
    "adapter_for",
    "adapters",
    "no_adapter_reason",
    "register_loop_adapter",
    "stdlib_adapter",
]

ENTRY_POINT_GROUP = "childwatch.loops"

_lock = threading.Lock()
_registered: List[LoopAdapter] = []
_from_entry_points: Optional[List[LoopAdapter]] = None
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
    with _lock:
        if _from_entry_points is None:
            _from_entry_points = _load_entry_points()
        return [*_registered, *_from_entry_points, *_builtin]


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
