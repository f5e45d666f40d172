"""trio-asyncio: waits for its subprocesses itself and swaps any watcher it is given."""

from __future__ import annotations

import asyncio
from typing import Optional

from ._adapter import LoopAdapter
from ._identity import distribution_version, family


class TrioAsyncioAdapter(LoopAdapter):
    name = "trio-asyncio"

    def matches(self, loop: asyncio.AbstractEventLoop) -> bool:
        return family(loop) == "trio_asyncio"

    def version(self) -> Optional[str]:
        return distribution_version("trio-asyncio")

    def custom_watcher_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return (
            "trio-asyncio waits for its subprocesses with its own thread per child and "
            "its policy silently replaces any watcher it is given; watch pids you start "
            "yourself with ThreadedChildWatcher or PidfdChildWatcher"
        )

    def current_watcher_name(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return "TrioChildWatcher"
