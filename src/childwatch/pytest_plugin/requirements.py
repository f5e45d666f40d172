"""The ``childwatch_requires`` marker: skip or xfail a test where its loop lacks a capability.

The contract: :func:`apply` reads the test's ``childwatch_requires(*names, xfail=False,
strict=None)`` markers and, where the loop the test runs on (a stdlib asyncio loop for a
test without one; anyio's trio backend: :func:`childwatch.capabilities.trio_capabilities`)
lacks any of them as :func:`childwatch.capabilities` of a fresh loop of it says, adds a
skip (or an xfail that still runs) whose reason is the record's.  A name is
``custom_watcher`` (alias ``set_child_watcher``), ``subprocesses``, a watcher class name
or a mechanism; anything else is a usage error.  A loop's capabilities are asked once
per process, in the process that runs its tests (an isolated loop's: its worker).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Dict, Optional

import pytest

from .catalog import LoopImpl
from .runners import LoopFactory, LoopRunner

if TYPE_CHECKING:
    from ..capabilities import Capabilities

_ALIASES = {"set_child_watcher": "custom_watcher"}


@functools.cache
def _capabilities(loop: Optional[LoopImpl]) -> Capabilities:
    """The capabilities of a fresh loop of ``loop`` (None: anyio's trio backend)."""
    from ..capabilities import capabilities, trio_capabilities

    if loop is None:
        return trio_capabilities()

    async def probe() -> Capabilities:
        return capabilities()

    return LoopRunner(LoopFactory(loop.name, loop))(probe, timeout=60)


def _missing(caps: Capabilities, name: str) -> Optional[str]:
    """Why ``caps`` lacks capability ``name``, or None if it has it."""
    field = _ALIASES.get(name, name)
    if field in ("custom_watcher", "subprocesses"):
        support = caps.custom_watcher if field == "custom_watcher" else caps.subprocesses
        return None if support.supported else f"{name}: {support.reason}"
    watchers = dict(caps.watchers)
    if name in watchers:
        return None if watchers[name].supported else f"{name}: {watchers[name].reason}"
    mechanisms = dict(caps.mechanisms)
    if name in mechanisms:
        return None if mechanisms[name] else f"{name} is not available on this system"
    known = ["custom_watcher", "set_child_watcher", "subprocesses", *watchers, *mechanisms]
    raise pytest.UsageError(f"childwatch_requires: unknown capability {name!r}; known: {', '.join(known)}")


def apply(item: pytest.Item, impl: str, loop: Optional[LoopImpl]) -> None:
    """Apply ``item``'s ``childwatch_requires`` markers for the loop it runs on: ``impl``
    (``trio``: anyio's trio backend), whose entry is ``loop`` (a loop that can run here)."""
    marks = list(item.iter_markers("childwatch_requires"))
    if not marks:
        return
    caps = _capabilities(loop)
    for mark in marks:
        names = list(mark.args)
        if not names or not all(isinstance(name, str) for name in names):
            raise pytest.UsageError(f"{item.nodeid}: childwatch_requires takes capability names")
        unknown_kwargs = set(mark.kwargs) - {"xfail", "strict"}
        if unknown_kwargs:
            raise pytest.UsageError(
                f"{item.nodeid}: childwatch_requires got unknown arguments {sorted(unknown_kwargs)}"
            )
        missing = [reason for reason in (_missing(caps, name) for name in names) if reason is not None]
        if not missing:
            continue
        reason = f"{impl} lacks " + "; ".join(missing)
        if mark.kwargs.get("xfail", False):
            kwargs: Dict[str, Any] = {"reason": reason, "run": True}
            if mark.kwargs.get("strict") is not None:
                kwargs["strict"] = bool(mark.kwargs["strict"])
            item.add_marker(pytest.mark.xfail(**kwargs))
        else:
            item.add_marker(pytest.mark.skip(reason=reason))
