"""uvloop: reaps its own children through libuv; no watcher can replace that."""

from __future__ import annotations

import asyncio
from typing import Optional

from ._adapter import LoopAdapter
from ._identity import distribution_version, family


class UvloopAdapter(LoopAdapter):
    name = "uvloop"

    def matches(self, loop: asyncio.AbstractEventLoop) -> bool:
        return family(loop) == "uvloop"

    def version(self) -> Optional[str]:
        return distribution_version("uvloop")

    def custom_watcher_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return (
            "uvloop reaps its own subprocesses through libuv and has no child watcher "
            "to replace; watch pids you start yourself with ThreadedChildWatcher or "
            "PidfdChildWatcher"
        )

    def sigchld_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return (
            "uvloop reaps its own children through libuv and ignores SIGCHLD "
            "handlers from child watchers (they would never fire); use "
            "ThreadedChildWatcher or PidfdChildWatcher on uvloop"
        )

    def current_watcher_name(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return "libuv"
