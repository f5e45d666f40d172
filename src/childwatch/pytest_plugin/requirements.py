"""The ``childwatch_requires`` marker: skip or xfail a test where its loop lacks a capability.

The contract: :func:`check` validates a test's ``childwatch_requires(*names, xfail=False,
strict=None)`` markers at collection (a name is ``custom_watcher``, alias
``set_child_watcher``, ``subprocesses``, a watcher class name or a mechanism; anything
else is a usage error).  :func:`apply`, called just before the test runs, in the process
that runs it (an isolated loop's: its worker), adds a skip (or an xfail that still runs)
where the loop the test runs on (a stdlib asyncio loop for a test without one; anyio's
trio backend: :func:`childwatch.capabilities.trio_capabilities`) lacks any of them as
:func:`childwatch.capabilities` of a fresh loop of it says, the record's reason as the
reason.  A loop's capabilities are asked once per process.

Without a marker, :func:`unsupported` turns the failure of a test into a skip where the test
failed starting a subprocess (the exception passed through a subprocess method of the loop)
on a loop whose capabilities say it has no subprocesses, with that reason; the ini option
``childwatch_skip_unsupported = false`` keeps the failure.
"""

from __future__ import annotations

import functools
import traceback
from typing import Any, Dict, Iterator, List, Optional

import pytest

from .. import _mechanisms
from ..capabilities import WATCHER_NAMES, Capabilities, capabilities, trio_capabilities
from .catalog import LoopImpl
from .runners import LoopFactory, LoopRunner

_LOOP_WIDE = ("custom_watcher", "set_child_watcher", "subprocesses")
_ALIASES = {"set_child_watcher": "custom_watcher"}


def _marks(item: pytest.Item) -> List[pytest.Mark]:
    return list(item.iter_markers("childwatch_requires"))


def check(item: pytest.Item) -> None:
    """Raise a usage error if a ``childwatch_requires`` marker of ``item`` is malformed."""
    known = [*_LOOP_WIDE, *WATCHER_NAMES, *_mechanisms.available()]
    for mark in _marks(item):
        names = list(mark.args)
        if not names or not all(isinstance(name, str) for name in names):
            raise pytest.UsageError(f"{item.nodeid}: childwatch_requires takes capability names")
        unknown_kwargs = set(mark.kwargs) - {"xfail", "strict"}
        if unknown_kwargs:
            raise pytest.UsageError(
                f"{item.nodeid}: childwatch_requires got unknown arguments {sorted(unknown_kwargs)}"
            )
        for name in names:
            if name not in known:
                raise pytest.UsageError(
                    f"childwatch_requires: unknown capability {name!r}; known: {', '.join(known)}"
                )


@functools.cache
def _capabilities(loop: Optional[LoopImpl]) -> Capabilities:
    """The capabilities of a fresh loop of ``loop`` (None: anyio's trio backend)."""
    if loop is None:
        return trio_capabilities()

    async def probe() -> Capabilities:
        return capabilities()

    return LoopRunner(LoopFactory(loop.name, loop))(probe, timeout=60)


def _missing(caps: Capabilities, name: str) -> Optional[str]:
    """Why ``caps`` lacks capability ``name`` (a valid one), or None if it has it."""
    field = _ALIASES.get(name, name)
    if field in _LOOP_WIDE:
        support = caps.custom_watcher if field == "custom_watcher" else caps.subprocesses
        return None if support.supported else f"{name}: {support.reason}"
    watchers = dict(caps.watchers)
    if name in watchers:
        return None if watchers[name].supported else f"{name}: {watchers[name].reason}"
    return None if dict(caps.mechanisms)[name] else f"{name} is not available on this system"


def apply(item: pytest.Item, impl: str, loop: Optional[LoopImpl]) -> None:
    """Apply ``item``'s ``childwatch_requires`` markers for the loop it runs on: ``impl``
    (``trio``: anyio's trio backend), whose entry is ``loop`` (a loop that can run here)."""
    marks = _marks(item)
    if not marks:
        return
    caps = _capabilities(loop)
    for mark in marks:
        missing = [reason for reason in (_missing(caps, name) for name in mark.args) if reason is not None]
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


_SUBPROCESS_METHODS = frozenset(
    {"subprocess_exec", "subprocess_shell", "create_subprocess_exec", "create_subprocess_shell"}
)


def _exceptions(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the members of exception groups in it, and their causes and contexts."""
    seen: List[BaseException] = []
    pending = [exc]
    while pending:
        current = pending.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        yield current
        pending.extend(getattr(current, "exceptions", ()))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _starting_a_subprocess(exc: BaseException) -> bool:
    """True if ``exc`` (or an exception in it) was raised in a subprocess method of a loop."""
    return any(
        frame.f_code.co_name in _SUBPROCESS_METHODS
        for each in _exceptions(exc)
        for frame, _ in traceback.walk_tb(each.__traceback__)
    )


def unsupported(item: pytest.Item, impl: str, loop: Optional[LoopImpl], exc: BaseException) -> Optional[str]:
    """The reason to skip ``item``, which failed with ``exc`` on ``impl`` (entry ``loop``; None:
    anyio's trio backend, left alone), if it failed starting a subprocess on a loop that has
    none, and the ini option does not say otherwise; else None."""
    from _childwatch_pytest import SKIP_UNSUPPORTED_INI  # the entry point (imports this package)

    if loop is None or not item.config.getini(SKIP_UNSUPPORTED_INI) or not _starting_a_subprocess(exc):
        return None
    support = _capabilities(loop).subprocesses
    if support.supported:
        return None
    return f"{impl} lacks subprocesses: {support.reason} ({SKIP_UNSUPPORTED_INI})"
