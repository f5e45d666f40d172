"""The pytest plugin, exercised through pytester in separate pytest processes.

Every run here is a real ``python -m pytest`` subprocess (``runpytest_subprocess``):
the suites under test create real loops and real children, and trio-asyncio
must not be imported into this process.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

import childwatch
from childwatch._probe_loop import THIRD_PARTY
from childwatch.pytest_plugin import KNOWN_LOOP_IMPLS

RUN_TIMEOUT = 600.0
DEFAULT = ("asyncio", "uvloop", "trio-asyncio")
"""The default selection, those installed (a suite with every PyPI loop installed runs no more)."""
MODULES = {
    "asyncio": "asyncio",
    "uvloop": "uvloop",
    "trio-asyncio": "trio_asyncio",
    **{module.replace("_", "-"): module for module in THIRD_PARTY},  # asyncio-gevent: asyncio_gevent
}
"""Every loop the plugin knows, and the module it needs."""
ISOLATED = {"trio-asyncio", "rsloop", "qasync", "asyncio-gevent"}
"""The loops that patch asyncio or the process, whose tests run in an isolated worker."""


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def pytest_asyncio_ok() -> bool:
    if sys.version_info < (3, 10) or not installed("pytest_asyncio"):
        return False
    from importlib.metadata import version

    major, minor = (int(part) for part in version("pytest-asyncio").split(".")[:2])
    return (major, minor) >= (1, 4)


HAVE_PYTEST_ASYNCIO = pytest_asyncio_ok()
needs_pytest_asyncio = pytest.mark.skipif(
    not HAVE_PYTEST_ASYNCIO, reason="pytest-asyncio >= 1.4 (Python >= 3.10) is not installed"
)
needs_anyio = pytest.mark.skipif(not installed("anyio"), reason="anyio is not installed")


def default_impls() -> List[str]:
    return [name for name in DEFAULT if installed(MODULES[name])]


def all_impls() -> List[str]:
    """What ``--loop-impls=all`` selects here: every known loop that is installed."""
    return [name for name in MODULES if installed(MODULES[name])]


@functools.cache
def _reasons() -> Dict[str, Optional[str]]:
    # Asked in a fresh process: making the PyPI loops here would leave their process-wide
    # fds and threads (or, for the isolated ones, their patches) in this one.
    code = (
        "import json\n"
        "from childwatch.pytest_plugin import KNOWN_LOOP_IMPLS, unavailable_reason\n"
        "print(json.dumps({name: unavailable_reason(name) for name in KNOWN_LOOP_IMPLS}))"
    )
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=600, check=True
    )
    reasons: Dict[str, Optional[str]] = json.loads(out.stdout.splitlines()[-1])
    return reasons


def unavailable_reason(name: str) -> Optional[str]:
    """The plugin's :func:`childwatch.pytest_plugin.unavailable_reason`, asked in a fresh process."""
    return _reasons()[name]


def available(name: str) -> bool:
    return unavailable_reason(name) is None


needs_trio_asyncio = pytest.mark.skipif(
    not available("trio-asyncio"), reason=str(unavailable_reason("trio-asyncio"))
)
needs_xdist = pytest.mark.skipif(not installed("xdist"), reason="pytest-xdist is not installed")


INI = """
[pytest]
addopts = -p no:randomly -p no:cacheprovider --strict-markers -v -rA
filterwarnings = error{warnings}
timeout = 300
"""


def write_ini(pytester: pytest.Pytester, extra: str = "", warnings: str = "") -> None:
    """The suite's pytest.ini; ``warnings``: further ``filterwarnings`` lines."""
    ini = INI.format(warnings=warnings)
    ini += "asyncio_default_fixture_loop_scope = function\n" if HAVE_PYTEST_ASYNCIO else ""
    pytester.makefile(".ini", pytest=ini + extra)


@pytest.fixture(autouse=True)
def same_output_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest prints whole short-summary lines where ``CI`` or ``BUILD_NUMBER`` is set (CI did,
    this machine did not, and a message counted twice there); the inner runs here print alike."""
    for name in ("CI", "BUILD_NUMBER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    write_ini(pytester)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, timeout=RUN_TIMEOUT)


_LINE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|XFAIL|XPASS|ERROR)\b")


def outcomes(result: pytest.RunResult) -> Dict[str, str]:
    """node id → outcome, from the ``-v`` progress lines."""
    found: Dict[str, str] = {}
    for line in result.outlines:
        match = _LINE.match(line)
        if match:
            found.setdefault(match.group(1), match.group(2))
    return found


def expected_outcome(name: str) -> str:
    return "PASSED" if available(name) else "SKIPPED"


# -- registration and inertness -------------------------------------------------


def test_importing_the_plugin_imports_no_loop() -> None:
    code = textwrap.dedent(
        """
        import sys
        import childwatch.pytest_plugin
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("uvloop", "trio", "trio_asyncio"))
        assert not loaded, loaded
        """
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=120)


def test_registered_through_the_entry_point(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_nothing="def test_nothing(): pass")
    result = run(suite)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["plugins: *childwatch-*"])
    result = run(suite, "--fixtures")
    result.stdout.fnmatch_lines(
        ["loop_impl -- *", "loop_factory -- *", "run_on_loop -- *"], consecutive=False
    )
    result = run(suite, "--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.childwatch_loops(*names):*",
            "@pytest.mark.childwatch_requires(*capabilities,*",
            "@pytest.mark.childwatch_skip(*names, reason=None):*",
            "@pytest.mark.childwatch_xfail(*names, reason=None, strict=None):*",
            "@pytest.mark.childwatch_isolated:*",
        ]
    )


def test_inert_for_a_suite_that_does_not_use_it(suite: pytest.Pytester) -> None:
    """Own fixtures named like ours, own parametrisation, plain asyncio: nothing changes."""
    suite.makeconftest(
        """
        import pytest

        @pytest.fixture
        def loop_impl():
            return "mine"
        """
    )
    suite.makepyfile(
        test_plain="""
        import asyncio, sys, pytest

        def test_own_fixture(loop_impl, request):
            assert loop_impl == "mine"
            assert not hasattr(request.node, "callspec")

        @pytest.mark.parametrize("loop_factory", ["x", "y"])
        def test_own_parametrisation(loop_factory):
            assert loop_factory in ("x", "y")

        def test_plain(request):
            assert not {"run_on_loop", "loop_factory"} & set(request.fixturenames)
            assert not {"uvloop", "trio_asyncio"} & set(sys.modules)

            async def main():
                return type(asyncio.get_running_loop()).__module__

            assert asyncio.run(main()).startswith("asyncio")
        """
    )
    result = run(suite)
    result.assert_outcomes(passed=4)
    assert set(outcomes(result)) == {
        "test_plain.py::test_own_fixture",
        "test_plain.py::test_own_parametrisation[x]",
        "test_plain.py::test_own_parametrisation[y]",
        "test_plain.py::test_plain",
    }
    result = run(suite, "-p", "no:childwatch")
    result.assert_outcomes(passed=4)


# -- the loop matrix ----------------------------------------------------------------

MATRIX = """
import asyncio, os, sys
import childwatch
import pytest

FAMILY = {"asyncio": "asyncio", "uvloop": "uvloop", "trio-asyncio": "trio_asyncio"}


async def running_module():
    return type(asyncio.get_running_loop()).__module__


async def spawn(code):
    proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
    return await proc.wait()


async def family():
    return childwatch.capabilities().loop


def test_matrix(run_on_loop, loop_impl):
    assert run_on_loop.impl == loop_impl
    assert run_on_loop(running_module, timeout=60).split(".")[0] == FAMILY[loop_impl]
    assert run_on_loop(spawn, 7, timeout=60) == 7
    assert run_on_loop(family, timeout=60) == loop_impl


def test_loop_factory(loop_factory, loop_impl):
    loop = loop_factory()
    try:
        assert type(loop).__module__.split(".")[0] == FAMILY[loop_impl]
        assert loop.run_until_complete(asyncio.wait_for(spawn(3), 60)) == 3
    finally:
        loop.close()


def test_timeout(run_on_loop):
    with pytest.raises(asyncio.TimeoutError):
        run_on_loop(asyncio.sleep, 3600, timeout=0.2)


@pytest.mark.childwatch_loops("uvloop")
def test_only_uvloop(loop_impl):
    assert loop_impl == "uvloop"
"""


def test_default_matrix_names_every_installed_loop(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_suite=MATRIX)
    result = run(suite)
    found = outcomes(result)
    impls = default_impls()
    for test in ("test_matrix", "test_loop_factory", "test_timeout"):
        assert {node: found[node] for node in found if f"::{test}[" in node} == {
            f"test_suite.py::{test}[{name}]": expected_outcome(name) for name in impls
        }
    assert found["test_suite.py::test_only_uvloop[uvloop]"] == (
        expected_outcome("uvloop") if "uvloop" in impls else "SKIPPED"
    )
    assert "FAILED" not in found.values() and "ERROR" not in found.values()
    for name in impls:
        reason = unavailable_reason(name)
        if reason is not None:  # e.g. trio-asyncio on 3.14+: installed, cannot import
            result.stdout.fnmatch_lines([f"SKIPPED *{reason[:60]}*"])


def test_selection_by_option_and_ini(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_suite=MATRIX)
    result = run(suite, "--loop-impls=uvloop", "-k", "test_matrix")
    assert outcomes(result) == {"test_suite.py::test_matrix[uvloop]": expected_outcome("uvloop")}

    write_ini(suite, "childwatch_loop_impls = asyncio\n")
    result = run(suite, "-k", "test_matrix or only_uvloop")
    assert outcomes(result) == {
        "test_suite.py::test_matrix[asyncio]": "PASSED",
        "test_suite.py::test_only_uvloop[uvloop]": "SKIPPED",
    }
    result.stdout.fnmatch_lines(["SKIPPED *uvloop is not selected (--loop-impls / childwatch_loop_impls)"])

    result = run(suite, "--loop-impls=asyncio,uvloop", "-k", "test_matrix")  # the option wins
    assert set(outcomes(result)) == {
        "test_suite.py::test_matrix[asyncio]",
        "test_suite.py::test_matrix[uvloop]",
    }

    result = run(suite, "--loop-impls=asyncio,tornado")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*unknown loop implementation 'tornado'; known: asyncio, uvloop, trio-asyncio*"]
    )


def test_loops_that_are_not_installed(suite: pytest.Pytester) -> None:
    """A loop named but not installed is skipped with the reason; ``all`` leaves it out."""
    suite.makeconftest(
        """
        import sys
        sys.modules["uvloop"] = None  # as if uvloop were not installed
        """
    )
    suite.makepyfile(test_suite=MATRIX)
    result = run(suite, "--loop-impls=asyncio,uvloop,trio-asyncio", "-k", "test_matrix")
    assert outcomes(result) == {
        "test_suite.py::test_matrix[asyncio]": "PASSED",
        "test_suite.py::test_matrix[uvloop]": "SKIPPED",
        "test_suite.py::test_matrix[trio-asyncio]": expected_outcome("trio-asyncio"),
    }
    result.stdout.fnmatch_lines(["SKIPPED *: uvloop is not installed"])
    result = run(suite, "--loop-impls=all", "-k", "test_only_uvloop")
    assert outcomes(result) == {"test_suite.py::test_only_uvloop[uvloop]": "SKIPPED"}
    result.stdout.fnmatch_lines(["SKIPPED *uvloop is not selected (--loop-impls / childwatch_loop_impls)"])


EVERY_LOOP = """
import asyncio, os, sys
import pytest

ISOLATED = {isolated!r}


def isolated():
    return os.getpid() != int(os.environ["SUITE_ROOT_PID"])


async def running_module():
    return type(asyncio.get_running_loop()).__module__


async def exit_status(code):
    proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {{code}}")
    return await proc.wait()


def gevent_patched():
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


def test_runs_on_it(loop_impl, run_on_loop):
    module = run_on_loop(running_module, timeout=60)
    assert (module.split(".")[0] == "asyncio") == (loop_impl == "asyncio"), module
    assert isolated() == (loop_impl in ISOLATED)
    assert gevent_patched() == (loop_impl == "asyncio-gevent")
    if not isolated():
        assert not {{"trio_asyncio", "qasync", "rsloop", "asyncio_gevent"}} & set(sys.modules)


def test_loop_factory(loop_factory):
    loop = loop_factory()
    try:
        assert loop.run_until_complete(running_module()) == type(loop).__module__
    finally:
        loop.close()


@pytest.mark.childwatch_requires("subprocesses")
def test_subprocess(run_on_loop):
    assert run_on_loop(exit_status, 5, timeout=60) == 5
"""


def test_all_runs_every_installed_loop(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--loop-impls=all``: each known loop installed here, those that patch asyncio or the
    process in their isolated worker (asyncio-gevent's under gevent's ``patch_all()``), the
    others in this process; a loop installed that cannot run here is skipped with the reason."""
    # Warnings the loops themselves raise: rloop 0.5 leaves its self-pipe to the GC; qasync 0.28
    # calls asyncio.iscoroutinefunction, deprecated since 3.14.
    write_ini(
        suite,
        warnings="\n    ignore::ResourceWarning"
        "\n    ignore:'asyncio.iscoroutinefunction' is deprecated:DeprecationWarning",
    )
    suite.makeconftest(ORDER_CONFTEST)
    suite.makepyfile(test_every_loop=EVERY_LOOP.format(isolated=ISOLATED))
    monkeypatch.delenv("SUITE_ROOT_PID", raising=False)
    result = run(suite, "--loop-impls=all")
    found = outcomes(result)
    impls = all_impls()
    expected = {}
    for name in impls:
        for test in ("test_runs_on_it", "test_loop_factory"):
            expected[f"test_every_loop.py::{test}[{name}]"] = expected_outcome(name)
    subprocess_tests = {node: found.pop(node, None) for node in list(found) if "::test_subprocess[" in node}
    assert found == expected, result.stdout.str()
    assert set(subprocess_tests) == {f"test_every_loop.py::test_subprocess[{name}]" for name in impls}
    assert set(subprocess_tests.values()) <= {"PASSED", "SKIPPED"}, result.stdout.str()  # skipped: lacks them
    assert subprocess_tests["test_every_loop.py::test_subprocess[asyncio]"] == "PASSED"
    for name in impls:
        reason = unavailable_reason(name)
        if reason is not None:
            result.stdout.fnmatch_lines([f"SKIPPED *{reason[:60]}*"])


def test_a_known_loop_that_cannot_run_here_is_skipped(suite: pytest.Pytester) -> None:
    """Stand-ins for two PyPI loops, first on the path: rloop's cannot run a coroutine
    (as loopmini 0.1 on 3.10), qasync's (an isolated loop, asked in a fresh process)
    cannot be imported: their tests are skipped with the reason, nothing else changes."""
    suite.makepyfile(
        rloop="""
        import asyncio

        class Loop(asyncio.SelectorEventLoop):
            def create_task(self, coro, **kwargs):
                raise TypeError("simulated: Task() got an unexpected keyword argument 'eager_start'")

        def new_event_loop():
            return Loop()
        """,
        qasync="""
        raise ImportError("simulated: no Qt binding")
        """,
        test_suite="""
        def test_loop(loop_impl, run_on_loop):
            async def main():
                return 1

            assert run_on_loop(main, timeout=60) == 1
        """,
    )
    result = run(suite, "--loop-impls=asyncio,rloop,qasync")
    assert outcomes(result) == {
        "test_suite.py::test_loop[asyncio]": "PASSED",
        "test_suite.py::test_loop[rloop]": "SKIPPED",
        "test_suite.py::test_loop[qasync]": "SKIPPED",
    }, result.stdout.str()
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "SKIPPED *: rloop: Loop cannot run a coroutine on this Python (TypeError: simulated: *eager_start*",
            "SKIPPED *: qasync cannot be imported on Python *: ImportError: simulated: no Qt binding",
        ],
        consecutive=False,
    )


def test_every_known_loop_is_named() -> None:
    """The plugin knows asyncio, uvloop, trio-asyncio and the PyPI loops of ``python -m
    childwatch``, in that order, each by its PyPI name."""
    assert list(KNOWN_LOOP_IMPLS) == list(MODULES)
    assert {"rloop", "qasync", "asyncio-gevent"} <= set(KNOWN_LOOP_IMPLS)


def test_a_loop_given_as_module_and_factory(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        myloop="""
        import asyncio

        class MyLoop(asyncio.SelectorEventLoop):
            pass

        def new_event_loop():
            return MyLoop()
        """,
        test_custom="""
        import asyncio

        async def running_class():
            return type(asyncio.get_running_loop()).__name__

        def test_custom(run_on_loop, loop_impl):
            expected = {"mine": "MyLoop"}.get(loop_impl, "_UnixSelectorEventLoop")
            assert run_on_loop(running_class, timeout=60) == expected
        """,
    )
    suite.syspathinsert()
    result = run(suite, "--loop-impls=asyncio,mine=myloop:new_event_loop,broken=no_such_module_xyz:new")
    assert outcomes(result) == {
        "test_custom.py::test_custom[asyncio]": "PASSED",
        "test_custom.py::test_custom[mine]": "PASSED",
        "test_custom.py::test_custom[broken]": "SKIPPED",
    }
    result.stdout.fnmatch_lines(["SKIPPED *broken cannot be loaded: ModuleNotFoundError*no_such_module_xyz*"])
    for taken in ("uvloop", "trio"):  # trio: anyio's trio backend, in ids and markers
        result = run(suite, f"--loop-impls={taken}=myloop:new_event_loop")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert f"--loop-impls: {taken!r} is taken" in result.stderr.str()


# -- capability markers ----------------------------------------------------------------

REQUIRES = """
import asyncio
import childwatch
import pytest


async def caps():
    return childwatch.capabilities()


@pytest.mark.childwatch_requires("custom_watcher")
def test_custom_watcher(run_on_loop):
    assert run_on_loop(caps, timeout=60).custom_watcher.supported


@pytest.mark.childwatch_requires("set_child_watcher", "subprocesses")
def test_set_child_watcher(run_on_loop):
    async def main():
        watcher = childwatch.ThreadedChildWatcher()
        try:
            childwatch.set_child_watcher(watcher)
            proc = await asyncio.create_subprocess_exec("sh", "-c", "exit 9")
            assert await proc.wait() == 9
            childwatch.set_child_watcher(None)
        finally:
            watcher.close()

    run_on_loop(main, timeout=60)


@pytest.mark.childwatch_requires("SafeChildWatcher", xfail=True, strict=True)
def test_safe_watcher(run_on_loop):
    assert dict(run_on_loop(caps, timeout=60).watchers)["SafeChildWatcher"].supported


@pytest.mark.childwatch_requires("custom_watcher")
def test_without_a_loop_param():
    assert childwatch.capabilities().loop == "asyncio"


@pytest.mark.childwatch_requires("pidfd")
def test_mechanism():
    assert dict(childwatch.capabilities().mechanisms)["pidfd"]
"""


def test_requires_skips_or_xfails_by_capability(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_requires=REQUIRES)
    impls = [name for name in ("asyncio", "uvloop") if available(name)]
    result = run(suite, f"--loop-impls={','.join(impls)}")
    found = outcomes(result)
    expected = {
        "test_requires.py::test_without_a_loop_param": "PASSED",
        "test_requires.py::test_mechanism": "PASSED"
        if dict(childwatch.capabilities().mechanisms)["pidfd"]
        else "SKIPPED",
        "test_requires.py::test_custom_watcher[asyncio]": "PASSED",
        "test_requires.py::test_set_child_watcher[asyncio]": "PASSED",
        "test_requires.py::test_safe_watcher[asyncio]": "PASSED",
    }
    if "uvloop" in impls:
        expected.update(
            {
                "test_requires.py::test_custom_watcher[uvloop]": "SKIPPED",
                "test_requires.py::test_set_child_watcher[uvloop]": "SKIPPED",
                "test_requires.py::test_safe_watcher[uvloop]": "XFAIL",
            }
        )
        result.stdout.fnmatch_lines(
            [
                "SKIPPED *test_requires.py:*: uvloop lacks custom_watcher: uvloop reaps its own subprocesses*",
                "SKIPPED *test_requires.py:*: uvloop lacks set_child_watcher: uvloop reaps*",
                "XFAIL test_requires.py::test_safe_watcher[[]uvloop[]] - uvloop lacks SafeChildWatcher: uvloop*SIGCHLD*",
            ]
        )
    assert found == expected


def test_requires_rejects_unknown_capabilities(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.childwatch_requires("teleport")
        def test_bad():
            pass
        """
    )
    result = run(suite)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*childwatch_requires: unknown capability 'teleport'; known: custom_watcher*"]
    )


# -- isolation ------------------------------------------------------------------------

ORDER_CONFTEST = """
import os
import random

import pytest

from childwatch.pytest_plugin import anyio_backend_fixture

os.environ.setdefault("SUITE_ROOT_PID", str(os.getpid()))  # the isolated runs inherit it

anyio_backend = anyio_backend_fixture()


def pytest_collection_modifyitems(config, items):
    order = os.environ.get("SUITE_ORDER", "forward")
    if order == "reverse":
        items.reverse()
    elif order != "forward":
        random.Random(order).shuffle(items)
"""

PYTEST_ASYNCIO_HOOK = """

from childwatch.pytest_plugin import loop_factories


def pytest_asyncio_loop_factories(config, item):
    return loop_factories(config, item)
"""

MIX_HELPERS = """
import asyncio, os, sys
import pytest

FAMILY = {"asyncio": "asyncio", "uvloop": "uvloop", "trio-asyncio": "trio_asyncio", "trio": "trio"}


def isolated():
    return os.getpid() != int(os.environ["SUITE_ROOT_PID"])


def check_process(impl):
    assert isolated() == (impl == "trio-asyncio")
    if impl != "trio-asyncio":
        assert "trio_asyncio" not in sys.modules


def running_family():
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


@pytest.fixture(scope="module")
def module_resource():
    yield object()
"""

MIX_MATRIX = (
    MIX_HELPERS
    + """

async def spawn(code):
    proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
    return await proc.wait()


def test_matrix_a(run_on_loop, loop_impl, module_resource):
    check_process(loop_impl)

    async def main():
        return running_family(), await spawn(4)

    assert run_on_loop(main, timeout=60) == (FAMILY[loop_impl], 4)


def test_matrix_b(run_on_loop, loop_impl, module_resource):
    check_process(loop_impl)

    async def main():
        return running_family()

    assert run_on_loop(main, timeout=60) == FAMILY[loop_impl]


def test_stdlib_in_between(module_resource):
    check_process("asyncio")

    async def main():
        return running_family()

    assert asyncio.run(main()) == "asyncio"


@pytest.mark.childwatch_isolated
def test_marked_isolated(tmp_path):
    assert isolated()
    assert "trio_asyncio" not in sys.modules  # the isolated run did not probe it in-process
    (tmp_path / "scratch").write_text("ok")
"""
)

MIX_ANYIO = (
    MIX_HELPERS
    + """
import sniffio


@pytest.mark.anyio
async def test_anyio(request, module_resource):
    impl = request.node.callspec.id
    check_process(impl)
    if impl == "trio":
        assert sniffio.current_async_library() == "trio"
    else:
        assert running_family() == FAMILY[impl]
    import anyio
    result = await anyio.run_process(["sh", "-c", "exit 6"], check=False)
    assert result.returncode == 6
"""
)

MIX_PYTEST_ASYNCIO = (
    MIX_HELPERS
    + """
import pytest_asyncio


@pytest_asyncio.fixture
async def fixture_family():
    yield running_family()


@pytest.mark.asyncio
async def test_pytest_asyncio(request, fixture_family, module_resource):
    impl = request.node.callspec.id
    check_process(impl)
    assert running_family() == fixture_family == FAMILY[impl]
    proc = await asyncio.create_subprocess_exec("sh", "-c", "exit 5")
    assert await proc.wait() == 5


@pytest.mark.asyncio(loop_factories=["uvloop"])
async def test_pytest_asyncio_uvloop_only():
    assert running_family() == "uvloop"
"""
)


@pytest.mark.parametrize("order", ["reverse", "shuffle-1"])
def test_mixed_suite_gets_the_right_loop_in_any_order(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    conftest = ORDER_CONFTEST + (PYTEST_ASYNCIO_HOOK if HAVE_PYTEST_ASYNCIO else "")
    suite.makeconftest(conftest)
    files = {"test_mix_matrix": MIX_MATRIX, "test_mix_anyio": MIX_ANYIO}
    if HAVE_PYTEST_ASYNCIO:
        files["test_mix_pytest_asyncio"] = MIX_PYTEST_ASYNCIO
    suite.makepyfile(**files)
    monkeypatch.setenv("SUITE_ORDER", order)
    monkeypatch.delenv("SUITE_ROOT_PID", raising=False)
    impls = list(DEFAULT)  # named: the suite knows these loops' modules
    result = run(suite, f"--loop-impls={','.join(impls)}")
    found = outcomes(result)

    expected = {
        "test_mix_matrix.py::test_stdlib_in_between": "PASSED",
        "test_mix_matrix.py::test_marked_isolated": "PASSED",
        "test_mix_anyio.py::test_anyio[trio]": "PASSED" if importlib.util.find_spec("trio") else "SKIPPED",
    }
    for name in impls:
        for test in ("test_matrix_a", "test_matrix_b"):
            expected[f"test_mix_matrix.py::{test}[{name}]"] = expected_outcome(name)
        expected[f"test_mix_anyio.py::test_anyio[{name}]"] = expected_outcome(name)
        if HAVE_PYTEST_ASYNCIO:
            expected[f"test_mix_pytest_asyncio.py::test_pytest_asyncio[{name}]"] = expected_outcome(name)
    if HAVE_PYTEST_ASYNCIO:
        expected["test_mix_pytest_asyncio.py::test_pytest_asyncio_uvloop_only[uvloop]"] = expected_outcome(
            "uvloop"
        )
    assert found == expected, result.stdout.str()
    assert result.ret == pytest.ExitCode.OK


ISOLATED_REPORTS = """
import os
import pytest


def isolated():
    return os.getpid() != int(os.environ["SUITE_ROOT_PID"])


@pytest.mark.childwatch_isolated
def test_fails():
    print("output-from-the-isolated-run")
    assert isolated() and 1 + 1 == 3


@pytest.mark.childwatch_isolated
def test_skips():
    pytest.skip("reason-from-the-isolated-run")


@pytest.mark.childwatch_isolated
@pytest.mark.xfail(reason="expected-in-the-isolated-run", strict=True)
def test_xfails():
    assert not isolated()


@pytest.mark.childwatch_isolated
def test_crashes():
    os._exit(3)


@pytest.mark.childwatch_isolated
def test_passes():
    assert isolated()


@pytest.mark.childwatch_loops("trio-asyncio")
def test_trio_asyncio_fails(run_on_loop):
    print("output-from-trio-asyncio")
    assert isolated() and run_on_loop.impl == "asyncio"
"""


def test_isolated_outcomes_are_reported(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    suite.makeconftest(ORDER_CONFTEST)
    suite.makepyfile(test_isolated=ISOLATED_REPORTS)
    monkeypatch.delenv("SUITE_ROOT_PID", raising=False)
    result = run(suite, "--loop-impls=all")
    trio_asyncio = available("trio-asyncio")
    assert outcomes(result) == {
        "test_isolated.py::test_fails": "FAILED",
        "test_isolated.py::test_skips": "SKIPPED",
        "test_isolated.py::test_xfails": "XFAIL",
        "test_isolated.py::test_crashes": "FAILED",
        "test_isolated.py::test_passes": "PASSED",
        "test_isolated.py::test_trio_asyncio_fails[trio-asyncio]": "FAILED" if trio_asyncio else "SKIPPED",
    }
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails _*",
            ">*assert isolated() and 1 + 1 == 3",
            "E*assert (True and (1 + 1) == 3)",
            "*Captured stdout call*",
            "output-from-the-isolated-run",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_crashes _*",
            "the isolated run of test_isolated.py::test_crashes ended (exit status 3) without a call report",
        ]
    )
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_isolated.py:*: reason-from-the-isolated-run"])
    result.stdout.fnmatch_lines(["XFAIL test_isolated.py::test_xfails - expected-in-the-isolated-run"])
    if trio_asyncio:
        assert "output-from-trio-asyncio" in out
        result.stdout.fnmatch_lines(
            ["FAILED test_isolated.py::test_trio_asyncio_fails[[]trio-asyncio[]] - *"]
        )


@pytest.mark.parametrize(
    "where",
    [
        "@pytest.mark.childwatch_isolated",
        pytest.param('@pytest.mark.childwatch_loops("trio-asyncio")', marks=needs_trio_asyncio),
    ],
    ids=["own-process", "shared-worker"],
)
def test_an_isolated_run_is_stopped_by_the_timeout(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """pytest-timeout's limit fails the test; a shared worker killed for it is replaced."""
    pidfile = suite.path / "pid"
    monkeypatch.setenv("PIDFILE", str(pidfile))
    argument = "loop_impl" if "trio-asyncio" in where else "request"  # loop_impl: on trio-asyncio
    suite.makepyfile(
        test_hang=f"""
        import os, time
        import pytest

        {where}
        def test_hangs({argument}):
            with open(os.environ["PIDFILE"], "w") as f:
                f.write(str(os.getpid()))
            time.sleep(3600)

        {where}
        def test_after({argument}):
            pass
        """
    )
    result = run(suite, "--timeout=10", "-o", "timeout_method=signal")
    found = outcomes(result)
    suffix = "[trio-asyncio]" if "trio-asyncio" in where else ""
    assert found == {
        f"test_hang.py::test_hangs{suffix}": "FAILED",
        f"test_hang.py::test_after{suffix}": "PASSED",
    }, result.stdout.str()
    assert "Timeout" in result.stdout.str()
    pid = int(pidfile.read_text())
    assert state_of(pid) is None, "the isolated run was left behind"


def state_of(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def _load_bench() -> Any:
    spec = importlib.util.spec_from_file_location(
        "plugin_overhead", Path(__file__).resolve().parent.parent / "bench" / "plugin_overhead.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin_overhead = _load_bench()

_SUMMARY = re.compile(r"^(PASSED|FAILED|SKIPPED|XFAIL|XPASS|ERROR) (\S+::\S+)")


def summary_outcomes(result: pytest.RunResult) -> Dict[str, str]:
    """node id → outcome, from the ``-rA`` short summary (the form pytest-xdist keeps too)."""
    found: Dict[str, str] = {}
    for line in result.outlines:
        match = _SUMMARY.match(line)
        if match:
            found.setdefault(match.group(2), match.group(1))
    return found


def overhead_suite(pytester: pytest.Pytester, passing: int, failing: int) -> None:
    plugin_overhead.write_suite(pytester.path, passing, failing)
    write_ini(pytester)


def expected_overhead(loops: List[str], passing: int, failing: int) -> Dict[str, str]:
    expected = {}
    for loop in loops:
        for n in range(passing):
            expected[f"test_overhead.py::test_passes[{loop}-{n}]"] = "PASSED"
        for n in range(failing):
            expected[f"test_overhead.py::test_fails[{loop}-{n}]"] = "FAILED"
    return expected


@needs_trio_asyncio
def test_forty_isolated_tests_report_as_on_asyncio(suite: pytest.Pytester) -> None:
    """The benchmark's suite (40 passing, 1 failing) reports the same on trio-asyncio as on asyncio."""
    overhead_suite(suite, 40, 1)
    for loop in ("asyncio", "trio-asyncio"):
        result = run(suite, f"--loop-impls={loop}")
        assert outcomes(result) == expected_overhead([loop], 40, 1), result.stdout.str()
        result.assert_outcomes(passed=40, failed=1)
        result.stdout.fnmatch_lines(
            ["*assert 3 == 0*", f"FAILED test_overhead.py::test_fails[[]{loop}-0[]]*"]
        )


@needs_xdist
@needs_trio_asyncio
@pytest.mark.skipif(not available("uvloop"), reason=str(unavailable_reason("uvloop")))
@pytest.mark.parametrize("workers", ["2"])
def test_under_xdist(suite: pytest.Pytester, workers: str) -> None:
    """``-n 2`` across asyncio, uvloop and trio-asyncio: 120 passed, 3 failed,
    the same ids; the suite's own assertion checks each test ran isolated or not as it should."""
    overhead_suite(suite, 40, 1)
    loops = ["asyncio", "uvloop", "trio-asyncio"]
    result = run(suite, "-n", workers, f"--loop-impls={','.join(loops)}")
    result.assert_outcomes(passed=120, failed=3)
    assert summary_outcomes(result) == expected_overhead(loops, 40, 1), result.stdout.str()


WORKER_CONFTEST = """
import os

import pytest

os.environ.setdefault("SUITE_ROOT_PID", str(os.getpid()))
if os.environ.get("BREAK_THE_WORKER") and "CHILDWATCH_PYTEST_WORKER" in os.environ:
    raise RuntimeError("simulated: this conftest cannot be imported in the worker")


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    # With RUN_REVERSED, a run loop of another order than session.items (as pytest-xdist's).
    if not os.environ.get("RUN_REVERSED") or session.config.pluginmanager.has_plugin("childwatch-worker"):
        return None
    items = list(reversed(session.items))
    for at, item in enumerate(items):
        nextitem = items[at + 1] if at + 1 < len(items) else None
        item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
    return True


def record(event):
    with open(os.environ["EVENTS"], "a") as f:
        f.write(f"{os.getpid()} {event}\\n")


@pytest.fixture(scope="session")
def session_resource():
    record("session-setup")
    yield
    record("session-teardown")


@pytest.fixture(scope="module")
def module_resource(request):
    record(f"module-setup {request.module.__name__}")
    yield
    record(f"module-teardown {request.module.__name__}")
"""

WORKER_MODULE = """
import sys, warnings
import pytest
from conftest import record


@pytest.mark.parametrize("n", range(3))
def test_on_each_loop(loop_impl, session_resource, module_resource, n):
    record(f"run {loop_impl}")
    print("output-of", loop_impl)
    if loop_impl == "trio-asyncio":
        with warnings.catch_warnings():  # its child watcher's DeprecationWarning on 3.12-3.13
            warnings.simplefilter("ignore", DeprecationWarning)
            import trio_asyncio  # noqa: F401 (patches asyncio: in the worker only)
    else:
        assert "trio_asyncio" not in sys.modules


@pytest.mark.childwatch_loops("trio-asyncio")
def test_skips(loop_impl):
    pytest.skip("reason-from-the-worker")


@pytest.mark.childwatch_loops("trio-asyncio")
@pytest.mark.xfail(reason="expected-in-the-worker", strict=True)
def test_xfails(loop_impl):
    assert False


@pytest.fixture
def broken_fixture():
    raise RuntimeError("fixture-error-in-the-worker")


@pytest.mark.childwatch_loops("trio-asyncio")
def test_fixture_error(loop_impl, broken_fixture):
    pass
"""

CRASHING_MODULE = """
import os
import pytest
from conftest import record


@pytest.mark.childwatch_loops("trio-asyncio")
def test_crashes_the_worker(loop_impl, module_resource):
    os._exit(3)


@pytest.mark.parametrize("n", range(2))
def test_after_the_crash(loop_impl, module_resource, n):
    record(f"run {loop_impl}")
"""


def worker_events(path: Path) -> List[Tuple[int, str]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(pid), event) for pid, event in (line.split(" ", 1) for line in lines)]


@needs_trio_asyncio
def test_one_worker_runs_the_session_with_its_own_fixtures(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All trio-asyncio tests of a session run in one worker, which sets up module- and
    session-scoped fixtures once and tears them down after their last test; skips, xfails
    and fixture errors are reported as in place; a crash fails its test, and a new worker
    runs the rest."""
    suite.makeconftest(WORKER_CONFTEST)
    suite.makepyfile(test_a=WORKER_MODULE, test_b=WORKER_MODULE, test_c=CRASHING_MODULE)
    events = suite.path / "events"
    monkeypatch.setenv("EVENTS", str(events))
    monkeypatch.delenv("SUITE_ROOT_PID", raising=False)
    result = run(suite, "--loop-impls=asyncio,trio-asyncio")
    found = outcomes(result)
    expected = {}
    for module in ("test_a", "test_b"):
        for loop in ("asyncio", "trio-asyncio"):
            for n in range(3):
                expected[f"{module}.py::test_on_each_loop[{loop}-{n}]"] = "PASSED"
        expected[f"{module}.py::test_skips[trio-asyncio]"] = "SKIPPED"
        expected[f"{module}.py::test_xfails[trio-asyncio]"] = "XFAIL"
        expected[f"{module}.py::test_fixture_error[trio-asyncio]"] = "ERROR"
    expected["test_c.py::test_crashes_the_worker[trio-asyncio]"] = "FAILED"
    for loop in ("asyncio", "trio-asyncio"):
        for n in range(2):
            expected[f"test_c.py::test_after_the_crash[{loop}-{n}]"] = "PASSED"
    assert found == expected, result.stdout.str()
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_a.py:*: reason-from-the-worker"])
    result.stdout.fnmatch_lines(["E*RuntimeError: fixture-error-in-the-worker"])
    result.stdout.fnmatch_lines(
        [
            "*the isolated run of test_c.py::test_crashes_the_worker[[]trio-asyncio[]] "
            "ended (exit status 3) without a call report*"
        ]
    )
    recorded = worker_events(events)
    pids = list(dict.fromkeys(pid for pid, event in recorded if event == "run trio-asyncio"))
    parent = next(pid for pid, event in recorded if event == "run asyncio")
    assert len(pids) == 2 and parent not in pids, recorded  # one worker, then one after the crash
    first, second = pids
    in_first = [event for pid, event in recorded if pid == first]
    assert in_first == [
        "session-setup",
        "module-setup test_a",
        *["run trio-asyncio"] * 3,
        "module-teardown test_a",
        "module-setup test_b",
        *["run trio-asyncio"] * 3,
        "module-teardown test_b",
        "module-setup test_c",  # then test_crashes_the_worker took the worker down
    ], recorded
    in_second = [event for pid, event in recorded if pid == second]
    assert in_second == ["module-setup test_c", *["run trio-asyncio"] * 2, "module-teardown test_c"], recorded
    in_parent = [event for pid, event in recorded if pid == parent]
    assert in_parent.count("session-setup") == 1 and in_parent.count("session-teardown") == 1, recorded


@needs_trio_asyncio
@pytest.mark.parametrize("how", ["reversed", pytest.param("xdist", marks=needs_xdist)])
def test_a_run_order_other_than_the_collection_keeps_fixtures_right(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Where the next test of the worker is not the one the collection order says (another
    run loop; pytest-xdist hands each process some of the tests), the worker tears down what
    the test it is given does not share: every outcome as usual, every setup torn down once."""
    suite.makeconftest(WORKER_CONFTEST)
    suite.makepyfile(test_a=WORKER_MODULE, test_b=WORKER_MODULE)
    events = suite.path / "events"
    monkeypatch.setenv("EVENTS", str(events))
    monkeypatch.delenv("SUITE_ROOT_PID", raising=False)
    if how == "reversed":
        monkeypatch.setenv("RUN_REVERSED", "1")
    args = ["-n", "2"] if how == "xdist" else []
    result = run(suite, "--loop-impls=asyncio,trio-asyncio", *args)
    result.assert_outcomes(passed=12, skipped=2, xfailed=2, errors=2)
    assert "not torn down" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        ["ERROR test_?.py::test_fixture_error[[]trio-asyncio[]] - RuntimeError: fixture-err*"] * 2
    )
    recorded = worker_events(events)
    for pid in {pid for pid, _ in recorded}:
        mine = [event for p, event in recorded if p == pid]
        for module in ("test_a", "test_b"):
            setups = mine.count(f"module-setup {module}")
            assert setups == mine.count(f"module-teardown {module}"), recorded
            if how == "reversed":
                assert setups <= 1, recorded  # each module's tests run together


@needs_trio_asyncio
def test_a_worker_that_cannot_start_fails_its_tests_only(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makeconftest(WORKER_CONFTEST)
    suite.makepyfile(test_c=CRASHING_MODULE)
    monkeypatch.setenv("EVENTS", str(suite.path / "events"))
    monkeypatch.setenv("BREAK_THE_WORKER", "1")
    monkeypatch.delenv("SUITE_ROOT_PID", raising=False)
    result = run(suite, "--loop-impls=asyncio,trio-asyncio")
    assert outcomes(result) == {
        "test_c.py::test_crashes_the_worker[trio-asyncio]": "ERROR",
        "test_c.py::test_after_the_crash[asyncio-0]": "PASSED",
        "test_c.py::test_after_the_crash[asyncio-1]": "PASSED",
        "test_c.py::test_after_the_crash[trio-asyncio-0]": "ERROR",
        "test_c.py::test_after_the_crash[trio-asyncio-1]": "ERROR",
    }, result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*the isolated worker (trio-asyncio) ended (exit status *) before it was ready*"]
    )
    result.stdout.fnmatch_lines(["*simulated: this conftest cannot be imported in the worker*"])


@needs_trio_asyncio
def test_the_worker_keeps_stdout_for_s(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``-s`` the worker's tests print to the terminal (the protocol has pipes of its own)."""
    suite.makeconftest(WORKER_CONFTEST)
    suite.makepyfile(test_a=WORKER_MODULE)
    monkeypatch.setenv("EVENTS", str(suite.path / "events"))
    monkeypatch.delenv("SUITE_ROOT_PID", raising=False)
    result = run(suite, "-s", "--loop-impls=trio-asyncio", "-k", "on_each_loop")
    assert summary_outcomes(result) == {
        f"test_a.py::test_on_each_loop[trio-asyncio-{n}]": "PASSED" for n in range(3)
    }, result.stdout.str()
    assert result.stdout.str().count("output-of trio-asyncio") == 3
    assert result.stdout.str().count("test session starts") == 1  # the worker's terminal is quiet


README_EXAMPLE = """
import asyncio

import pytest

import childwatch


async def exit_status(code: int) -> int:
    proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
    return await proc.wait()


def test_exit_status(run_on_loop) -> None:  # test_exit_status[asyncio], [uvloop], [trio-asyncio]
    assert run_on_loop(exit_status, 3, timeout=30) == 3


@pytest.mark.childwatch_requires("custom_watcher")  # skipped on uvloop and trio-asyncio, with the reason
def test_set_child_watcher(run_on_loop) -> None:
    async def main() -> int:
        watcher = childwatch.ThreadedChildWatcher()
        try:
            childwatch.set_child_watcher(watcher)
            return await exit_status(7)
        finally:
            childwatch.set_child_watcher(None)
            watcher.close()

    assert run_on_loop(main, timeout=30) == 7
"""


def test_the_documented_example(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_example=README_EXAMPLE)
    result = run(suite)
    expected = {}
    for name in default_impls():
        expected[f"test_example.py::test_exit_status[{name}]"] = expected_outcome(name)
        supported = name == "asyncio" and available(name)
        expected[f"test_example.py::test_set_child_watcher[{name}]"] = "PASSED" if supported else "SKIPPED"
    assert outcomes(result) == expected


# -- the documented recipes -------------------------------------------------------------


@needs_pytest_asyncio
def test_pytest_asyncio_recipe(suite: pytest.Pytester) -> None:
    suite.makeconftest(
        """
        from childwatch.pytest_plugin import loop_factories

        def pytest_asyncio_loop_factories(config, item):
            return loop_factories(config, item)

        def pytest_collection_modifyitems(items):
            items.reverse()  # the unavailable loop's test first
        """
    )
    suite.makepyfile(
        test_recipe="""
        import asyncio
        import pytest
        import pytest_asyncio

        FAMILY = {"asyncio": "asyncio", "uvloop": "uvloop", "trio-asyncio": "trio_asyncio"}

        def running_family():
            return type(asyncio.get_running_loop()).__module__.split(".")[0]

        @pytest_asyncio.fixture
        async def fixture_family():
            yield running_family()

        @pytest.mark.asyncio
        async def test_loop(request, fixture_family):
            assert running_family() == fixture_family == FAMILY[request.node.callspec.id]

        @pytest.mark.asyncio
        @pytest.mark.childwatch_loops("asyncio")
        @pytest.mark.childwatch_requires("custom_watcher")
        async def test_restricted():
            assert running_family() == "asyncio"
        """
    )
    result = run(suite, "--loop-impls=asyncio,uvloop,broken=no_such_module_xyz:new")
    assert outcomes(result) == {
        "test_recipe.py::test_loop[asyncio]": "PASSED",
        "test_recipe.py::test_loop[uvloop]": expected_outcome("uvloop"),
        "test_recipe.py::test_loop[broken]": "SKIPPED",
        "test_recipe.py::test_restricted[asyncio]": "PASSED",  # one factory: the plugin names it
    }
    result.stdout.fnmatch_lines(["SKIPPED *: broken cannot be loaded: ModuleNotFoundError*"])


@needs_anyio
def test_anyio_recipe(suite: pytest.Pytester) -> None:
    suite.makeconftest(
        """
        from childwatch.pytest_plugin import anyio_backend_fixture

        anyio_backend = anyio_backend_fixture()
        """
    )
    suite.makepyfile(
        test_recipe="""
        import asyncio
        import pytest
        import sniffio

        @pytest.mark.anyio
        async def test_backend(anyio_backend_name, request):
            impl = request.node.callspec.id
            assert sniffio.current_async_library() == anyio_backend_name
            if impl == "uvloop":
                assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")

        @pytest.mark.anyio
        @pytest.mark.childwatch_requires("custom_watcher")
        async def test_requires():
            assert type(asyncio.get_running_loop()).__module__.startswith("asyncio")
        """
    )
    result = run(suite, "--loop-impls=asyncio,uvloop")
    assert outcomes(result) == {
        "test_recipe.py::test_backend[asyncio]": "PASSED",
        "test_recipe.py::test_backend[uvloop]": expected_outcome("uvloop"),
        "test_recipe.py::test_backend[trio]": "PASSED" if importlib.util.find_spec("trio") else "SKIPPED",
        "test_recipe.py::test_requires[asyncio]": "PASSED",
        "test_recipe.py::test_requires[uvloop]": "SKIPPED",
        "test_recipe.py::test_requires[trio]": "SKIPPED",
    }
    if importlib.util.find_spec("trio"):
        result.stdout.fnmatch_lines(["SKIPPED *: trio lacks custom_watcher: trio has no child watcher*"])


# -- per-loop markers, the loop of a test, ids, the plugin switched off ------------------

INTEGRATIONS = [
    "run_on_loop",
    pytest.param("pytest-asyncio", marks=needs_pytest_asyncio),
    pytest.param("anyio", marks=needs_anyio),
]
needs_uvloop = pytest.mark.skipif(not available("uvloop"), reason=str(unavailable_reason("uvloop")))

_INTEGRATION_CONFTEST = {
    "run_on_loop": "",
    "pytest-asyncio": PYTEST_ASYNCIO_HOOK,
    "anyio": "\nfrom childwatch.pytest_plugin import anyio_backend_fixture\n\nanyio_backend = anyio_backend_fixture({trio})\n",
}
_INTEGRATION_TEST = {
    # (decorator, definition, how the body runs)
    "run_on_loop": ("", "def", "run_on_loop(body_{name}, {arg})"),
    "pytest-asyncio": ("@pytest.mark.asyncio\n", "async def", "await body_{name}({arg})"),
    "anyio": ("@pytest.mark.anyio\n", "async def", "await body_{name}({arg})"),
}


def integration_suite(
    pytester: pytest.Pytester,
    integration: str,
    tests: Dict[str, str],
    *,
    trio: bool = False,
    conftest: str = "",
    with_loop_impl: bool = True,
) -> None:
    """A suite whose tests run on the loops through ``integration``: for each name of ``tests``
    (name → its marker lines) but ``_bodies``, ``test_<name>(loop_impl, request)`` awaits
    ``body_<name>(loop_impl)``, an async function of ``tests["_bodies"]`` (without
    ``with_loop_impl``: ``test_<name>(request)`` awaits ``body_<name>(None)``)."""
    anyio_trio = "" if trio else "trio=False"
    pytester.makeconftest(_INTEGRATION_CONFTEST[integration].format(trio=anyio_trio) + conftest)
    decorator, definition, call = _INTEGRATION_TEST[integration]
    args = ("loop_impl, " if with_loop_impl else "") + "request"
    args += ", run_on_loop" if integration == "run_on_loop" else ""
    arg = "loop_impl" if with_loop_impl else "None"
    source = "import asyncio\nimport pytest\n\n" + tests["_bodies"]
    for name, marks in tests.items():
        if name != "_bodies":
            source += f"\n\n{marks}{decorator}{definition} test_{name}({args}):\n    {call.format(name=name, arg=arg)}\n"
    pytester.makepyfile(test_suite=source)


_FAMILY_BODIES = """
FAMILY = {"asyncio": "asyncio", "uvloop": "uvloop", "trio": "trio"}


def running_family():
    try:
        return type(asyncio.get_running_loop()).__module__.split(".")[0]
    except RuntimeError:
        return "trio"


async def body_impl(loop_impl):
    assert running_family() == FAMILY[loop_impl]


async def body_only_uvloop(loop_impl):
    assert loop_impl == "uvloop" == running_family()
"""


@needs_uvloop
@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_childwatch_loops_and_loop_impl_agree_under_each_integration(
    suite: pytest.Pytester, integration: str
) -> None:
    """``childwatch_loops`` narrows a test the same way whichever integration runs it (a loop not
    selected: skipped with the reason), and ``loop_impl`` is the loop the test runs on (one
    parametrisation, not one per integration)."""
    tests = {
        "_bodies": _FAMILY_BODIES,
        "impl": "",
        "only_uvloop": '@pytest.mark.childwatch_loops("uvloop")\n',
    }
    integration_suite(suite, integration, tests)
    result = run(suite, "--loop-impls=asyncio,uvloop")
    assert outcomes(result) == {
        "test_suite.py::test_impl[asyncio]": "PASSED",
        "test_suite.py::test_impl[uvloop]": "PASSED",
        "test_suite.py::test_only_uvloop[uvloop]": "PASSED",
    }, result.stdout.str()
    result = run(suite, "--loop-impls=asyncio")
    assert outcomes(result) == {
        "test_suite.py::test_impl[asyncio]": "PASSED",
        "test_suite.py::test_only_uvloop[uvloop]": "SKIPPED",
    }, result.stdout.str()
    result.stdout.fnmatch_lines(["SKIPPED *uvloop is not selected (--loop-impls / childwatch_loop_impls)"])


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_ids_name_the_loop_when_one_is_selected(suite: pytest.Pytester, integration: str) -> None:
    """``test_x[asyncio]`` whether one loop runs or several, so ``-k``, ``--deselect`` and allow-lists
    hold when a job narrows the loops."""
    bodies = "async def body_impl(loop_impl):\n    pass\n"
    integration_suite(suite, integration, {"_bodies": bodies, "impl": ""}, with_loop_impl=False)
    result = run(suite, "--loop-impls=asyncio")
    assert outcomes(result) == {"test_suite.py::test_impl[asyncio]": "PASSED"}, result.stdout.str()
    result = run(suite, "--loop-impls=asyncio", "--deselect", "test_suite.py::test_impl[asyncio]")
    assert outcomes(result) == {}
    result.assert_outcomes(deselected=1)


_SKIP_XFAIL_BODIES = """
async def body_skipped(loop_impl):
    assert loop_impl != "uvloop"


async def body_xfailed(loop_impl):
    assert loop_impl != "uvloop", "fails on uvloop"


async def body_xpassed_strict(loop_impl):
    pass


async def body_other_loop(loop_impl):
    pass
"""


@needs_uvloop
@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_skip_and_xfail_on_named_loops(suite: pytest.Pytester, integration: str) -> None:
    tests = {
        "_bodies": _SKIP_XFAIL_BODIES,
        "skipped": '@pytest.mark.childwatch_skip("uvloop", reason="not-on-uvloop")\n',
        "xfailed": '@pytest.mark.childwatch_xfail("uvloop", "trio", reason="uvloop-fails-it")\n',
        "xpassed_strict": '@pytest.mark.childwatch_xfail("uvloop", reason="expected", strict=True)\n',
        "other_loop": '@pytest.mark.childwatch_skip("trio-asyncio")\n@pytest.mark.childwatch_xfail("trio")\n',
    }
    integration_suite(suite, integration, tests)
    result = run(suite, "--loop-impls=asyncio,uvloop")
    expected = {}
    for name in tests:
        if name != "_bodies":
            expected[f"test_suite.py::test_{name}[asyncio]"] = "PASSED"
    expected["test_suite.py::test_skipped[uvloop]"] = "SKIPPED"
    expected["test_suite.py::test_xfailed[uvloop]"] = "XFAIL"
    expected["test_suite.py::test_xpassed_strict[uvloop]"] = "FAILED"
    expected["test_suite.py::test_other_loop[uvloop]"] = "PASSED"
    assert outcomes(result) == expected, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "SKIPPED *not-on-uvloop",
            "XFAIL test_suite.py::test_xfailed[[]uvloop[]] - uvloop-fails-it",
            "FAILED test_suite.py::test_xpassed_strict[[]uvloop[]]*",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(["*XPASS(strict)*expected*"])  # (pytest < 9: not in the summary line)


@pytest.mark.parametrize(
    ("marker", "error"),
    [
        ("childwatch_skip()", "childwatch_skip takes loop implementation names"),
        (
            'childwatch_xfail("uvloop", strict=True, raises=OSError)',
            "childwatch_xfail got unknown arguments ['raises']",
        ),
        ('childwatch_skip("uvloop", strict=True)', "childwatch_skip got unknown arguments ['strict']"),
        ('childwatch_xfail("tornado")', "childwatch_xfail names unknown loop implementations ['tornado']"),
    ],
)
def test_skip_and_xfail_reject_bad_input(suite: pytest.Pytester, marker: str, error: str) -> None:
    suite.makepyfile(
        test_bad=f"""
        import pytest

        @pytest.mark.{marker}
        def test_marked(loop_impl):
            pass
        """
    )
    result = run(suite)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"test_bad.py::test_marked[asyncio]: {error}" in result.stderr.str()


_RECORD_CONFTEST = """

import pytest
from childwatch.pytest_plugin import loop_impl_of


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.user_properties.append(("collected", loop_impl_of(item)))
"""

_RECORD_BODIES = """
async def body_recorded(loop_impl):
    pass


def test_no_loop(request):
    assert dict(request.node.user_properties)["collected"] is None


@pytest.fixture(autouse=True)
def agrees(request):
    if "loop_impl" in request.fixturenames:
        assert dict(request.node.user_properties)["collected"] == request.getfixturevalue("loop_impl")
"""


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_the_loop_of_a_test_is_known_at_collection_and_at_run_time(
    suite: pytest.Pytester, integration: str
) -> None:
    """``loop_impl_of(item)`` in a conftest's ``pytest_collection_modifyitems`` names the loop the
    ``loop_impl`` fixture names when the test runs (None for a test on no loop of the plugin's);
    anyio's trio backend is ``trio``."""
    integration_suite(
        suite, integration, {"_bodies": _RECORD_BODIES, "recorded": ""}, trio=True, conftest=_RECORD_CONFTEST
    )
    loops = ["asyncio", "uvloop"] if available("uvloop") else ["asyncio"]
    for selected in (loops[:1], loops):  # one loop, then several (pytest-asyncio's ids differ)
        result = run(suite, f"--loop-impls={','.join(selected)}")
        expected = {"test_suite.py::test_no_loop": "PASSED"}
        expected.update({f"test_suite.py::test_recorded[{name}]": "PASSED" for name in selected})
        if integration == "anyio":
            expected["test_suite.py::test_recorded[trio]"] = "PASSED" if installed("trio") else "SKIPPED"
        assert outcomes(result) == expected, result.stdout.str()


@needs_pytest_asyncio
@needs_anyio
def test_switched_off_the_readme_snippets_run_on_asyncio(suite: pytest.Pytester) -> None:
    """``-p no:childwatch`` with the README's conftest snippets in place: pytest-asyncio's tests and
    anyio's run on plain asyncio alone (anyio's default backend), as without the plugin."""
    suite.makeconftest(
        PYTEST_ASYNCIO_HOOK
        + "\nfrom childwatch.pytest_plugin import anyio_backend_fixture\n\nanyio_backend = anyio_backend_fixture()\n"
    )
    suite.makepyfile(
        test_off="""
        import asyncio, sys
        import pytest
        import sniffio

        @pytest.mark.asyncio
        async def test_pytest_asyncio():
            assert type(asyncio.get_running_loop()).__module__.startswith("asyncio")
            assert "uvloop" not in sys.modules

        @pytest.mark.anyio
        async def test_anyio():
            assert sniffio.current_async_library() == "asyncio"
            assert type(asyncio.get_running_loop()).__module__.startswith("asyncio")
            assert "uvloop" not in sys.modules
        """
    )
    result = run(suite, "-p", "no:childwatch")
    assert outcomes(result) == {
        "test_off.py::test_pytest_asyncio": "PASSED",
        "test_off.py::test_anyio": "PASSED",
    }, result.stdout.str() + result.stderr.str()


# -- no loop takes the session down ----------------------------------------------------

_HOSTILE_CONFTEST = """
import os, signal

for fd in range(3, 1024):  # what this process inherited (the worker's pipes, once)
    try:
        if os.get_inheritable(fd):
            os.close(fd)
    except OSError:
        pass
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
"""

_CRASHING_LOOPS = """
import asyncio, os, signal, time
import pytest


async def sleep_long():
    await asyncio.sleep(100)


async def block():
    time.sleep(100)


def test_starts_the_worker(loop_impl):
    pass


@pytest.mark.timeout(2)
def test_hangs_on_the_loop(run_on_loop, loop_impl):
    if loop_impl == "uvloop":
        run_on_loop(sleep_long)


@pytest.mark.timeout(2)
def test_blocks_the_loop(run_on_loop, loop_impl):
    if loop_impl == "uvloop":
        run_on_loop(block)


@pytest.mark.timeout(3)
def test_hangs_in_the_worker(loop_impl):
    if loop_impl == "isolated":
        with open(os.environ["PIDFILE"], "w") as f:
            f.write(str(os.getpid()))
        # A hang the worker's own pytest-timeout cannot stop (as on a loop that swallows
        # its signal): only the parent's limit can, whatever the machine's load.
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
        time.sleep(100)


def test_segfaults(loop_impl):
    if loop_impl == "isolated":
        os.kill(os.getpid(), signal.SIGSEGV)


@pytest.mark.parametrize("n", range(2))
def test_dies(loop_impl, n):
    if loop_impl == "isolated":
        os._exit(5)


def test_after_three_deaths(loop_impl):
    pass
"""


@needs_uvloop
@pytest.mark.skipif(not installed("pytest_timeout"), reason="pytest-timeout is not installed")
def test_no_loop_takes_the_session_down(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """On uvloop (which swallows pytest-timeout's signal) a hung test is stopped with its stack,
    waiting on the loop or blocked in it; on a loop isolated with ``--childwatch-isolate`` (uvloop
    under another name), a conftest closing inherited fds and ignoring SIGUSR1 does not stop the
    worker, a hang shows the worker's stack, a segfault fails its test alone, and after three
    deaths in a row the worker is not started again; every other test passes."""
    pidfile = suite.path / "pid"
    monkeypatch.setenv("PIDFILE", str(pidfile))
    suite.makeconftest(_HOSTILE_CONFTEST)
    suite.makepyfile(test_crashes=_CRASHING_LOOPS)
    result = suite.runpytest_subprocess(
        "--loop-impls=uvloop,isolated=uvloop:new_event_loop", "--childwatch-isolate=isolated", timeout=120
    )
    expected = {}
    for test in ("starts_the_worker", "hangs_on_the_loop", "blocks_the_loop", "hangs_in_the_worker"):
        expected.update(
            {f"test_crashes.py::test_{test}[{loop}]": "PASSED" for loop in ("uvloop", "isolated")}
        )
    expected.update(
        {
            "test_crashes.py::test_hangs_on_the_loop[uvloop]": "FAILED",
            "test_crashes.py::test_blocks_the_loop[uvloop]": "FAILED",
            "test_crashes.py::test_hangs_in_the_worker[isolated]": "FAILED",
            "test_crashes.py::test_segfaults[uvloop]": "PASSED",
            "test_crashes.py::test_segfaults[isolated]": "FAILED",
            "test_crashes.py::test_after_three_deaths[uvloop]": "PASSED",
            "test_crashes.py::test_after_three_deaths[isolated]": "ERROR",
        }
    )
    for n in range(2):
        expected[f"test_crashes.py::test_dies[uvloop-{n}]"] = "PASSED"
        expected[f"test_crashes.py::test_dies[isolated-{n}]"] = "FAILED"
    assert outcomes(result) == expected, result.stdout.str()
    out = result.stdout.str()
    stopped = "Timeout (>2.0s) from pytest-timeout, enforced by childwatch on uvloop"
    assert [line.startswith(stopped) for line in out.splitlines()].count(True) == 2, out
    result.stdout.fnmatch_lines(["Stack of <Task *", "*", "*", "*in sleep_long", "*await asyncio.sleep(100)"])
    result.stdout.fnmatch_lines(["Stack of the main thread*", "*in block", "*time.sleep(100)"])
    result.stdout.fnmatch_lines(
        [
            "the isolated run of test_crashes.py::test_hangs_in_the_worker[[]isolated[]] was stopped: "
            "Failed: Timeout (>3.0s) from pytest-timeout.",
            "*",
            "the isolated worker's stack (faulthandler):",
            "*",
            "*test_crashes.py*line * in test_hangs_in_the_worker",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*test_segfaults[[]isolated[]] ended (killed by signal 11 (SIGSEGV)) without*"]
    )
    result.stdout.fnmatch_lines(
        [
            "*the isolated worker (isolated) is not started again: it died in 3 tests in a row, the last *test_dies*"
        ]
    )
    assert state_of(int(pidfile.read_text())) is None, "the isolated run was left behind"


# -- integrations that change nothing else; loops without subprocesses -------------------

_OWN_THINGS_CONFTEST = (
    PYTEST_ASYNCIO_HOOK
    + """
import asyncio
import warnings

import pytest

from childwatch.pytest_plugin import anyio_backend_fixture

anyio_backend = anyio_backend_fixture(trio=False, options={"asyncio": {"debug": True}})

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.14+: asyncio's policies are deprecated
    DefaultPolicy = asyncio.DefaultEventLoopPolicy


class ProjectLoop(asyncio.SelectorEventLoop):
    pass


class ProjectPolicy(DefaultPolicy):
    def new_event_loop(self):
        return ProjectLoop()


@pytest.fixture(scope="session")
def event_loop_policy():
    return ProjectPolicy()
"""
)

_OWN_THINGS_SUITE = """
import asyncio
import pytest

LOOP_CLASS = {"asyncio": "ProjectLoop", "nosub": "NoSubprocessLoop"}


def running_class():
    return type(asyncio.get_running_loop()).__name__


@pytest.mark.asyncio
async def test_policy(loop_impl):
    assert running_class() == LOOP_CLASS[loop_impl]


@pytest.mark.anyio
async def test_anyio_first(loop_impl):
    assert asyncio.get_running_loop().get_debug()


@pytest.mark.anyio
async def test_anyio_second(loop_impl):
    assert asyncio.get_running_loop().get_debug()


async def start_a_child():
    proc = await asyncio.create_subprocess_exec("sh", "-c", "exit 4")
    return await proc.wait()


def test_subprocess(run_on_loop):
    assert run_on_loop(start_a_child, timeout=60) == 4


def test_another_failure(run_on_loop, loop_impl):
    assert loop_impl == "asyncio"
"""

_NO_SUBPROCESS_LOOP = """
import asyncio


class NoSubprocessLoop(asyncio.SelectorEventLoop):
    # asyncio's base class: NotImplementedError, as capabilities() reads off the class
    _make_subprocess_transport = asyncio.BaseEventLoop._make_subprocess_transport
"""


@needs_pytest_asyncio
@needs_anyio
def test_a_project_keeps_its_loop_its_anyio_options_and_skips_what_a_loop_lacks(
    pytester: pytest.Pytester,
) -> None:
    """pytest-asyncio's ``asyncio`` loop comes from the project's ``event_loop_policy``; the
    plugin's ``anyio_backend`` is per test (tests run in file order, not grouped by loop) and
    passes the project's backend options; a test that starts a subprocess on a loop whose
    ``capabilities()`` say it has none is skipped with that reason (another failure stays one),
    and ``childwatch_skip_unsupported = false`` keeps the failure."""
    write_ini(pytester, warnings='\n    ignore:Overriding the "event_loop_policy" fixture')
    pytester.makeconftest(_OWN_THINGS_CONFTEST)
    pytester.makepyfile(test_own=_OWN_THINGS_SUITE, nosub=_NO_SUBPROCESS_LOOP)
    pytester.syspathinsert()
    loops = "--loop-impls=asyncio,nosub=nosub:NoSubprocessLoop"
    result = run(pytester, loops)
    expected = {}
    for test in ("policy", "anyio_first", "anyio_second", "subprocess", "another_failure"):
        for loop in ("asyncio", "nosub"):
            expected[f"test_own.py::test_{test}[{loop}]"] = "PASSED"
    expected["test_own.py::test_subprocess[nosub]"] = "SKIPPED"
    expected["test_own.py::test_another_failure[nosub]"] = "FAILED"
    found = outcomes(result)
    assert found == expected and list(found) == list(expected), result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "SKIPPED *nosub lacks subprocesses: nosub.NoSubprocessLoop does not implement *(childwatch_skip_unsupported)"
        ]
    )
    result = run(pytester, loops, "-o", "childwatch_skip_unsupported=false", "-k", "test_subprocess")
    assert outcomes(result) == {
        "test_own.py::test_subprocess[asyncio]": "PASSED",
        "test_own.py::test_subprocess[nosub]": "FAILED",
    }, result.stdout.str()


# -- an environment where childwatch cannot work -------------------------------------------

_BROKEN_SITE = {
    # No waitid, neither in os nor through ctypes: childwatch imports, but cannot work.
    "no-waitid": """
import ctypes.util, os
for name in ("waitid", "pidfd_open"):
    if hasattr(os, name):
        delattr(os, name)
ctypes.util.find_library = lambda name: "libmissing-for-this-test.so.0"  # and so no libc to call
""",
    # Importing childwatch itself fails (a platform or interpreter it does not know):
    # a package of that name first on the path, that raises.
    "import-fails": "",
}

_UNRELATED_SUITE = """
import pytest


def test_unrelated():
    assert 1 + 1 == 2


@pytest.mark.childwatch_loops("asyncio")
def test_marked_for_childwatch():
    pass


def test_wants_a_loop(run_on_loop):
    raise AssertionError("must be skipped where childwatch cannot work")
"""


@pytest.mark.parametrize("how", sorted(_BROKEN_SITE))
def test_a_broken_environment_never_stops_pytest(how: str, tmp_path: Any) -> None:
    """With childwatch installed where it cannot work, an unrelated suite runs as
    before (exit 0): its markers and ``--loop-impls`` are still accepted, and a
    test that asks for a childwatch fixture is skipped with the reason."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_BROKEN_SITE[how])
    if how == "import-fails":
        (site / "childwatch").mkdir()
        (site / "childwatch" / "__init__.py").write_text(
            'raise RuntimeError("simulated: childwatch cannot be imported on this platform")\n'
        )
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_unrelated.py").write_text(_UNRELATED_SUITE)
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("PYTEST_ADDOPTS", None)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rs",
            "--strict-markers",
            "--loop-impls=asyncio",
        ],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed, 1 skipped" in out.stdout, out.stdout
    assert "childwatch cannot" in out.stdout, out.stdout
