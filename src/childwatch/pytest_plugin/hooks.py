"""The plugin's pytest hooks: where each piece of the plugin is called from.

The contract: the hooks act only on tests that use the plugin (its fixtures, its
markers, or the loop factories it hands to pytest-asyncio and anyio) and leave every
other test as it is.

* ``pytest_configure`` registers the markers and makes the config's state
  (:mod:`.state`); in an isolated worker it also adopts the parent's answers and
  registers the worker's side of the protocol (:class:`.worker.WorkerSession`).
* ``pytest_generate_tests`` parametrises the plugin's ``loop_impl`` and
  ``anyio_backend`` fixtures per loop (:mod:`.selection`, :mod:`.integrations`), once per
  test: a test that pytest-asyncio runs on the plugin's loop factories, or that uses the
  plugin's ``anyio_backend``, gets no ``loop_impl`` parametrisation of its own (but the one
  loop's, for its id, where pytest-asyncio hides it).
* ``pytest_collection_modifyitems`` checks the markers (:mod:`.requirements`,
  :mod:`.loop_marks`) and skips, before setup, the tests whose loop is not selected for
  them or cannot run here (:meth:`.state.State.skip_reason`), else applies
  ``childwatch_skip`` and ``childwatch_xfail``: alike whichever integration runs the test.
* ``pytest_runtest_protocol`` runs a test in its isolated worker where it needs one
  (:mod:`.isolation`); ``pytest_sessionfinish`` stops the workers.
* ``pytest_runtest_setup`` applies ``childwatch_requires`` to a test about to run in
  this process (a worker's tests: in the worker); it, ``pytest_runtest_call`` and
  ``pytest_runtest_teardown`` turn a test the watchdog stopped into pytest-timeout's failure;
  ``pytest_runtest_call`` also turns a failure to start a subprocess on a
  loop without any into a skip (:mod:`.requirements`).
* ``pytest_timeout_set_timer`` (pytest-timeout's) lets :mod:`.watchdog` time the tests on
  loops that swallow pytest-timeout's signal.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Generator, List, Optional

import pytest

from . import catalog, integrations, loop_marks, requirements, state, watchdog, worker
from .fixtures import ours
from .selection import TRIO, item_impl


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
        config.pluginmanager.register(worker.WorkerSession(config, channel), "childwatch-worker")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise the plugin's ``anyio_backend``, else ``loop_impl``, per loop: after
    pytest-asyncio's (``tryfirst``), so that a test it runs on the plugin's loop factories is
    not parametrised again (:func:`_name_the_one_loop`); before the test's own
    ``parametrize`` marks (pytest's, registered first, runs last), so that the loop comes
    first in the id (``test_x[uvloop-0]``)."""
    config, definition = metafunc.config, metafunc.definition
    anyio_fixture = ours(metafunc, "anyio_backend")
    pytest_asyncio_loops = integrations.pytest_asyncio_loops(definition)
    if anyio_fixture is not None:
        how = getattr(anyio_fixture, "_childwatch_anyio", {})
        params = integrations.anyio_backends(
            config, definition, trio=how.get("trio", True), options=how.get("options", {})
        )
        metafunc.parametrize("anyio_backend", params, indirect=True, scope=how.get("scope", "function"))
    elif pytest_asyncio_loops is not None:
        _name_the_one_loop(metafunc, pytest_asyncio_loops)
    elif ours(metafunc, "loop_impl") is not None:
        params = [pytest.param(name, id=name) for name, _ in state.of(config).selection.for_item(definition)]
        metafunc.parametrize("loop_impl", params, indirect=True)


def _name_the_one_loop(metafunc: pytest.Metafunc, loops: List[str]) -> None:
    """pytest-asyncio (on pytest 8.4+) hides the id of a test it runs on one loop factory:
    parametrise ``loop_impl`` (where the test has no ``loop_impl`` of its own) with that
    one loop, so that the id names it (``test_x[asyncio]``) whatever the selection."""
    if len(loops) != 1 or not hasattr(pytest, "HIDDEN_PARAM"):
        return
    if "loop_impl" in metafunc.fixturenames:
        if ours(metafunc, "loop_impl") is None:
            return
    else:
        metafunc.fixturenames.append("loop_impl")
    metafunc.parametrize("loop_impl", [pytest.param(loops[0], id=loops[0])])


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: List[pytest.Item]
) -> None:
    """Check the plugin's markers, and skip or xfail before setup the tests whose loop says
    so: not selected for the test, cannot run here, ``childwatch_skip``, ``childwatch_xfail``."""
    plugin = state.of(config)
    for item in items:
        requirements.check(item)
        loop_marks.check(item, plugin.selection.loops)
        impl = item_impl(item)
        if impl is None:
            continue
        reason = plugin.skip_reason(item, impl)
        if reason is not None:
            # Skipped before setup: a factory that skips from inside pytest-asyncio's
            # runner fixture leaves that fixture's cache broken for the next items.
            item.add_marker(pytest.mark.skip(reason=reason))
        else:
            loop_marks.apply(item, impl)


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
    impl = item_impl(item) or "asyncio"  # TRIO: anyio's trio backend
    loop = state.of(item.config).selection.loops.get(impl)
    if item.get_closest_marker("skip") is None and (
        importlib.util.find_spec("trio") is not None if impl == TRIO else loop is not None
    ):
        requirements.apply(item, impl, loop)
    try:
        return (yield)
    except BaseException as exc:
        watchdog.raise_if_stopped(item, exc)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Fail a test the plugin's watchdog stopped with pytest-timeout's failure
    (:func:`.watchdog.raise_if_stopped`, also in setup and teardown); skip a test that failed
    starting a subprocess where its loop has none (:func:`.requirements.unsupported`)."""
    try:
        return (yield)
    except BaseException as exc:
        watchdog.raise_if_stopped(item, exc)
        impl = item_impl(item)
        if impl is None or not isinstance(exc, Exception):
            raise
        reason = requirements.unsupported(item, impl, state.of(item.config).selection.loops.get(impl), exc)
        if reason is None:
            raise
        pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """Fail a teardown the plugin's watchdog stopped with pytest-timeout's failure."""
    try:
        return (yield)
    except BaseException as exc:
        watchdog.raise_if_stopped(item, exc)
        raise


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Optional[bool]:
    """pytest-timeout's hook: the plugin's watchdog times a test on a loop that swallows
    pytest-timeout's signal (:func:`.watchdog.take_over`); pytest-timeout times the others."""
    plugin = state.of(item.config)
    return watchdog.take_over(item, settings, plugin.selection.loops, plugin.in_worker) or None


def pytest_sessionfinish(session: pytest.Session) -> None:
    state.of(session.config).isolation.stop()
