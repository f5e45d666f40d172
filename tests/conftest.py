"""Shared fixtures: real children, real loops, and a leak check after every test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import childwatch
from childwatch.pytest_plugin import LoopFactory, LoopRunner, selected_loop_impls, unavailable_reason
from spawning import sh

pytest_plugins = ["pytester"]

WATCHERS = [
    childwatch.SafeChildWatcher,
    childwatch.FastChildWatcher,
    childwatch.MultiLoopChildWatcher,
    childwatch.ThreadedChildWatcher,
    childwatch.PidfdChildWatcher,
]
SIGCHLD_WATCHERS = (
    childwatch.SafeChildWatcher,
    childwatch.FastChildWatcher,
    childwatch.MultiLoopChildWatcher,
)
LOOP_NAMES = ("asyncio", "uvloop")
"""The loops these tests drive in this process, of those the plugin's ``--loop-impls``
selects (trio-asyncio patches asyncio: its tests run processes of their own)."""
TIMEOUT = 60.0


# -- children ---------------------------------------------------------------


def in_pid_namespace(args: List[str], *, mount_proc: bool = False, timeout: float) -> Dict[str, Any]:
    """Run ``python ARGS`` as pid 1 of a pid namespace of its own (``unshare``,
    needs root; ``mount_proc``: with its own /proc and mount namespace) and
    return the JSON line it prints last.  Skipped, with the reason, where no
    such namespace can be made or the script answers ``{"skip": reason}``."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1)")
    flags = ["--pid", "--fork", *(["--mount", "--mount-proc"] if mount_proc else [])]
    try:
        out = subprocess.run(
            [unshare, *flags, sys.executable, *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the pid namespace run did not end within {timeout} s")
    if out.returncode != 0 and "unshare" in out.stderr:
        pytest.skip(f"cannot make a pid namespace here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    report: Dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if "skip" in report:
        pytest.skip(report["skip"])
    return report


spawn = sh
"""Start ``sh -c script`` as a child of this process; return its pid."""


def spawn_exit(code: int) -> int:
    return spawn(f"exit {code}")


def spawn_signal(signum: int) -> int:
    # ulimit -c 0: a signal that dumps core must not leave a core file behind.
    return spawn(f"ulimit -c 0; kill -{int(signum)} $$")


def spawn_sleeper() -> int:
    return spawn("exec sleep 1000")


def state(pid: int) -> Optional[str]:
    """The /proc state letter of ``pid`` (``Z`` for a zombie), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def wait_zombie(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while state(pid) != "Z":
        assert time.monotonic() < deadline, f"pid {pid} did not exit"
        time.sleep(0.001)


def children() -> List[int]:
    """Pids of this process's children (live or zombie), from /proc."""
    pids: List[int] = []
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/self/task/{tid}/children") as f:
            pids.extend(int(p) for p in f.read().split())
    return pids


def reap(pid: int, kill: bool = True) -> int:
    """Reap ``pid`` ourselves (killing it first unless ``kill`` is false); return its returncode."""
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


async def breathe(i: int) -> None:
    """Let the loop run every 32 spawns, as real code does.

    A loop that never runs while hundreds of children exit overflows its
    signal wakeup socket (the stdlib loop then prints "Exception ignored when
    trying to write to the signal wakeup fd"); no status is lost by that.
    """
    if i % 32 == 31:
        await asyncio.sleep(0)


# -- callbacks ----------------------------------------------------------------


class Collector:
    """A thread-safe callback that records every ``(pid, returncode, args)`` call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: List[Tuple[int, int, Tuple[Any, ...]]] = []
        self.threads: List[str] = []

    def __call__(self, pid: int, returncode: int, *args: Any) -> None:
        with self._lock:
            self.calls.append((pid, returncode, args))
            self.threads.append(threading.current_thread().name)

    @property
    def results(self) -> Dict[int, int]:
        with self._lock:
            return {pid: rc for pid, rc, _ in self.calls}

    def count(self) -> int:
        with self._lock:
            return len(self.calls)

    async def wait(self, n: int, timeout: float = 30.0) -> Dict[int, int]:
        """Wait (polling, so it works from any context) until ``n`` calls arrived."""
        deadline = time.monotonic() + timeout
        while self.count() < n:
            assert time.monotonic() < deadline, f"only {self.count()} of {n} callbacks after {timeout}s"
            await asyncio.sleep(0.002)
        return self.results

    def wait_sync(self, n: int, timeout: float = 30.0) -> Dict[int, int]:
        deadline = time.monotonic() + timeout
        while self.count() < n:
            assert time.monotonic() < deadline, f"only {self.count()} of {n} callbacks after {timeout}s"
            time.sleep(0.002)
        return self.results

    def assert_once_each(self) -> None:
        pids = [pid for pid, _, _ in self.calls]
        assert len(pids) == len(set(pids)), "a pid was delivered twice"


# -- loops ------------------------------------------------------------------


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    """A fresh loop of the given family (the plugin's factory: skips where it cannot run)."""
    return LoopFactory(name)()


def run(loop_name: str, main: Callable[[], Awaitable[Any]], timeout: float = TIMEOUT) -> Any:
    """Run ``main()`` on a fresh loop of the given family, bounded by ``timeout`` (the plugin's runner)."""
    return LoopRunner(loop_name)(main, timeout=timeout)


SLOW_MODULES = {
    "test_pytest_plugin.py",  # a pytest process per test, often several
    "test_pid_reuse.py",
    "test_scale.py",
    "test_stress.py",
    "test_flood.py",
    "test_cli.py",  # every loop probed in processes of their own
    "test_every_loop.py",
}
"""The modules whose tests are all ``slow`` (minutes together); single slow tests carry the mark."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow", action="store_true", help="also run the slow tests (compat/matrix.py and CI do)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a test of many children, processes or loops: skipped unless pytest --slow"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """The quick loop (``pytest``) skips the slow tests, saying how to run them; ``--slow`` runs all."""
    skip = pytest.mark.skip(reason="slow: pytest --slow runs it (as compat/matrix.py and CI do)")
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if not config.getoption("--slow") and item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``loop_name`` × ``watcher_cls``: every loop of :data:`LOOP_NAMES` the plugin
    selects (one that cannot run here skipped with the reason), every watcher it supports
    (SIGCHLD watchers are refused on uvloop: test_watchers.py::test_uvloop_refuses_sigchld_watchers)."""
    names = set(metafunc.fixturenames)
    config = metafunc.config
    loops = [name for name in selected_loop_impls(config) if name in LOOP_NAMES]
    reasons = {name: unavailable_reason(name, config) for name in loops}
    marks = {name: [pytest.mark.skip(reason=reason)] if reason else [] for name, reason in reasons.items()}
    if {"loop_name", "watcher_cls"} <= names:
        pairs = [
            pytest.param(loop, cls, id=f"{loop}-{cls.__name__}", marks=marks[loop])
            for loop in loops
            for cls in WATCHERS
            if not (loop == "uvloop" and issubclass(cls, SIGCHLD_WATCHERS))
        ]
        metafunc.parametrize(("loop_name", "watcher_cls"), pairs)
    elif "loop_name" in names:
        metafunc.parametrize("loop_name", [pytest.param(loop, id=loop, marks=marks[loop]) for loop in loops])
    elif "watcher_cls" in names:
        metafunc.parametrize("watcher_cls", WATCHERS, ids=[cls.__name__ for cls in WATCHERS])


@pytest.fixture
def make_watcher(loop_name: str, watcher_cls: Any) -> Iterator[Callable[[], Any]]:
    """A factory for watchers of the parametrised class, closed after the test."""
    made: List[Any] = []

    def make() -> Any:
        watcher = watcher_cls()
        made.append(watcher)
        return watcher

    yield make
    for watcher in made:
        watcher.close()


# -- the leak check -------------------------------------------------------------


def _fds() -> set:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="session", autouse=True)
def uvloop_warmed_up() -> None:
    """libuv opens a process-wide signal pipe with its first loop and keeps it:
    open it before the first leak check so it is not counted as a leak."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.new_event_loop().close()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """After each test: no child (zombie or live), no new thread, fd or SIGCHLD handler."""
    threads_before = set(threading.enumerate())
    fds_before = _fds()
    handler_before = signal.getsignal(signal.SIGCHLD)
    yield
    leftover = children()
    for pid in leftover:
        with contextlib.suppress(ChildProcessError):
            reap(pid)
    deadline = time.monotonic() + 5
    while (
        any(not t.name.startswith("Trio thread") for t in set(threading.enumerate()) - threads_before)
        and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    # trio keeps idle worker threads cached for a few seconds by design.
    new_threads = {
        t for t in set(threading.enumerate()) - threads_before if not t.name.startswith("Trio thread")
    }
    new_fds = _fds() - fds_before
    handler_after = signal.getsignal(signal.SIGCHLD)
    signal.signal(signal.SIGCHLD, handler_before)
    assert not leftover, f"children left behind: {leftover}"
    assert not new_threads, f"threads left behind: {new_threads}"
    assert not new_fds, f"fds left behind: {sorted(new_fds)}"
    assert handler_after == handler_before, f"SIGCHLD handler left behind: {handler_after!r}"
