"""The selected loops for pytest-asyncio and anyio.

The contract: :func:`loop_factories` is what pytest-asyncio's
``pytest_asyncio_loop_factories(config, item)`` hook returns, and
:func:`anyio_backends` / :func:`anyio_backend_fixture` parametrise anyio's
``anyio_backend`` fixture, one entry per loop the test runs on
(:meth:`.selection.Selection.for_item`), named by the loop, so that test ids never
depend on what is installed; a loop that is not selected for the test, or cannot run
here, stays in, and the plugin skips its tests with the reason before they start
(:meth:`.state.State.skip_reason`).  Their parameters carry :class:`.runners.LoopFactory`
objects (or anyio's own ``"asyncio"`` and ``"trio"``), from which
:func:`.selection.item_impl` reads which loop a test runs on.  :func:`pytest_asyncio_loops`
tells the plugin's hooks which loops pytest-asyncio parametrises a test on with them.

They change nothing else: pytest-asyncio's ``asyncio`` loop is made by the event loop policy
pytest-asyncio has put in place (a project's own ``event_loop_policy`` fixture keeps its
loop), and the ``anyio_backend`` fixture has anyio's scope and takes the project's backend
options (``debug=True``, …), passed to every loop of that backend.

Where the plugin is switched off (:mod:`.state`), they give plain asyncio alone:
``{"asyncio": asyncio.new_event_loop}`` for pytest-asyncio, and anyio's default backend,
``"asyncio"``, for anyio.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional

import pytest

from . import state
from .fixtures import tagged
from .runners import LoopFactory

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
    factories: Dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        name: session.selection.factory(name) for name in names
    }
    if "asyncio" in factories:
        factories["asyncio"] = LoopFactory("asyncio", by_policy=True)  # the project's policy, if any
    return factories


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


BackendOptions = Mapping[str, Mapping[str, Any]]
"""anyio backend name (``"asyncio"``, ``"trio"``) → the options anyio passes that backend."""


def _backend(name: str, options: Mapping[str, Any]) -> Any:
    """anyio's spelling of backend ``name`` with ``options``: the bare name without any."""
    return (name, dict(options)) if options else name


def anyio_backends(
    config: pytest.Config,
    item: Optional[Any] = None,
    *,
    trio: bool = True,
    options: Optional[BackendOptions] = None,
) -> List[ParameterSet]:
    """Parameters for anyio's ``anyio_backend`` fixture, one per selected loop
    implementation (ids ``asyncio``, ``uvloop``, ``trio-asyncio``, …), plus
    ``trio`` (anyio's trio backend) unless ``trio`` is false.

    ``asyncio`` is anyio's ``"asyncio"`` backend, the others are
    ``("asyncio", {"loop_factory": LoopFactory(name)})``; ``options["asyncio"]``
    (e.g. ``{"debug": True}``) is added to each of them, ``options["trio"]`` to trio's.
    :func:`anyio_backend_fixture` applies them; for an ``anyio_backend``
    fixture of your own (one without ``params``), parametrise it from
    ``pytest_generate_tests`` with ``metafunc.parametrize("anyio_backend",
    anyio_backends(metafunc.config, metafunc.definition), indirect=True)``.
    Where the plugin is switched off: anyio's ``"asyncio"`` alone (with its options).
    """
    session = state.of(config)
    options = options or {}
    on_asyncio = dict(options.get("asyncio", {}))
    if not session.active:
        return [pytest.param(_backend("asyncio", on_asyncio), id="asyncio")]
    params: List[ParameterSet] = []
    for name, _ in session.selection.for_item(item):
        extra = {} if name == "asyncio" else {"loop_factory": session.selection.factory(name)}
        params.append(pytest.param(_backend("asyncio", {**on_asyncio, **extra}), id=name))
    if trio:
        params.append(pytest.param(_backend("trio", options.get("trio", {})), id="trio"))
    return params


def anyio_backend_fixture(
    *, trio: bool = True, options: Optional[BackendOptions] = None, scope: str = "function"
) -> Any:
    """An ``anyio_backend`` fixture parametrised by :func:`anyio_backends` (``trio`` and
    ``options`` as there), of pytest scope ``scope``.

    Assign it in a conftest.py (``anyio_backend = anyio_backend_fixture()``): the
    anyio tests under it then run once per selected loop implementation (and on
    trio unless ``trio`` is false), in the order of the file (a test's loops one after
    the other; ``scope="module"`` groups a module's tests by loop, as anyio's own fixture
    does).  Where the plugin is switched off, it is anyio's default: ``"asyncio"``
    (with ``options["asyncio"]``).
    """

    def anyio_backend(request: pytest.FixtureRequest) -> Any:
        if hasattr(request, "param"):
            return request.param
        if not state.of(request.config).active:
            return _backend("asyncio", (options or {}).get("asyncio", {}))
        raise pytest.UsageError("childwatch's anyio_backend is parametrised at collection")

    anyio_backend._childwatch_anyio = {"trio": trio, "options": options, "scope": scope}  # type: ignore[attr-defined]
    return pytest.fixture(scope=scope, name="anyio_backend")(tagged(anyio_backend))  # type: ignore[call-overload]
