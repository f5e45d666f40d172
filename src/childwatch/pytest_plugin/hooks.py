"""The plugin's pytest hooks: where each piece of the plugin is called from.

The contract: the hooks act only on tests that use the plugin (its fixtures, its
markers, or the loop factories it hands to pytest-asyncio and anyio) and leave every
other test as it is.

* ``pytest_configure`` registers the markers and makes the config's state
  (:mod:`.state`); in an isolated worker it also adopts the parent's answers and
  registers the worker's side of the protocol (:class:`.worker.WorkerSession`).
* ``pytest_generate_tests`` parametrises the plugin's ``loop_impl`` and
  ``anyio_backend`` fixtures per loop (:mod:`.selection`, :mod:`.integrations`).
* ``pytest_collection_modifyitems`` skips, before setup, the tests whose loop cannot
  run here, and checks their ``childwatch_requires`` markers (:mod:`.requirements`).
* ``pytest_runtest_protocol`` runs a test in its isolated worker where it needs one
  (:mod:`.isolation`); ``pytest_sessionfinish`` stops the workers.
* ``pytest_runtest_setup`` applies ``childwatch_requires`` to a test about to run in
  this process (a worker's tests: in the worker).
"""

from __future__ import annotations

import importlib.util
from typing import Generator, List, Optional

import pytest

from . import catalog, requirements, state, worker
from .fixtures import ours
from .integrations import anyio_backends, skip_marks
from .selection import item_impl


def pytest_addoption(parser: pytest.Parser) -> None:
    from _childwatch_pytest import add_options

    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    from _childwatch_pytest import add_markers

    add_markers(config)
    channel = worker.channel_from_environment()
    inherited = worker.probed_from_environment()
    session = state.set_up(config, in_worker=channel is not None)
    if channel is not None:
        loops = session.selection.loops
        catalog.adopt({loops[name]: reason for name, reason in inherited.items() if name in loops})
        config.pluginmanager.register(worker.WorkerSession(config, *channel), "childwatch-worker")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config, definition = metafunc.config, metafunc.definition
    if ours(metafunc, "loop_impl") is not None:
        session = state.of(config)
        params = [
            pytest.param(name, id=name, marks=skip_marks(not_selected or session.unavailable_reason(name)))
            for name, not_selected in session.selection.for_item(definition)
        ]
        metafunc.parametrize("loop_impl", params, indirect=True)
    anyio_fixture = ours(metafunc, "anyio_backend")
    if anyio_fixture is not None:
        trio = bool(getattr(anyio_fixture, "_childwatch_trio", True))
        params = anyio_backends(config, definition, trio=trio)
        metafunc.parametrize("anyio_backend", params, indirect=True, scope="module")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: List[pytest.Item]
) -> None:
    loops = state.of(config).selection.loops
    for item in items:
        loop = loops.get(item_impl(item) or "asyncio")
        reason = None if loop is None else catalog.unavailable_reason(loop)
        if reason is not None:
            # Skipped before setup: a factory that skips from inside pytest-asyncio's
            # runner fixture leaves that fixture's cache broken for the next items.
            item.add_marker(pytest.mark.skip(reason=reason))
        requirements.check(item)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]) -> Optional[bool]:
    """Run ``item`` in its worker if it needs one (see :func:`.isolation.worker_for`)."""
    plugin = state.of(item.config)
    if plugin.in_worker or not plugin.isolation.run(item, nextitem, plugin.selection.loops):
        return None
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Apply ``childwatch_requires`` before pytest reads the skip and xfail marks (a failure
    to learn the loop's capabilities is the test's setup error)."""
    impl = item_impl(item) or "asyncio"  # "trio": anyio's trio backend
    loop = state.of(item.config).selection.loops.get(impl)
    if item.get_closest_marker("skip") is None and (
        importlib.util.find_spec("trio") is not None if impl == "trio" else loop is not None
    ):
        requirements.apply(item, impl, loop)
    return (yield)


def pytest_sessionfinish(session: pytest.Session) -> None:
    state.of(session.config).isolation.stop()
