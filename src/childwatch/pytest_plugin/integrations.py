"""The selected loops for pytest-asyncio and anyio.

The contract: :func:`loop_factories` is what pytest-asyncio's
``pytest_asyncio_loop_factories(config, item)`` hook returns, and
:func:`anyio_backends` / :func:`anyio_backend_fixture` parametrise anyio's
``anyio_backend`` fixture, one entry per loop the test runs on
(:meth:`.selection.Selection.for_item`), named by the loop, so that test ids never
depend on what is installed; a loop that is not selected for the test, or cannot run
here, stays in, and the plugin skips its tests with the reason before they start
(:meth:`.state.State.skip_reason`).  Their parameters carry :class:`.runners.LoopFactory`
objects (or anyio's own spelling of asyncio and uvloop), from which
:func:`.selection.item_impl` reads which loop a test runs on.  :func:`pytest_asyncio_loops`
tells the plugin's hooks which loops pytest-asyncio parametrises a test on with them.

Where the plugin is switched off (:mod:`.state`), they give plain asyncio alone:
``{"asyncio": asyncio.new_event_loop}`` for pytest-asyncio, and anyio's default backend,
``"asyncio"``, for anyio.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import pytest

from . import state
from .fixtures import tagged

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet

_ASKED = pytest.StashKey[List[str]]()
"""On a test definition: the loops :func:`loop_factories` gave pytest-asyncio for it."""


def loop_factories(
    config: pytest.Config, item: Optional[pytest.Item] = None
) -> Dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The selected loop implementations as the mapping pytest-asyncio's
    ``pytest_asyncio_loop_factories(config, item)`` hook returns: name → factory
    (a :class:`.runners.LoopFactory`).

    ``item`` (the hook's) applies its ``childwatch_loops`` marker.  Implementations that are
    not selected for it, or unavailable, stay in the mapping (so the test ids do not depend
    on the machine), and the plugin skips their tests with the reason.  Where the plugin is
    switched off: ``{"asyncio": asyncio.new_event_loop}``.
    """
    session = state.of(config)
    if not session.active:
        return {"asyncio": asyncio.new_event_loop}
    names = [name for name, _ in session.selection.for_item(item)]
    if item is not None:
        item.stash[_ASKED] = names
    return {name: session.selection.factory(name) for name in names}


def pytest_asyncio_loops(definition: pytest.Item) -> Optional[List[str]]:
    """The loops pytest-asyncio parametrises test ``definition`` on with the factories of
    :func:`loop_factories` (as narrowed by ``@pytest.mark.asyncio(loop_factories=[...])``),
    in its order; None if it did not ask :func:`loop_factories` for this test.

    pytest-asyncio asks in its ``pytest_generate_tests``, which runs first (``tryfirst``).
    """
    names = definition.stash.get(_ASKED, None)
    if names is None:
        return None
    marker = definition.get_closest_marker("asyncio")
    narrowed = marker.kwargs.get("loop_factories") if marker is not None else None
    return list(narrowed) if narrowed else names


def anyio_backends(
    config: pytest.Config, item: Optional[Any] = None, *, trio: bool = True
) -> List[ParameterSet]:
    """Parameters for anyio's ``anyio_backend`` fixture, one per selected loop
    implementation (ids ``asyncio``, ``uvloop``, ``trio-asyncio``, …), plus
    ``trio`` (anyio's trio backend) unless ``trio`` is false.

    ``asyncio`` is anyio's plain ``"asyncio"`` backend, ``uvloop`` is
    ``("asyncio", {"use_uvloop": True})``, the others are
    ``("asyncio", {"loop_factory": LoopFactory(name)})``.
    :func:`anyio_backend_fixture` applies them; for an ``anyio_backend``
    fixture of your own (one without ``params``), parametrise it from
    ``pytest_generate_tests`` with ``metafunc.parametrize("anyio_backend",
    anyio_backends(metafunc.config, metafunc.definition), indirect=True,
    scope="module")``.  Where the plugin is switched off: anyio's ``"asyncio"`` alone.
    """
    session = state.of(config)
    if not session.active:
        return [pytest.param("asyncio", id="asyncio")]
    params: List[ParameterSet] = []
    for name, _ in session.selection.for_item(item):
        backend: Any
        if name == "asyncio":
            backend = "asyncio"
        elif name == "uvloop":
            backend = ("asyncio", {"use_uvloop": True})
        else:
            backend = ("asyncio", {"loop_factory": session.selection.factory(name)})
        params.append(pytest.param(backend, id=name))
    if trio:
        params.append(pytest.param("trio", id="trio"))
    return params


def anyio_backend_fixture(*, trio: bool = True) -> Any:
    """A module-scoped ``anyio_backend`` fixture parametrised by :func:`anyio_backends`.

    Assign it in a conftest.py (``anyio_backend = anyio_backend_fixture()``): the
    anyio tests under it then run once per selected loop implementation (and on
    trio unless ``trio`` is false).  Where the plugin is switched off, it is anyio's
    default: ``"asyncio"``.
    """

    def anyio_backend(request: pytest.FixtureRequest) -> Any:
        if hasattr(request, "param"):
            return request.param
        if not state.of(request.config).active:
            return "asyncio"
        raise pytest.UsageError("childwatch's anyio_backend is parametrised at collection")

    anyio_backend._childwatch_trio = trio  # type: ignore[attr-defined]
    return pytest.fixture(scope="module", name="anyio_backend")(tagged(anyio_backend))
