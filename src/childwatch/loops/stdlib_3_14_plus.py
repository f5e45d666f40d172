"""stdlib asyncio on Python 3.14+: each loop keeps a private watcher in ``loop._watcher``.

The loop calls only ``loop._watcher.add_child_handler(pid, callback, transp)``
(no ``with`` block, no ``attach_loop``): that attribute is the one hook left.
A process-wide default is applied to every stdlib loop created afterwards by
wrapping ``_UnixSelectorEventLoop.__init__`` once.
"""

from __future__ import annotations

import asyncio
import asyncio.unix_events
import platform
import threading
import weakref
from typing import Any, Optional

from .._contract import AbstractChildWatcher
from ._adapter import LoopAdapter
from ._identity import class_name

_lock = threading.Lock()
_originals: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
_default: Optional[AbstractChildWatcher] = None
_init_wrapped = False


def _loop_class() -> Any:
    return vars(asyncio.unix_events)["_UnixSelectorEventLoop"]


def _wrap_init() -> None:
    global _init_wrapped
    if _init_wrapped:
        return
    cls = _loop_class()
    original_init = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        default = _default
        if default is not None:
            _replace(self, default)

    __init__.__wrapped__ = original_init  # type: ignore[attr-defined]
    cls.__init__ = __init__
    _init_wrapped = True


def _replace(loop: Any, watcher: Optional[AbstractChildWatcher]) -> None:
    with _lock:
        if loop not in _originals:
            _originals[loop] = loop._watcher
        loop._watcher = _originals[loop] if watcher is None else watcher


class StdlibAdapter(LoopAdapter):
    name = "asyncio"

    def matches(self, loop: asyncio.AbstractEventLoop) -> bool:
        return isinstance(loop, asyncio.SelectorEventLoop) and hasattr(loop, "_watcher")

    def version(self) -> Optional[str]:
        return platform.python_version()

    def set_child_watcher(
        self, loop: asyncio.AbstractEventLoop, watcher: Optional[AbstractChildWatcher]
    ) -> None:
        _replace(loop, watcher)

    def get_child_watcher(self, loop: asyncio.AbstractEventLoop) -> Optional[AbstractChildWatcher]:
        watcher = getattr(loop, "_watcher", None)
        return watcher if isinstance(watcher, AbstractChildWatcher) else None

    def current_watcher_name(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        watcher = getattr(loop, "_watcher", None)
        return class_name(watcher)

    def subprocess_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return None

    def set_default(self, watcher: Optional[AbstractChildWatcher]) -> None:
        """The watcher every stdlib loop created from now on starts with (None: their own)."""
        global _default
        with _lock:
            _default = watcher
        _wrap_init()

    def get_default(self) -> Optional[AbstractChildWatcher]:
        return _default
