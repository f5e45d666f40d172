"""The childwatch pytest plugin: run tests once per event loop implementation.

Registered through the ``pytest11`` entry point, so it is active wherever
childwatch is installed, and inert until a test uses it: it adds no autouse
fixture, and its hooks only act on tests that request :func:`loop_impl` (or a
fixture that depends on it), that carry one of its markers, or that are
parametrised with the loop factories it hands to pytest-asyncio or anyio.
Importing it imports neither uvloop nor trio nor trio-asyncio.

What it provides:

* fixtures ``loop_impl`` (the name of the loop implementation under test),
  ``loop_factory`` (a zero-argument callable making a fresh loop of it) and
  ``run_on_loop`` (runs a coroutine function on a fresh loop of it, then closes
  the loop); a test that requests any of them runs once per selected
  implementation, with ids such as ``test_x[uvloop]``;
* ``--loop-impls`` / the ``childwatch_loop_impls`` ini option selecting the
  implementations (default: ``asyncio`` and every installed one);
* markers ``childwatch_loops(*names)`` (restrict a test to some
  implementations), ``childwatch_requires(*capabilities, xfail=False,
  strict=None)`` (skip or xfail where the loop lacks a capability, as told by
  :func:`childwatch.capabilities`) and ``childwatch_isolated`` (run the test in
  a pytest process of its own: a worker for that test only);
* :func:`loop_factories` for pytest-asyncio's ``pytest_asyncio_loop_factories``
  hook, and :func:`anyio_backend_fixture` / :func:`anyio_backends` for anyio's
  ``anyio_backend`` fixture.

trio-asyncio patches asyncio for the whole process when it is imported, so the
test items that run on it are run in an isolated worker: one pytest process per
session (per xdist worker) for each such loop, started on first use and fed item
after item; an item marked ``childwatch_isolated`` gets a worker of its own.
Their reports are replayed in the main process as if they had run there
(:mod:`childwatch._pytest_worker`).
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import importlib
import importlib.util
import re
import subprocess
import sys
import threading
import warnings
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
)

import pytest

from . import _pytest_worker
from ._pytest_worker import Worker

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet

    from .capabilities import Capabilities

__all__ = [
    "KNOWN_LOOP_IMPLS",
    "LoopFactory",
    "LoopRunner",
    "anyio_backend_fixture",
    "anyio_backends",
    "loop_factories",
    "loop_factory",
    "loop_impl",
    "run_on_loop",
    "selected_loop_impls",
    "unavailable_reason",
]

T = TypeVar("T")

KNOWN_LOOP_IMPLS: Tuple[str, ...] = ("asyncio", "uvloop", "trio-asyncio")
"""The loop implementations the plugin knows by name."""

_MODULES = {"uvloop": "uvloop", "trio-asyncio": "trio_asyncio"}
_NEEDS_ISOLATION = frozenset({"trio-asyncio"})
_CUSTOM = re.compile(r"^([A-Za-z0-9_.-]+)=([A-Za-z_][\w.]*):([A-Za-z_][\w.]*)$")
_ALIASES = {"set_child_watcher": "custom_watcher"}


# -- per-session state ----------------------------------------------------------------


@dataclasses.dataclass
class _Plan:
    """Where the items of a session that run in shared workers are, in run order."""

    items: List[pytest.Item]
    index: Dict[pytest.Item, int]
    positions: Dict[str, List[int]]
    """Shared worker name (a loop in ``_NEEDS_ISOLATION``) → indices of its items."""

    def next_for(self, worker: str, nextitem: Optional[pytest.Item]) -> Optional[str]:
        """The node id of the first item of ``worker`` from ``nextitem`` on (None: there is none).

        Exact under pytest's own run loop; under pytest-xdist, which hands each process
        only some of the items, a guess that the worker corrects (see :mod:`._pytest_worker`).
        """
        start = self.index.get(nextitem) if nextitem is not None else None
        if start is None:
            return None
        positions = self.positions.get(worker, [])
        at = bisect.bisect_left(positions, start)
        return self.items[positions[at]].nodeid if at < len(positions) else None


@dataclasses.dataclass
class _State:
    selected: List[str]
    custom: Dict[str, Tuple[str, str]]
    in_worker: bool = False
    """Set in an isolated worker: everything runs in place there."""
    plan: Optional[_Plan] = None
    workers: Dict[str, Worker] = dataclasses.field(default_factory=dict)
    own_processes: int = 0


_states: weakref.WeakKeyDictionary[pytest.Config, _State] = weakref.WeakKeyDictionary()
_custom_factories: Dict[str, Tuple[str, str]] = {}
_lock = threading.Lock()
_unavailable: Dict[str, Optional[str]] = {}
_capabilities: Dict[str, Capabilities] = {}


def _state(config: pytest.Config) -> _State:
    state = _states.get(config)
    if state is None:  # a config this plugin never configured (e.g. loaded late)
        state = _states[config] = _parse_selection(config)
    return state


def _parse_selection(config: pytest.Config) -> _State:
    raw: Optional[str] = config.getoption("childwatch_loop_impls", default=None)
    if not raw:
        raw = str(config.getini(_ini()) or "")
    tokens = [token for token in re.split(r"[,\s]+", raw) if token]
    custom: Dict[str, Tuple[str, str]] = {}
    if not tokens:
        selected = ["asyncio"] + [
            name for name in KNOWN_LOOP_IMPLS[1:] if _find_spec(_MODULES[name]) is not None
        ]
        return _State(selected, custom)
    selected = []
    for token in tokens:
        names: Iterable[str]
        match = _CUSTOM.match(token)
        if token == "all":
            names = KNOWN_LOOP_IMPLS
        elif match:
            name, module, attr = match.groups()
            if name in KNOWN_LOOP_IMPLS:
                raise pytest.UsageError(
                    f"--loop-impls: {name!r} is built in; give a custom loop another name"
                )
            custom[name] = (module, attr)
            names = [name]
        elif token in KNOWN_LOOP_IMPLS:
            names = [token]
        else:
            raise pytest.UsageError(
                f"--loop-impls: unknown loop implementation {token!r}; known: {', '.join(KNOWN_LOOP_IMPLS)}, "
                "'all', or NAME=module:factory for another loop"
            )
        selected.extend(name for name in names if name not in selected)
    return _State(selected, custom)


def _find_spec(module: str) -> Any:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def selected_loop_impls(config: pytest.Config) -> List[str]:
    """The loop implementations selected by ``--loop-impls`` / ``childwatch_loop_impls``.

    Default: ``asyncio`` and every installed one of uvloop and trio-asyncio.
    ``all`` names every known one (those not installed are then skipped, with the reason).
    """
    return list(_state(config).selected)


def _restricted(config: pytest.Config, item: Any) -> List[Tuple[str, Optional[str]]]:
    """(name, reason to skip or None) for each implementation ``item`` runs on."""
    selected = _state(config).selected
    marker = item.get_closest_marker("childwatch_loops") if item is not None else None
    if marker is None:
        return [(name, None) for name in selected]
    names = list(marker.args)
    if not names or not all(isinstance(name, str) for name in names):
        raise pytest.UsageError(f"{item.nodeid}: childwatch_loops takes loop implementation names")
    known = set(KNOWN_LOOP_IMPLS) | set(_state(config).custom)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise pytest.UsageError(
            f"{item.nodeid}: childwatch_loops names unknown loop implementations {unknown}; "
            f"known: {', '.join(sorted(known))}"
        )
    return [
        (name, None if name in selected else f"{name} is not selected (--loop-impls / {_ini()})")
        for name in names
    ]


# -- availability -------------------------------------------------------------------


def unavailable_reason(impl: str) -> Optional[str]:
    """Why loop implementation ``impl`` cannot run here (not installed, cannot be imported), or None.

    trio-asyncio is probed in a separate process (importing it patches asyncio);
    isolated workers inherit the answers of the main process.  Results are cached.
    """
    with _lock:
        if impl in _unavailable:
            return _unavailable[impl]
    reason = _probe(impl)
    with _lock:
        _unavailable[impl] = reason
    return reason


def _probe(impl: str) -> Optional[str]:
    if impl == "asyncio":
        return None
    if impl in _custom_factories:
        try:
            _load_custom(impl)
        except Exception as exc:
            return f"{impl} cannot be loaded: {type(exc).__name__}: {exc}"
        return None
    module = _MODULES.get(impl)
    if module is None:
        return f"unknown loop implementation {impl!r}"
    if _find_spec(module) is None:
        return f"{impl} is not installed"
    if impl in _NEEDS_ISOLATION and module not in sys.modules:
        return _probe_in_subprocess(impl, module)
    try:
        _import(module)
    except Exception as exc:  # ImportError, or what a too-new asyncio makes it raise
        return f"{impl} cannot be imported on Python {_python()}: {type(exc).__name__}: {exc}"
    return None


def _probe_in_subprocess(impl: str, module: str) -> Optional[str]:
    code = f"import warnings; warnings.simplefilter('ignore'); import {module}"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{impl}: importing {module} in a subprocess timed out"
    if proc.returncode == 0:
        return None
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    last = lines[-1] if lines else f"exit status {proc.returncode}"
    return f"{impl} cannot be imported on Python {_python()}: {last}"


def _python() -> str:
    return ".".join(map(str, sys.version_info[:2]))


def _import(module: str) -> Any:
    # trio-asyncio subclasses asyncio's deprecated child watcher at import
    # (a DeprecationWarning on 3.12/3.13) — not the test's doing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(module)


def _load_custom(impl: str) -> Callable[[], asyncio.AbstractEventLoop]:
    module_name, attr = _custom_factories[impl]
    obj: Any = _import(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{module_name}:{attr} is not callable")
    factory: Callable[[], asyncio.AbstractEventLoop] = obj
    return factory


# -- loops --------------------------------------------------------------------------


def _stdlib_loop() -> asyncio.AbstractEventLoop:
    cls: Any = getattr(asyncio, "EventLoop", None) or asyncio.SelectorEventLoop  # EventLoop: 3.13+
    loop: asyncio.AbstractEventLoop = cls()
    return loop


def _trio_asyncio_loop() -> asyncio.AbstractEventLoop:
    # trio-asyncio's synchronous loop (trio in a greenlet), the one run_until_complete
    # works on; made directly, since a test runner may have replaced the policy
    # trio-asyncio installs at import.
    _import("trio_asyncio")
    loop: asyncio.AbstractEventLoop = _import("trio_asyncio._sync").SyncTrioEventLoop()
    return loop


@dataclasses.dataclass(frozen=True)
class LoopFactory:
    """A zero-argument callable making a fresh event loop of implementation ``impl``.

    Made lazily: nothing is imported until it is called.  Called where the
    implementation is unavailable, it skips the test with the reason.  The
    trio-asyncio loop it makes is trio-asyncio's synchronous loop (the one
    ``loop.run_until_complete`` works on); tests given one are run in the
    isolated worker.
    """

    impl: str

    def __call__(self) -> asyncio.AbstractEventLoop:
        reason = unavailable_reason(self.impl)
        if reason is not None:
            pytest.skip(reason)
        if self.impl == "asyncio":
            return _stdlib_loop()
        if self.impl == "uvloop":
            loop: asyncio.AbstractEventLoop = _import("uvloop").new_event_loop()
            return loop
        if self.impl == "trio-asyncio":
            return _trio_asyncio_loop()
        return _load_custom(self.impl)()

    def __repr__(self) -> str:
        return f"LoopFactory({self.impl!r})"


class LoopRunner:
    """Runs coroutine functions on fresh loops of one implementation (the ``run_on_loop`` fixture)."""

    def __init__(self, impl: str) -> None:
        self.impl = impl
        self.factory = LoopFactory(impl)

    def __repr__(self) -> str:
        return f"LoopRunner({self.impl!r})"

    def __call__(self, fn: Callable[..., Awaitable[T]], *args: Any, timeout: Optional[float] = None) -> T:
        """Run ``await fn(*args)`` on a new loop, bounded by ``timeout`` seconds; close the loop.

        Leftover tasks are cancelled and async generators and the default
        executor shut down before the loop is closed.  trio-asyncio runs the
        coroutine under ``trio.run`` inside ``trio_asyncio.open_loop()``.
        """

        async def main() -> T:
            if timeout is None:
                return await fn(*args)
            return await asyncio.wait_for(_awaited(fn, args), timeout)

        reason = unavailable_reason(self.impl)
        if reason is not None:
            pytest.skip(reason)
        if self.impl == "trio-asyncio":
            return _run_trio_asyncio(main)
        loop = self.factory()
        try:
            return loop.run_until_complete(main())
        finally:
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()


async def _awaited(fn: Callable[..., Awaitable[T]], args: Sequence[Any]) -> T:
    return await fn(*args)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def _run_trio_asyncio(main: Callable[[], Awaitable[T]]) -> T:
    trio_asyncio = _import("trio_asyncio")
    trio = _import("trio")
    outcome: List[Any] = []

    async def in_trio() -> None:
        async with trio_asyncio.open_loop():
            # Caught here, so that it is not wrapped in the ExceptionGroup of open_loop's nursery.
            try:
                outcome.append((True, await trio_asyncio.aio_as_trio(main)()))
            except Exception as exc:
                outcome.append((False, exc))

    trio.run(in_trio)
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result


# -- helpers for pytest-asyncio and anyio ----------------------------------------


def loop_factories(config: pytest.Config, item: Optional[pytest.Item] = None) -> Dict[str, LoopFactory]:
    """The selected loop implementations as the mapping pytest-asyncio's
    ``pytest_asyncio_loop_factories(config, item)`` hook returns: name → factory.

    ``item`` (the hook's) applies its ``childwatch_loops`` marker.  Unavailable
    implementations stay in the mapping (so the test ids do not depend on the
    machine) and skip their tests with the reason.
    """
    return {name: LoopFactory(name) for name, _ in _restricted(config, item)}


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
    params: List[ParameterSet] = []
    for name, not_selected in _restricted(config, item):
        backend: Any
        if name == "asyncio":
            backend = "asyncio"
        elif name == "uvloop":
            backend = ("asyncio", {"use_uvloop": True})
        else:
            backend = ("asyncio", {"loop_factory": LoopFactory(name)})
        reason = not_selected or unavailable_reason(name)
        params.append(
            pytest.param(backend, id=name, marks=[pytest.mark.skip(reason=reason)] if reason else [])
        )
    if trio:
        reason = None if _find_spec("trio") is not None else "trio is not installed"
        params.append(
            pytest.param("trio", id="trio", marks=[pytest.mark.skip(reason=reason)] if reason else [])
        )
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

    anyio_backend._childwatch_fixture = True  # type: ignore[attr-defined]
    anyio_backend._childwatch_trio = trio  # type: ignore[attr-defined]
    return pytest.fixture(scope="module", name="anyio_backend")(anyio_backend)


# -- fixtures -------------------------------------------------------------------------


def _tagged(func: Callable[..., T]) -> Callable[..., T]:
    func._childwatch_fixture = True  # type: ignore[attr-defined]
    return func


@pytest.fixture
@_tagged
def loop_impl(request: pytest.FixtureRequest) -> str:
    """The name of the loop implementation this test runs on (``asyncio``, ``uvloop``, ``trio-asyncio``, …).

    Requesting it (directly or through ``loop_factory`` / ``run_on_loop``) runs
    the test once per implementation selected by ``--loop-impls``.
    """
    param: Optional[str] = getattr(request, "param", None)
    if param is None:
        raise pytest.UsageError(
            "loop_impl is parametrised at collection: request it as a test argument, "
            "not with request.getfixturevalue()"
        )
    reason = unavailable_reason(param)
    if reason is not None:
        pytest.skip(reason)
    return param


@pytest.fixture
def loop_factory(loop_impl: str) -> LoopFactory:
    """A zero-argument callable making a fresh loop of this test's implementation
    (for ``asyncio.run(main(), loop_factory=...)``, ``asyncio.Runner``, …); closing it is up to you."""
    return LoopFactory(loop_impl)


@pytest.fixture
def run_on_loop(loop_impl: str) -> LoopRunner:
    """``run_on_loop(async_fn, *args, timeout=None)`` runs ``async_fn(*args)`` on a fresh
    loop of this test's implementation, closes the loop and returns the result."""
    return LoopRunner(loop_impl)


# -- hooks ----------------------------------------------------------------------------


def _ini() -> str:
    # The entry point module declares the options and markers (imported here,
    # not at the top: it imports this module).
    from _childwatch_pytest import INI

    return INI


def pytest_addoption(parser: pytest.Parser) -> None:
    from _childwatch_pytest import add_options

    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    from _childwatch_pytest import add_markers

    add_markers(config)
    state = _parse_selection(config)
    channel = _pytest_worker.channel_from_environment()
    probed = _pytest_worker.probed_from_environment()
    if channel is not None:
        state.in_worker = True
        with _lock:
            for impl, reason in probed.items():
                _unavailable.setdefault(impl, reason)
        config.pluginmanager.register(_pytest_worker.WorkerSession(config, *channel), "childwatch-worker")
    _states[config] = state
    with _lock:
        _custom_factories.update(state.custom)


def _our_fixture(metafunc: pytest.Metafunc, name: str) -> Optional[Callable[..., Any]]:
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config, definition = metafunc.config, metafunc.definition
    if _our_fixture(metafunc, "loop_impl") is not None:
        params = [
            pytest.param(name, id=name, marks=[pytest.mark.skip(reason=reason)] if reason else [])
            for name, not_selected in _restricted(config, definition)
            for reason in [not_selected or unavailable_reason(name)]
        ]
        metafunc.parametrize("loop_impl", params, indirect=True)
    anyio_fixture = _our_fixture(metafunc, "anyio_backend")
    if anyio_fixture is not None:
        trio = bool(getattr(anyio_fixture, "_childwatch_trio", True))
        params = anyio_backends(config, definition, trio=trio)
        metafunc.parametrize("anyio_backend", params, indirect=True, scope="module")


def _impl_of(key: str, value: Any) -> Optional[str]:
    if isinstance(value, LoopFactory):
        return value.impl
    if key == "loop_impl" and isinstance(value, str):
        return value
    if key == "anyio_backend":
        backend, options = (value, {}) if isinstance(value, str) else (value[0], value[1])
        if isinstance(options, Mapping):
            factory = options.get("loop_factory")
            if isinstance(factory, LoopFactory):
                return factory.impl
            if backend == "asyncio" and options.get("use_uvloop"):
                return "uvloop"
        if backend in ("asyncio", "trio"):
            return str(backend)
    return None


def _item_impl(item: pytest.Item) -> Optional[str]:
    """The loop implementation ``item`` runs on, if this plugin can tell."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    params: Mapping[str, Any] = callspec.params
    if "loop_impl" in params:
        return _impl_of("loop_impl", params["loop_impl"])
    for key, value in params.items():
        try:
            impl = _impl_of(key, value)
        except (TypeError, IndexError, KeyError):
            continue
        if impl is not None:
            return impl
    return None


def _isolation(item: pytest.Item) -> Optional[str]:
    """Where ``item`` runs, if not in this process: the name of the loop whose shared
    worker runs it, or ``""`` for a worker of its own (``childwatch_isolated``)."""
    if item.get_closest_marker("skip") is not None:
        return None  # skipped without running anything
    if item.get_closest_marker("childwatch_isolated") is not None:
        return ""
    impl = _item_impl(item)
    return impl if impl in _NEEDS_ISOLATION and unavailable_reason(impl) is None else None


def _capabilities_of(impl: str) -> Capabilities:
    with _lock:
        if impl in _capabilities:
            return _capabilities[impl]
    from .capabilities import capabilities, trio_capabilities

    if impl == "trio":
        caps = trio_capabilities()
    else:

        async def probe() -> Capabilities:
            return capabilities()

        caps = LoopRunner(impl)(probe, timeout=60)
    with _lock:
        _capabilities[impl] = caps
    return caps


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


def _apply_requirements(item: pytest.Item) -> None:
    marks = list(item.iter_markers("childwatch_requires"))
    if not marks:
        return
    impl = _item_impl(item) or "asyncio"
    if impl == "trio" and importlib.util.find_spec("trio") is None:
        return  # anyio skips it: trio is not installed
    if impl != "trio" and unavailable_reason(impl) is not None:
        return  # skipped anyway
    caps = _capabilities_of(impl)
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
        reason = f"{caps.loop} lacks " + "; ".join(missing)
        if mark.kwargs.get("xfail", False):
            kwargs: Dict[str, Any] = {"reason": reason, "run": True}
            if mark.kwargs.get("strict") is not None:
                kwargs["strict"] = bool(mark.kwargs["strict"])
            item.add_marker(pytest.mark.xfail(**kwargs))
        else:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: List[pytest.Item]
) -> None:
    state = _state(config)
    for item in items:
        reason = _unavailable_factory(item)
        if reason is not None:
            # Skipped before setup: a factory that skips from inside pytest-asyncio's
            # runner fixture leaves that fixture's cache broken for the next items.
            item.add_marker(pytest.mark.skip(reason=reason))
            continue
        if not state.in_worker and _isolation(item) is not None:
            continue  # its worker decides
        _apply_requirements(item)


def _unavailable_factory(item: pytest.Item) -> Optional[str]:
    """Why a :class:`LoopFactory` this item is parametrised with cannot run here, or None."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    for value in callspec.params.values():
        candidates = [value]
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Mapping):
            candidates.append(value[1].get("loop_factory"))
        for candidate in candidates:
            if isinstance(candidate, LoopFactory):
                reason = unavailable_reason(candidate.impl)
                if reason is not None:
                    return reason
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]) -> Optional[bool]:
    """Run ``item`` in its worker if it needs one (see :func:`_isolation`)."""
    state = _state(item.config)
    name = None if state.in_worker else _isolation(item)
    if name is None:
        return None
    with _lock:
        probed = dict(_unavailable)
    if name == "":
        state.own_processes += 1
        own = _pytest_worker.Worker(item.config, f"isolated-{state.own_processes}", [str(item.path)])
        try:
            own.run(item, nextitem, None, probed)
        finally:
            own.stop()
        return True
    plan = state.plan
    if plan is None:
        plan = state.plan = _plan(item.session.items)
    worker = state.workers.get(name)
    if worker is None:
        at_positions = plan.positions.get(name, [])
        modules = dict.fromkeys([str(item.path), *(str(plan.items[at].path) for at in at_positions)])
        worker = state.workers[name] = _pytest_worker.Worker(item.config, name, list(modules))
    worker.run(item, nextitem, plan.next_for(name, nextitem), probed)
    return True


def _plan(items: Sequence[pytest.Item]) -> _Plan:
    positions: Dict[str, List[int]] = {}
    for at, item in enumerate(items):
        name = _isolation(item)
        if name:
            positions.setdefault(name, []).append(at)
    return _Plan(list(items), {item: at for at, item in enumerate(items)}, positions)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the shared workers (they report errors tearing down what they still hold)."""
    state = _state(session.config)
    state.plan = None
    workers, state.workers = state.workers, {}
    for worker in workers.values():
        worker.stop()
