"""The plugin's fixtures: ``loop_impl``, ``loop_factory``, ``run_on_loop``.

The contract: ``loop_impl`` is parametrised at collection (:mod:`.hooks`), one
parameter per loop the test runs on (:meth:`.selection.Selection.for_item`), unless the
test already runs once per loop through pytest-asyncio or anyio: it then names that loop
(:func:`.state.loop_impl_of`).  The other two build on it.  A loop that cannot run here
is skipped before the test starts (:meth:`.state.State.skip_reason`).  The plugin
parametrises a fixture only where the test resolves it to one of the plugin's own
(:func:`ours`): a suite's own fixture of the same name, or its own parametrisation of
that name, is left alone.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

import pytest

from . import state
from .runners import LoopFactory, LoopRunner

T = TypeVar("T")


def tagged(func: Callable[..., T]) -> Callable[..., T]:
    """Mark ``func`` as a fixture function of this plugin (see :func:`ours`)."""
    func._childwatch_fixture = True  # type: ignore[attr-defined]
    return func


def ours(metafunc: pytest.Metafunc, name: str) -> Optional[Callable[..., Any]]:
    """The function of fixture ``name`` as this test resolves it, if this plugin made it
    and the test does not parametrise ``name`` itself; else None."""
    if name not in metafunc.fixturenames:
        return None
    for mark in metafunc.definition.iter_markers("parametrize"):
        argnames = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if isinstance(argnames, str):
            argnames = [part.strip() for part in argnames.split(",")]
        if name in argnames:
            return None
    fixturedefs = getattr(metafunc, "_arg2fixturedefs", {}).get(name)
    if not fixturedefs:
        return None
    func: Callable[..., Any] = fixturedefs[-1].func
    return func if getattr(func, "_childwatch_fixture", False) else None


@pytest.fixture
@tagged
def loop_impl(request: pytest.FixtureRequest) -> str:
    """The name of the loop implementation this test runs on (``asyncio``, ``uvloop``, ``trio-asyncio``, …;
    ``trio`` for anyio's trio backend): what ``loop_impl_of(item)`` said at collection.

    Requesting it (directly or through ``loop_factory`` / ``run_on_loop``) runs
    the test once per implementation selected by ``--loop-impls``; in a test that
    pytest-asyncio or anyio already runs once per loop (the plugin's loop factories,
    its ``anyio_backend``), it names that loop and adds no parametrisation of its own.
    """
    param: Optional[str] = getattr(request, "param", None)
    if param is None:
        param = state.loop_impl_of(request.node)  # a function-scoped fixture's node: the test
    if param is None:
        raise pytest.UsageError(
            "loop_impl is parametrised at collection: request it as a test argument, "
            "not with request.getfixturevalue()"
        )
    return param


@pytest.fixture
def loop_factory(loop_impl: str, request: pytest.FixtureRequest) -> LoopFactory:
    """A zero-argument callable making a fresh loop of this test's implementation
    (for ``asyncio.run(main(), loop_factory=...)``, ``asyncio.Runner``, …); closing it is up to you."""
    return state.of(request.config).selection.factory(loop_impl)


@pytest.fixture
def run_on_loop(loop_impl: str, request: pytest.FixtureRequest) -> LoopRunner:
    """``run_on_loop(async_fn, *args, timeout=None)`` runs ``async_fn(*args)`` on a fresh
    loop of this test's implementation, closes the loop and returns the result."""
    return LoopRunner(state.of(request.config).selection.factory(loop_impl))
