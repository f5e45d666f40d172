"""What a given event loop forbids child watchers to do."""

from __future__ import annotations

import asyncio
from typing import Optional

from ._errors import UnsupportedLoopError


def loop_family(loop: asyncio.AbstractEventLoop) -> str:
    """The top-level package of the loop's class: ``asyncio``, ``uvloop``, …"""
    return type(loop).__module__.partition(".")[0]


def sigchld_refusal(loop: asyncio.AbstractEventLoop) -> Optional[str]:
    """Why ``loop`` cannot host a SIGCHLD-driven watcher, or None if it can."""
    if loop_family(loop) == "uvloop":
        return (
            "uvloop reaps its own children through libuv and ignores SIGCHLD "
            "handlers from child watchers (they would never fire); use "
            "ThreadedChildWatcher or PidfdChildWatcher on uvloop"
        )
    return None


def refuse_sigchld(watcher_name: str, loop: asyncio.AbstractEventLoop) -> None:
    """Raise :class:`UnsupportedLoopError` if ``loop`` forbids SIGCHLD watchers."""
    reason = sigchld_refusal(loop)
    if reason is not None:
        raise UnsupportedLoopError(f"{watcher_name} cannot run on {type(loop).__name__}: {reason}")
