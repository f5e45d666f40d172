"""Opt-in: asyncio's removed child-watcher names, restored on Python 3.14+.

    import childwatch.legacy
    childwatch.legacy.install()

On Pythons whose asyncio no longer has them, :func:`install` puts
``AbstractChildWatcher``, the five watcher classes, ``get_child_watcher()``
and ``set_child_watcher()`` back into ``asyncio`` (and ``asyncio.unix_events``),
backed by childwatch, with the old semantics:

* ``asyncio.set_child_watcher(w)`` makes ``w`` the watcher of the running
  loop (if any) and of every stdlib loop created afterwards;
* ``asyncio.get_child_watcher()`` returns the watcher in effect, creating the
  default one on first use, as asyncio did (:func:`childwatch.default_watcher`'s
  choice for the running loop: the watcher :func:`childwatch.capabilities`
  recommends).

On Pythons that still have them (3.9–3.13) it does nothing and returns False.
Nothing changes without calling :func:`install`; the event loop *policy*
methods of the same names are not restored (policies are deprecated on 3.14+).
"""

from __future__ import annotations

import asyncio
import asyncio.unix_events
from typing import Optional

from . import _api
from ._contract import AbstractChildWatcher, running_loop
from .watchers import (
    FastChildWatcher,
    MultiLoopChildWatcher,
    PidfdChildWatcher,
    SafeChildWatcher,
    ThreadedChildWatcher,
)

NAMES = {
    "AbstractChildWatcher": AbstractChildWatcher,
    "SafeChildWatcher": SafeChildWatcher,
    "FastChildWatcher": FastChildWatcher,
    "MultiLoopChildWatcher": MultiLoopChildWatcher,
    "ThreadedChildWatcher": ThreadedChildWatcher,
    "PidfdChildWatcher": PidfdChildWatcher,
}


def set_child_watcher(watcher: Optional[AbstractChildWatcher]) -> None:
    """asyncio's ``set_child_watcher``: for the running loop and every stdlib loop created later."""
    _api.set_default_child_watcher(watcher)
    loop = running_loop()
    if loop is not None:
        _api.set_child_watcher(watcher, loop)


def get_child_watcher() -> AbstractChildWatcher:
    """asyncio's ``get_child_watcher``: the watcher in effect, made on first use."""
    watcher = _api.get_child_watcher()
    if watcher is None:
        watcher = _api.default_watcher()
        set_child_watcher(watcher)
    return watcher


def installed() -> bool:
    """True if asyncio's child-watcher names are childwatch's (after :func:`install`)."""
    return getattr(asyncio, "set_child_watcher", None) is set_child_watcher


def install() -> bool:
    """Restore the names on Pythons that lack them; False (and nothing done) where asyncio has them."""
    if hasattr(asyncio, "AbstractChildWatcher") and not installed():
        return False
    for module in (asyncio, asyncio.unix_events):
        for name, obj in NAMES.items():
            setattr(module, name, obj)
        setattr(module, "get_child_watcher", get_child_watcher)  # noqa: B010
        setattr(module, "set_child_watcher", set_child_watcher)  # noqa: B010
    return True
