"""What the running (or given) loop allows, as a frozen, JSON-serialisable record.

Cheap and side-effect free: no process is spawned, no watcher created.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import platform
import threading
from typing import Any, Dict, Optional, Tuple

from . import _mechanisms
from .loops import adapter_for
from .watchers._base import check_loop, running_loop

WATCHER_NAMES = (
    "SafeChildWatcher",
    "FastChildWatcher",
    "MultiLoopChildWatcher",
    "ThreadedChildWatcher",
    "PidfdChildWatcher",
)


@dataclasses.dataclass(frozen=True)
class Support:
    """Whether something is possible; ``reason`` says why not (or a caveat)."""

    supported: bool
    reason: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What one event loop allows child watchers to do, on this Python and OS."""

    loop: str
    """Loop family: ``asyncio``, ``uvloop``, ``trio-asyncio``, ``trio``, or the class's package."""
    loop_class: str
    loop_version: Optional[str]
    python: str
    platform: str
    mechanisms: Tuple[Tuple[str, bool], ...]
    """OS mechanisms here: pidfd, waitid, kqueue, sigchld."""
    custom_watcher: Support
    """Can a custom watcher drive this loop's own subprocesses (set_child_watcher)?"""
    subprocesses: Support
    """Can this loop start subprocesses at all?"""
    watchers: Tuple[Tuple[str, Support], ...]
    """Which childwatch watchers can watch arbitrary pids on this loop."""
    current_watcher: Optional[str]
    """What reaps this loop's subprocesses now."""
    recommended: str
    """The watcher :func:`childwatch.default_watcher` picks for this loop."""

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mechanisms"] = dict(self.mechanisms)
        data["watchers"] = {name: dataclasses.asdict(support) for name, support in self.watchers}
        return data

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


def _watchers(
    loop: asyncio.AbstractEventLoop, sigchld_refusal: Optional[str], pidfd: bool, waitid: bool = True
) -> Tuple[Tuple[str, Support], ...]:
    if not waitid:
        # Every watcher reads a status without reaping the child: waitid(WNOWAIT).
        no = Support(False, "no waitid() here (neither os.waitid nor the C library through ctypes)")
        return tuple((name, no) for name in WATCHER_NAMES)
    main = threading.current_thread() is threading.main_thread()
    if sigchld_refusal is not None:
        safe = fast = multi = Support(False, sigchld_refusal)
    else:
        needs_main = None if main else "add_signal_handler needs a loop in the main thread"
        safe = Support(main, needs_main)
        fast = Support(main, needs_main or "reaps every child of the process, other code's too")
        multi = Support(True, None if main else "must first be attached from the main thread")
    threaded = Support(True)
    pidfd_support = (
        Support(True)
        if pidfd
        else Support(False, "pidfd_open is not available here (kernel < 5.3, seccomp, or not Linux)")
    )
    return tuple(zip(WATCHER_NAMES, (safe, fast, multi, threaded, pidfd_support)))


def capabilities(loop: Optional[asyncio.AbstractEventLoop] = None) -> Capabilities:
    """The capability record of ``loop`` (default: the running loop, else a new stdlib loop).

    Raises TypeError for a non-loop and RuntimeError for a closed loop.
    """
    loop = check_loop(loop) or running_loop()
    if loop is None:
        temporary = asyncio.new_event_loop()
        try:
            return capabilities(temporary)
        finally:
            temporary.close()
    mechanisms = _mechanisms.available()
    adapter = adapter_for(loop)
    cls = type(loop)
    sigchld: Optional[str]
    current: Optional[str]
    version: Optional[str]
    if adapter is None:
        family = cls.__module__.partition(".")[0]
        no_adapter = f"childwatch has no adapter for {cls.__module__}.{cls.__qualname__}"
        custom, subprocesses, sigchld, current, version = (
            Support(False, no_adapter),
            Support(True),
            no_adapter,
            None,
            None,
        )
    else:
        family, version = adapter.name, adapter.version()
        refusal = adapter.custom_watcher_refusal(loop)
        custom = Support(refusal is None, refusal)
        sub_refusal = adapter.subprocess_refusal(loop)
        subprocesses = Support(sub_refusal is None, sub_refusal)
        sigchld = adapter.sigchld_refusal(loop)
        current = adapter.current_watcher_name(loop)
    return Capabilities(
        loop=family,
        loop_class=f"{cls.__module__}.{cls.__qualname__}",
        loop_version=version,
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        mechanisms=tuple(mechanisms.items()),
        custom_watcher=custom,
        subprocesses=subprocesses,
        watchers=_watchers(loop, sigchld, mechanisms["pidfd"], mechanisms["waitid"]),
        current_watcher=current,
        recommended="ThreadedChildWatcher",
    )


def trio_capabilities() -> Capabilities:
    """The record for plain trio, which has no asyncio loop and no child watcher."""
    import trio

    mechanisms = _mechanisms.available()
    no_loop = "needs an asyncio event loop; trio has none"
    return Capabilities(
        loop="trio",
        loop_class="trio",
        loop_version=trio.__version__,
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        mechanisms=tuple(mechanisms.items()),
        custom_watcher=Support(
            False,
            "trio has no child watcher: trio.run_process waits with pidfd, kqueue or a waitid thread itself",
        ),
        subprocesses=Support(True),
        watchers=(
            ("SafeChildWatcher", Support(False, no_loop)),
            ("FastChildWatcher", Support(False, no_loop)),
            ("MultiLoopChildWatcher", Support(True, "callbacks run in the main thread's signal handler")),
            (
                "ThreadedChildWatcher",
                Support(
                    True,
                    "callbacks run in its waiter thread: hand them to trio with trio.from_thread or a TrioToken",
                ),
            ),
            ("PidfdChildWatcher", Support(False, no_loop)),
        ),
        current_watcher=None,
        recommended="ThreadedChildWatcher",
    )


__all__ = ["Capabilities", "Support", "capabilities", "trio_capabilities"]
