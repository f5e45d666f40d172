"""rloop: each loop starts its subprocesses through a per-loop watcher of its own.

``RLoop.subprocess_exec`` calls ``loop._watcher_child.add_child_handler(pid,
loop._child_watcher_callback, transport)``, as stdlib asyncio does on 3.14+
with ``loop._watcher``: that attribute is the hook a custom watcher takes.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any, Optional

from .._contract import AbstractChildWatcher
from ._adapter import LoopAdapter
from ._identity import class_name, distribution_version, family

_HOOK = "_watcher_child"
_lock = threading.Lock()
_originals: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def _checked_version(version: Optional[str]) -> bool:
    """True for rloop 0.5 or later (a version childwatch was checked against)."""
    parts = (version or "").split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (0, 5)
    except (IndexError, ValueError):
        return False


class RloopAdapter(LoopAdapter):
    name = "rloop"

    def matches(self, loop: asyncio.AbstractEventLoop) -> bool:
        """rloop 0.5 and later, the versions checked: 0.2's own subprocesses never
        finish (its child watcher calls a ``loop._remove_reader`` it lacks), so an
        older rloop is a loop without adapter, whose answers a probe settles."""
        return family(loop) == "rloop" and _checked_version(distribution_version("rloop"))

    def version(self) -> Optional[str]:
        return distribution_version("rloop")

    def custom_watcher_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        if not hasattr(loop, _HOOK):
            return (
                f"this rloop has no loop.{_HOOK} to replace (childwatch knows rloop 0.5, which has); "
                "watch pids you start yourself with ThreadedChildWatcher or PidfdChildWatcher"
            )
        return None

    def signal_handler_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        # rloop 0.5's remove_signal_handler calls self._is_main_thread, which
        # the loop spells __is_main_thread (name-mangled): it always raises.
        remove = getattr(type(loop), "remove_signal_handler", None)
        names = getattr(getattr(remove, "__code__", None), "co_names", ())
        if "_is_main_thread" in names and not hasattr(loop, "_is_main_thread"):
            return (
                "its remove_signal_handler() always raises AttributeError ('_is_main_thread'), "
                "so a SIGCHLD handler added through the loop could never be taken off again; "
                "use MultiLoopChildWatcher, ThreadedChildWatcher or PidfdChildWatcher on rloop"
            )
        return None

    def set_child_watcher(
        self, loop: asyncio.AbstractEventLoop, watcher: Optional[AbstractChildWatcher]
    ) -> None:
        with _lock:
            if loop not in _originals:
                _originals[loop] = getattr(loop, _HOOK)
            setattr(loop, _HOOK, _originals[loop] if watcher is None else watcher)

    def get_child_watcher(self, loop: asyncio.AbstractEventLoop) -> Optional[AbstractChildWatcher]:
        watcher = getattr(loop, _HOOK, None)
        return watcher if isinstance(watcher, AbstractChildWatcher) else None

    def current_watcher_name(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        watcher = getattr(loop, _HOOK, None)
        return None if watcher is None else class_name(watcher)
