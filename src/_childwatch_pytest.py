"""childwatch's pytest11 entry point (the plugin named ``childwatch``).

It declares the plugin's command-line option, ini option and markers, then
loads :mod:`childwatch.pytest_plugin` and hands pytest its hooks and fixtures
(:mod:`childwatch.pytest_plugin.hooks`, :mod:`childwatch.pytest_plugin.fixtures`).
Where childwatch cannot be imported, or cannot work (no way to read a child's
exit status without reaping it), it stands in instead: the option and the
markers still exist, so command lines, ini files and ``--strict-markers`` keep
working; a test that asks for ``loop_impl``, ``loop_factory`` or ``run_on_loop``
is skipped with the reason; nothing else changes.  An installed childwatch never
stops a pytest run.  This module imports nothing from childwatch until then,
because importing any part of the package runs the package's ``__init__``.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest

INI = "childwatch_loop_impls"
ISOLATE_INI = "childwatch_isolate"
SKIP_UNSUPPORTED_INI = "childwatch_skip_unsupported"

MARKERS = (
    "childwatch_loops(*names): run this test only on these loop implementations "
    "(asyncio, uvloop, trio-asyncio, another loop the plugin knows, or a name given with --loop-impls)",
    "childwatch_requires(*capabilities, xfail=False, strict=None): skip (or xfail) this test where "
    "the loop it runs on lacks a capability: custom_watcher (alias set_child_watcher), subprocesses, "
    "a watcher class name such as PidfdChildWatcher, or a mechanism (pidfd, waitid, kqueue, sigchld)",
    "childwatch_skip(*names, reason=None): skip this test on these loop implementations "
    "(trio: anyio's trio backend)",
    "childwatch_xfail(*names, reason=None, strict=None): expect this test to fail on these loop "
    "implementations (trio: anyio's trio backend); it still runs",
    "childwatch_isolated: run this test in a pytest process of its own "
    "(the tests of a loop that patches asyncio, such as trio-asyncio, share one per loop)",
)


def add_options(parser: pytest.Parser) -> None:
    """The plugin's ``--loop-impls`` option and its ini default."""
    group = parser.getgroup("childwatch", "childwatch: loop implementations")
    group.addoption(
        "--loop-impls",
        dest="childwatch_loop_impls",
        default=None,
        metavar="NAMES",
        help="comma-separated loop implementations for tests using loop_impl / run_on_loop: "
        "asyncio, uvloop, trio-asyncio, a PyPI loop the plugin knows (rloop, veloxloop, uringcore, "
        "zuvloop, talyn, loopmini, rsloop, qasync, asyncio-gevent), 'all' (every installed one), "
        "or NAME=module:factory (default: asyncio and the installed ones of uvloop and trio-asyncio)",
    )
    parser.addini(INI, help="default for --loop-impls", default="")
    group.addoption(
        "--childwatch-isolate",
        dest="childwatch_isolate",
        default=None,
        metavar="NAMES",
        help="comma-separated loop implementations (or 'all') whose tests run in an isolated worker "
        "process, so that a crash of the loop fails one test and the session goes on",
    )
    parser.addini(ISOLATE_INI, help="default for --childwatch-isolate", default="")
    parser.addini(
        SKIP_UNSUPPORTED_INI,
        type="bool",
        default=True,
        help="a test that fails starting a subprocess on a loop whose capabilities() say it has "
        "none is skipped with that reason (false: it fails)",
    )


def add_markers(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)


def _unavailable() -> Optional[str]:
    """Why childwatch cannot serve tests here, or None."""
    try:
        from childwatch import _syscalls
    except Exception as exc:
        return f"childwatch cannot be imported here: {type(exc).__name__}: {exc}"
    if "waitid" in _syscalls.missing():
        return "childwatch cannot work here: this interpreter and platform have no waitid()"
    try:
        import childwatch.pytest_plugin  # noqa: F401
    except Exception as exc:
        return f"childwatch's pytest plugin cannot be imported here: {type(exc).__name__}: {exc}"
    return None


UNAVAILABLE = _unavailable()

if UNAVAILABLE is None:
    from childwatch.pytest_plugin.fixtures import loop_factory, loop_impl, run_on_loop
    from childwatch.pytest_plugin.hooks import (  # noqa: F401 (pytest reads them off this module)
        pytest_addoption,
        pytest_collection_modifyitems,
        pytest_configure,
        pytest_generate_tests,
        pytest_runtest_call,
        pytest_runtest_protocol,
        pytest_runtest_setup,
        pytest_runtest_teardown,
        pytest_sessionfinish,
        pytest_timeout_set_timer,
    )
else:

    def pytest_addoption(parser: pytest.Parser) -> None:
        add_options(parser)

    def pytest_configure(config: pytest.Config) -> None:
        add_markers(config)

    def _skip(*args: Any) -> Any:
        pytest.skip(str(UNAVAILABLE))

    loop_impl = pytest.fixture(name="loop_impl")(_skip)
    loop_factory = pytest.fixture(name="loop_factory")(_skip)
    run_on_loop = pytest.fixture(name="run_on_loop")(_skip)
