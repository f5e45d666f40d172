"""What a given event loop forbids child watchers to do, as told by its adapter."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Optional

from ._errors import UnsupportedLoopError

if TYPE_CHECKING:
    from .loops import LoopAdapter


def sigchld_refusal(
    adapter: LoopAdapter, loop: asyncio.AbstractEventLoop, through_loop: bool
) -> Optional[str]:
    """Why ``adapter``'s ``loop`` forbids SIGCHLD watchers, or None: all of them
    (:meth:`LoopAdapter.sigchld_refusal`), or, if ``through_loop``, those whose
    handler goes through the loop's ``add_signal_handler`` (Safe and Fast:
    :meth:`LoopAdapter.signal_handler_refusal`)."""
    reason = adapter.sigchld_refusal(loop)
    if reason is None and through_loop:
        reason = adapter.signal_handler_refusal(loop)
    return reason


def refuse_sigchld(watcher_name: str, loop: asyncio.AbstractEventLoop, through_loop: bool = False) -> None:
    """Raise :class:`UnsupportedLoopError` if ``loop`` forbids the SIGCHLD watcher
    ``watcher_name`` (``through_loop``: see :func:`sigchld_refusal`)."""
    from .loops import adapter_for
    from .loops._util import class_name

    adapter = adapter_for(loop)
    if adapter is None:
        return
    reason = sigchld_refusal(adapter, loop, through_loop)
    if reason is not None:
        raise UnsupportedLoopError(
            f"{watcher_name} cannot run on {adapter.name} ({class_name(loop)}): {reason}"
        )
