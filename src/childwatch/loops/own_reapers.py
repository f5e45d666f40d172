"""Loops that reap their own subprocesses and have no child watcher to replace.

For these, :func:`childwatch.set_child_watcher` is refused with the reason;
the watchers for pids you start yourself work as on any loop (what the
report says of them is probed as for a loop without adapter, but known).
"""

from __future__ import annotations

import asyncio
from typing import Optional

from ._adapter import LoopAdapter
from ._util import distribution_version, family


class OwnReaperAdapter(LoopAdapter):
    """The loops whose class lives in package ``name``: they reap their own
    subprocesses ``how`` (a phrase: "with a thread per child")."""

    def __init__(self, name: str, how: str, reaper: str) -> None:
        self.name = name
        self._how = how
        self._reaper = reaper

    def matches(self, loop: asyncio.AbstractEventLoop) -> bool:
        return family(loop) == self.name

    def version(self) -> Optional[str]:
        return distribution_version(self.name)

    def custom_watcher_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return (
            f"{self.name} reaps its own subprocesses {self._how} and has no child watcher to replace; "
            "watch pids you start yourself with ThreadedChildWatcher or PidfdChildWatcher"
        )

    def current_watcher_name(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return self._reaper


def own_reapers() -> list[LoopAdapter]:
    """The built-in adapters of this kind (versions checked: loopmini 0.2, talyn 0.10)."""
    return [
        OwnReaperAdapter("loopmini", "with a thread per child (Popen.wait())", "a thread per child"),
        OwnReaperAdapter("talyn", "through its native exit watcher", "talyn's exit watcher"),
    ]
