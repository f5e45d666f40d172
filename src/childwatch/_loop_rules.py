"""What a given event loop forbids child watchers to do, as told by its adapter."""

from __future__ import annotations

import asyncio

from ._errors import UnsupportedLoopError


def refuse_sigchld(watcher_name: str, loop: asyncio.AbstractEventLoop) -> None:
    """Raise :class:`UnsupportedLoopError` if ``loop`` forbids SIGCHLD watchers."""
    from .loops import adapter_for

    adapter = adapter_for(loop)
    if adapter is None:
        return
    reason = adapter.sigchld_refusal(loop)
    if reason is not None:
        kind = type(loop)
        raise UnsupportedLoopError(
            f"{watcher_name} cannot run on {adapter.name} ({kind.__module__}.{kind.__qualname__}): {reason}"
        )
