"""What a given event loop forbids child watchers to do, as told by its adapter."""

from __future__ import annotations

import asyncio
from typing import Optional

from ._errors import UnsupportedLoopError


def sigchld_refusal(loop: asyncio.AbstractEventLoop) -> Optional[str]:
    """Why ``loop`` cannot host a SIGCHLD-driven watcher, or None if it can."""
    from .loops import adapter_for

    adapter = adapter_for(loop)
    return None if adapter is None else adapter.sigchld_refusal(loop)


def refuse_sigchld(watcher_name: str, loop: asyncio.AbstractEventLoop) -> None:
    """Raise :class:`UnsupportedLoopError` if ``loop`` forbids SIGCHLD watchers."""
    reason = sigchld_refusal(loop)
    if reason is not None:
        raise UnsupportedLoopError(f"{watcher_name} cannot run on {type(loop).__name__}: {reason}")
