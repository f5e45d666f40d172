"""stdlib asyncio on Python 3.9–3.13: the loop asks asyncio's policy for its watcher.

``_UnixSelectorEventLoop`` calls ``asyncio.events.get_child_watcher()`` each
time it starts a subprocess.  childwatch wraps that function once (on the first
per-loop :func:`childwatch.set_child_watcher`) so that a watcher set for one
loop is returned while that loop runs, and the policy's watcher otherwise.
The process-wide default (no loop) is the policy's own watcher, set through
the policy as asyncio did (which closes the previous one).

And the loop's subprocess transports learn their child's status later than
the watcher's callback runs: :meth:`StdlibAdapter.reap_waits_for`.
"""

from __future__ import annotations

import asyncio
import asyncio.base_subprocess
import asyncio.events
import asyncio.unix_events
import sys
import threading
import warnings
import weakref
from typing import Any, Callable, Optional, Tuple

from .._contract import AbstractChildWatcher, ChildCallback
from .._errors import UnsupportedLoopError
from ._adapter import LoopAdapter, selector_wakeup_fd
from ._identity import class_name

_lock = threading.Lock()
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AbstractChildWatcher] = (
    weakref.WeakKeyDictionary()
)
_original_get: Optional[Callable[[], Any]] = None

_OWN_CALLBACK = asyncio.unix_events._UnixSelectorEventLoop._child_watcher_callback  # type: ignore[attr-defined]
_OWN_STEP_ITERATIONS = 2 if (3, 10) <= sys.version_info < (3, 12) else 1
"""When the loop's callback has its transport's ``_process_exited`` run: one
loop iteration later, two on 3.10 and 3.11 (which skip one for the pipes' callbacks)."""


def _get_child_watcher() -> Any:
    """asyncio.events.get_child_watcher, as wrapped by childwatch: per-loop first."""
    loop = asyncio.events._get_running_loop()
    with _lock:
        watcher = _per_loop.get(loop) if loop is not None else None
    if watcher is not None:
        return watcher
    assert _original_get is not None
    return _original_get()


def _install_hook() -> None:
    global _original_get
    with _lock:
        if _original_get is None:
            _original_get = asyncio.events.get_child_watcher
            asyncio.events.get_child_watcher = _get_child_watcher


def _policy_call(name: str, *args: Any) -> Any:
    policy = asyncio.get_event_loop_policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12/3.13
        try:
            return getattr(policy, name)(*args)
        except NotImplementedError:
            raise UnsupportedLoopError(
                f"the installed event loop policy ({type(policy).__module__}.{type(policy).__name__}) "
                "has no child watcher; pass loop= to set one for a stdlib loop"
            ) from None


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
        _install_hook()
        with _lock:
            if watcher is None:
                _per_loop.pop(loop, None)
            else:
                _per_loop[loop] = watcher

    def get_child_watcher(self, loop: asyncio.AbstractEventLoop) -> Optional[AbstractChildWatcher]:
        with _lock:
            watcher = _per_loop.get(loop)
        if watcher is not None:
            return watcher
        found = self.get_default()
        return found if isinstance(found, AbstractChildWatcher) else None

    def current_watcher_name(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        with _lock:
            watcher: Any = _per_loop.get(loop)
        if watcher is None:
            watcher = getattr(asyncio.get_event_loop_policy(), "_watcher", None)
        if watcher is None:
            return "none yet (asyncio creates its default on first use)"
        return class_name(watcher)

    def signal_wakeup_fd(self, loop: asyncio.AbstractEventLoop) -> Optional[int]:
        return selector_wakeup_fd(loop)

    def subprocess_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        with _lock:
            if loop in _per_loop:
                return None
        if isinstance(asyncio.get_event_loop_policy(), asyncio.DefaultEventLoopPolicy):
            return None  # asyncio's own policy always has a watcher (made on first use)
        try:
            self.get_default()
        except UnsupportedLoopError as exc:
            return f"this loop cannot start subprocesses: {exc}"
        return None

    def set_default(self, watcher: Optional[AbstractChildWatcher]) -> None:
        """The watcher of every stdlib loop that has none of its own: the policy's."""
        _policy_call("set_child_watcher", watcher)

    def get_default(self) -> Any:
        return _policy_call("get_child_watcher")

    def reap_waits_for(
        self, callback: ChildCallback, args: Tuple[Any, ...]
    ) -> Optional[Tuple[asyncio.AbstractEventLoop, Callable[[], bool]]]:
        """The loop's ``_child_watcher_callback(pid, returncode, transport)`` only
        *schedules* ``transport._process_exited()``: one loop iteration later on
        3.9, 3.12 and 3.13, two on 3.10 and 3.11.  Until it has run, a
        ``kill()`` still signals the pid (3.13.0 without any check), so the
        child must stay a zombie until the transport knows its returncode:
        ``(the loop, learnt)``.  Recognised by the callback's name, bound to an
        asyncio loop, with a subprocess transport as its one argument (a loop
        derived from the stdlib's, rloop's, calls it so too); None otherwise."""
        if len(args) != 1 or getattr(callback, "__name__", None) != "_child_watcher_callback":
            return None
        loop = getattr(callback, "__self__", None)
        transport = args[0]
        if not isinstance(loop, asyncio.AbstractEventLoop) or not isinstance(
            transport, asyncio.SubprocessTransport
        ):
            return None
        return loop, lambda: transport.get_returncode() is not None

    def own_exit_step(
        self, callback: ChildCallback, args: Tuple[Any, ...]
    ) -> Optional[Tuple[asyncio.AbstractEventLoop, Callable[[int], object], int]]:
        """The stdlib loop's very ``_child_watcher_callback`` (not a subclass's
        override) only has its loop run ``transport._process_exited(returncode)``
        :data:`_OWN_STEP_ITERATIONS` later, through ``call_soon_threadsafe``."""
        if getattr(callback, "__func__", None) is not _OWN_CALLBACK or len(args) != 1:
            return None
        transport = args[0]
        if not isinstance(transport, asyncio.base_subprocess.BaseSubprocessTransport):
            return None
        loop: asyncio.AbstractEventLoop = callback.__self__  # type: ignore[attr-defined]
        return loop, transport._process_exited, _OWN_STEP_ITERATIONS
