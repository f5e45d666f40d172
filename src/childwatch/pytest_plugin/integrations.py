"""The selected loops for pytest-asyncio and anyio.

The contract: :func:`loop_factories` is what pytest-asyncio's
``pytest_asyncio_loop_factories(config, item)`` hook returns, and
:func:`anyio_backends` / :func:`anyio_backend_fixture` parametrise anyio's
``anyio_backend`` fixture, one entry per loop the test runs on
(:meth:`.selection.Selection.for_item`), named by the loop, so that test ids never
depend on what is installed; a loop that cannot run here stays in, its tests skipped
with the reason.  Their parameters carry :class:`.runners.LoopFactory` objects (or
anyio's own spelling of asyncio and uvloop), from which :func:`.selection.item_impl`
reads which loop a test runs on.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import pytest

from . import state
from .fixtures import tagged
from .runners import LoopFactory

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet


def skip_marks(reason: Optional[str]) -> List[pytest.MarkDecorator]:
    return [pytest.mark.skip(reason=reason)] if reason else []


def loop_factories(config: pytest.Config, item: Optional[pytest.Item] = None) -> Dict[str, LoopFactory]:
    """The selected loop implementations as the mapping pytest-asyncio's
    ``pytest_asyncio_loop_factories(config, item)`` hook returns: name → factory.

    ``item`` (the hook's) applies its ``childwatch_loops`` marker.  Unavailable
    implementations stay in the mapping (so the test ids do not depend on the
    machine) and skip their tests with the reason.
    """
    selection = state.of(config).selection
    return {name: selection.factory(name) for name, _ in selection.for_item(item)}


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
    scope="module")``.
    """
    session = state.of(config)
    params: List[ParameterSet] = []
    for name, not_selected in session.selection.for_item(item):
        backend: Any
        if name == "asyncio":
            backend = "asyncio"
        elif name == "uvloop":
            backend = ("asyncio", {"use_uvloop": True})
        else:
            backend = ("asyncio", {"loop_factory": session.selection.factory(name)})
        reason = not_selected or session.unavailable_reason(name)
        params.append(pytest.param(backend, id=name, marks=skip_marks(reason)))
    if trio:
        reason = None if importlib.util.find_spec("trio") is not None else "trio is not installed"
        params.append(pytest.param("trio", id="trio", marks=skip_marks(reason)))
    return params


def anyio_backend_fixture(*, trio: bool = True) -> Any:
    """A module-scoped ``anyio_backend`` fixture parametrised by :func:`anyio_backends`.

    Assign it in a conftest.py (``anyio_backend = anyio_backend_fixture()``): the
    anyio tests under it then run once per selected loop implementation (and on
    trio unless ``trio`` is false).
    """

    def anyio_backend(request: pytest.FixtureRequest) -> Any:
        if not hasattr(request, "param"):
            raise pytest.UsageError("childwatch's anyio_backend is parametrised at collection")
        return request.param

    anyio_backend._childwatch_trio = trio  # type: ignore[attr-defined]
    return pytest.fixture(scope="module", name="anyio_backend")(tagged(anyio_backend))
