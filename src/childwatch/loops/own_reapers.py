"""Loops that reap their own subprocesses and have no child watcher to replace.

For these, :func:`childwatch.set_child_watcher` is refused with the reason;
the watchers for pids you start yourself work as on any loop, except where
the adapter says the loop forbids SIGCHLD watchers (uvloop) or its
``add_signal_handler`` cannot carry Safe's and Fast's handler (rsloop).  What
the report says of the rest is probed as for a loop without adapter, but known.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Optional

from . import trio_asyncio_3_14_plus
from ._adapter import LoopAdapter
from ._identity import distribution_version, family


def reaps_itself(name: str, how: str) -> str:
    """The refusal of ``set_child_watcher`` for loop ``name``, which reaps its subprocesses ``how``."""
    return (
        f"{name} reaps its own subprocesses {how} and has no child watcher to replace; "
        "watch pids you start yourself with ThreadedChildWatcher or PidfdChildWatcher"
    )


class OwnReaperAdapter(LoopAdapter):
    """The loops whose class lives in package ``package`` (default: ``name``),
    distribution ``name``: ``refusal`` says why no custom watcher can drive their
    subprocesses; ``reaper`` is what the report names as reaping them now;
    ``sigchld_refusal``: why no SIGCHLD watcher can run on them, if none can;
    ``signal_refusal``: why their ``add_signal_handler`` cannot carry Safe's and
    Fast's SIGCHLD handler, if it cannot; ``subprocess_refusal``: asked why
    the loop cannot run subprocesses here at all (None: it can)."""

    def __init__(
        self,
        name: str,
        refusal: str,
        reaper: str,
        *,
        package: Optional[str] = None,
        sigchld_refusal: Optional[str] = None,
        signal_refusal: Optional[str] = None,
        subprocess_refusal: Optional[Callable[[], Optional[str]]] = None,
    ) -> None:
        self.name = name
        self._package = package or name
        self._refusal = refusal
        self._reaper = reaper
        self._sigchld_refusal = sigchld_refusal
        self._signal_refusal = signal_refusal
        self._subprocess_refusal = subprocess_refusal

    def matches(self, loop: asyncio.AbstractEventLoop) -> bool:
        return family(loop) == self._package

    def version(self) -> Optional[str]:
        return distribution_version(self.name)

    def custom_watcher_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return self._refusal

    def subprocess_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return None if self._subprocess_refusal is None else self._subprocess_refusal()

    def sigchld_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return self._sigchld_refusal

    def signal_handler_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return self._signal_refusal

    def current_watcher_name(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        return self._reaper


def own_reapers() -> list[LoopAdapter]:
    """The built-in adapters of this kind (versions checked: uvloop 0.21–0.23,
    trio-asyncio 0.15–0.16, loopmini 0.2, talyn 0.10, zuvloop 0.0.17, rsloop 0.1.66)."""
    return [
        OwnReaperAdapter(
            "uvloop",
            reaps_itself("uvloop", "through libuv"),
            "libuv",
            sigchld_refusal="uvloop reaps its own children through libuv and ignores SIGCHLD handlers from "
            "child watchers (they would never fire); use ThreadedChildWatcher or PidfdChildWatcher on uvloop",
        ),
        OwnReaperAdapter(
            "trio-asyncio",
            "trio-asyncio waits for its subprocesses with its own thread per child and its policy silently "
            "replaces any watcher it is given; watch pids you start yourself with ThreadedChildWatcher or "
            "PidfdChildWatcher",
            "TrioChildWatcher",
            package="trio_asyncio",
            subprocess_refusal=trio_asyncio_3_14_plus.refusal,  # 0.16 on 3.14+: see that module
        ),
        OwnReaperAdapter(
            "loopmini",
            reaps_itself("loopmini", "with a thread per child (Popen.wait())"),
            "a thread per child",
        ),
        OwnReaperAdapter(
            "talyn", reaps_itself("talyn", "through its native exit watcher"), "talyn's exit watcher"
        ),
        OwnReaperAdapter("zuvloop", reaps_itself("zuvloop", "through libuv (uv_spawn)"), "libuv"),
        OwnReaperAdapter(
            "rsloop",
            reaps_itself("rsloop", "in its native (Rust) runtime"),
            "rsloop's native runtime",
            signal_refusal="rsloop keeps SIGCHLD for its own subprocesses: its add_signal_handler(SIGCHLD) "
            "raises RuntimeError ('SIGCHLD is reserved for subprocess handling'); use MultiLoopChildWatcher, "
            "ThreadedChildWatcher or PidfdChildWatcher",
        ),
    ]
