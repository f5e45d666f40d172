"""Opt-in: asyncio's removed child-watcher API, restored on Python 3.14+ as 3.13 had it.

    import childwatch.legacy
    childwatch.legacy.install()

On Pythons whose asyncio no longer has it, :func:`install` restores the public
surface of 3.13's child-watcher API, backed by childwatch:

* the names: ``AbstractChildWatcher`` and the five watcher classes in
  ``asyncio`` and ``asyncio.unix_events``, ``get_child_watcher()`` and
  ``set_child_watcher()`` in ``asyncio`` and ``asyncio.events`` (each the
  policy's method, as in 3.13);
* the policy methods: ``AbstractEventLoopPolicy.get_child_watcher`` /
  ``set_child_watcher`` (raising NotImplementedError) and the default
  policy's implementation of them (``asyncio.DefaultEventLoopPolicy``, so
  subclasses calling ``self.set_child_watcher()`` or ``super()`` work): the
  watcher is made on first use (``_init_watcher``: Pidfd where pidfds work,
  else Threaded, as 3.13 did), ``set_child_watcher`` closes the previous
  one, and ``set_event_loop`` in the main thread attaches the watcher to the
  new loop;
* the loops: every stdlib loop, whenever it was made, asks the policy for
  its watcher at each subprocess, as 3.9–3.13's did, and the status reaches
  the loop's thread whatever thread the watcher calls back from
  (:mod:`childwatch.loops.stdlib_3_14_plus`), unless
  :func:`childwatch.set_child_watcher` gave the loop a watcher of its own.

On Pythons that still have the API (3.9–3.13) it does nothing and returns
False.  Nothing changes without calling :func:`install`.  What 3.14 makes
impossible is listed in the README ("childwatch.legacy").
"""

from __future__ import annotations

import asyncio
import asyncio.events
import asyncio.unix_events
import threading
from typing import Any, Dict, Optional

from ._api import _check_watcher
from ._contract import AbstractChildWatcher
from ._mechanisms import pidfd_works
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

_init_lock = threading.Lock()


def _policy() -> Any:
    return asyncio.events._get_event_loop_policy()  # type: ignore[attr-defined]


def get_child_watcher() -> AbstractChildWatcher:
    """asyncio's ``get_child_watcher()``: the policy's watcher, made on first use."""
    return _policy().get_child_watcher()  # type: ignore[no-any-return]


def set_child_watcher(watcher: Optional[AbstractChildWatcher]) -> None:
    """asyncio's ``set_child_watcher(watcher)``: the policy's, which closes the previous one."""
    _policy().set_child_watcher(watcher)


# -- the policy methods, as 3.13 defined them ---------------------------------------------------


def _abstract_get_child_watcher(self: Any) -> AbstractChildWatcher:
    """Get the watcher for child processes."""
    raise NotImplementedError


def _abstract_set_child_watcher(self: Any, watcher: Optional[AbstractChildWatcher]) -> None:
    """Set the watcher for child processes."""
    raise NotImplementedError


def _init_watcher(self: Any) -> None:
    """Make the policy's default watcher: Pidfd where pidfds work, else Threaded."""
    with _init_lock:
        if self._watcher is None:
            self._watcher = PidfdChildWatcher() if pidfd_works() else ThreadedChildWatcher()


def _get_child_watcher(self: Any) -> AbstractChildWatcher:
    """The watcher for child processes, made on first use (``_init_watcher``)."""
    if self._watcher is None:
        self._init_watcher()
    return self._watcher  # type: ignore[no-any-return]


def _set_child_watcher(self: Any, watcher: Optional[AbstractChildWatcher]) -> None:
    """Set the watcher for child processes; the previous one is closed."""
    _check_watcher(watcher)
    if self._watcher is not None:
        self._watcher.close()
    self._watcher = watcher


def _set_event_loop(self: Any, loop: Optional[asyncio.AbstractEventLoop]) -> None:
    """Set the event loop; from the main thread, also attach the watcher (if any) to it."""
    super(_DEFAULT_POLICY, self).set_event_loop(loop)
    if self._watcher is not None and threading.current_thread() is threading.main_thread():
        self._watcher.attach_loop(loop)


_DEFAULT_POLICY: Any = getattr(asyncio.unix_events, "_UnixDefaultEventLoopPolicy", None)

POLICY_METHODS: Dict[str, Dict[str, object]] = {
    "_AbstractEventLoopPolicy": {
        "get_child_watcher": _abstract_get_child_watcher,
        "set_child_watcher": _abstract_set_child_watcher,
    },
    "_UnixDefaultEventLoopPolicy": {
        "_watcher": None,
        "_init_watcher": _init_watcher,
        "get_child_watcher": _get_child_watcher,
        "set_child_watcher": _set_child_watcher,
        "set_event_loop": _set_event_loop,
    },
}
"""What :func:`install` adds to 3.14's policy classes (in ``asyncio.events`` and
``asyncio.unix_events``), by class name."""


def installed() -> bool:
    """True if asyncio's child-watcher names are childwatch's (after :func:`install`)."""
    return getattr(asyncio, "set_child_watcher", None) is set_child_watcher


def install() -> bool:
    """Restore the API on Pythons that lack it; False (and nothing done) where asyncio has it."""
    if hasattr(asyncio, "AbstractChildWatcher") and not installed():
        return False
    from .loops.stdlib_3_14_plus import consult_policy

    for module in (asyncio.events, asyncio.unix_events):
        for class_name, methods in POLICY_METHODS.items():
            cls = vars(module).get(class_name)
            if cls is not None:
                for name, obj in methods.items():
                    setattr(cls, name, obj)
    for module in (asyncio, asyncio.unix_events):
        for name, obj in NAMES.items():
            setattr(module, name, obj)
    for module in (asyncio, asyncio.events):
        setattr(module, "get_child_watcher", get_child_watcher)  # noqa: B010
        setattr(module, "set_child_watcher", set_child_watcher)  # noqa: B010
    consult_policy()
    return True
