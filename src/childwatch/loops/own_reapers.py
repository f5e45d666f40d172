"""Loops that reap their own subprocesses and have no child watcher to replace.

For these, :func:`childwatch.set_child_watcher` is refused with the reason;
the watchers for pids you start yourself work as on any loop (what the
report says of them is probed as for a loop without adapter, but known).
"""

from __future__ import annotations

import asyncio
from typing import Optional

from ._adapter import LoopAdapter
from ._identity import distribution_version, family


class OwnReaperAdapter(LoopAdapter):
    """The loops whose class lives in package ``name``: they reap their own
    subprocesses ``how`` (a phrase: "with a thread per child"), by ``reaper``
    (what the report names as reaping them now); ``signal_refusal``: why their
    ``add_signal_handler`` cannot carry Safe's and Fast's SIGCHLD handler, if it cannot."""

    def __init__(self, name: str, how: str, reaper: str, signal_refusal: Optional[str] = None) -> None:
        self.name = name
        self._how = how
        self._reaper = reaper
        self._signal_refusal = signal_refusal

    def matches(self, loop: asyncio.AbstractEventLoop) -> bool:
        return family(loop) == self.name

    def version(self) -> Optional[str]:
        return distribution_version(self.name)

    def custom_watcher_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return (
            f"{self.name} reaps its own subprocesses {self._how} and has no child watcher to replace; "
            "watch pids you start yourself with ThreadedChildWatcher or PidfdChildWatcher"
        )

    def signal_handler_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return self._signal_refusal

    def current_watcher_name(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return self._reaper


def own_reapers() -> list[LoopAdapter]:
    """The built-in adapters of this kind (versions checked: loopmini 0.2, talyn 0.10,
    zuvloop 0.0.17, rsloop 0.1.66)."""
    return [
        OwnReaperAdapter("loopmini", "with a thread per child (Popen.wait())", "a thread per child"),
        OwnReaperAdapter("talyn", "through its native exit watcher", "talyn's exit watcher"),
        OwnReaperAdapter("zuvloop", "through libuv (uv_spawn)", "libuv"),
        OwnReaperAdapter(
            "rsloop",
            "in its native (Rust) runtime",
            "rsloop's native runtime",
            "rsloop keeps SIGCHLD for its own subprocesses: its add_signal_handler(SIGCHLD) raises "
            "RuntimeError ('SIGCHLD is reserved for subprocess handling'); use MultiLoopChildWatcher, "
            "ThreadedChildWatcher or PidfdChildWatcher",
        ),
    ]
