"""``await childwatch.wait_pid()`` with real children, on every installed async library.

Libraries: stdlib asyncio, uvloop, trio, anyio on its asyncio and trio
backends; trio-asyncio runs in a process of its own
(``wait_pid_trio_asyncio_child.py``) because importing it patches asyncio.
Tests taking ``mechanism`` run with a pidfd and again with ``pidfd_open``
failing (the polling fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import childwatch
from childwatch import _wait_pid
from conftest import (
    TIMEOUT,
    children,
    reap,
    spawn,
    spawn_exit,
    spawn_signal,
    spawn_sleeper,
    state,
    wait_zombie,
)
from conftest import run as run_asyncio

T = TypeVar("T")
SIGNALS = [signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGUSR1, signal.SIGABRT, signal.SIGSEGV]


# -- one small interface over every library ------------------------------------------


class Lib:
    """How to run a test body, sleep, gather and cancel in one async library."""

    name = ""

    def run(self, main: Callable[[], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        raise NotImplementedError

    async def gather(self, *fns: Callable[[], Awaitable[Any]]) -> list[Any]:
        raise NotImplementedError

    async def cancelled_after(
        self,
        seconds: float,
        fn: Callable[[], Awaitable[Any]],
        before_cancel: Callable[[], Any] = lambda: None,
    ) -> bool:
        """Run ``fn()``; after ``seconds``, call ``before_cancel()`` then cancel ``fn()``.

        True if ``fn()`` was cancelled, False if it had returned already.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class AsyncioLib(Lib):
    def __init__(self, loop_name: str) -> None:
        self.name = loop_name

    def run(self, main: Callable[[], Awaitable[T]]) -> T:
        return run_asyncio(self.name, main)  # type: ignore[no-any-return]

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def gather(self, *fns: Callable[[], Awaitable[Any]]) -> list[Any]:
        return list(await asyncio.gather(*(fn() for fn in fns)))

    async def cancelled_after(
        self,
        seconds: float,
        fn: Callable[[], Awaitable[Any]],
        before_cancel: Callable[[], Any] = lambda: None,
    ) -> bool:
        task = asyncio.ensure_future(fn())
        await asyncio.sleep(seconds)
        before_cancel()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False


class StructuredLib(Lib):
    """trio, or anyio on either backend: cancel scopes and task groups."""

    mod: Any

    def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        raise NotImplementedError

    def _task_group(self) -> Any:
        raise NotImplementedError

    def run(self, main: Callable[[], Awaitable[T]]) -> T:
        async def bounded() -> T:
            with self.mod.fail_after(TIMEOUT):
                return await main()

        return self._run(bounded)

    async def sleep(self, seconds: float) -> None:
        await self.mod.sleep(seconds)

    async def gather(self, *fns: Callable[[], Awaitable[Any]]) -> list[Any]:
        results: list[Any] = [None] * len(fns)

        async def one(i: int) -> None:
            results[i] = await fns[i]()

        async with self._task_group() as group:
            for i in range(len(fns)):
                group.start_soon(one, i)
        return results

    async def cancelled_after(
        self,
        seconds: float,
        fn: Callable[[], Awaitable[Any]],
        before_cancel: Callable[[], Any] = lambda: None,
    ) -> bool:
        scope = self.mod.CancelScope()

        async def run() -> None:
            with scope:
                await fn()

        async with self._task_group() as group:
            group.start_soon(run)
            await self.mod.sleep(seconds)
            before_cancel()
            scope.cancel()
        return bool(scope.cancelled_caught)


class TrioLib(StructuredLib):
    name = "trio"

    def __init__(self) -> None:
        self.mod = pytest.importorskip("trio")

    def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        return self.mod.run(fn)  # type: ignore[no-any-return]

    def _task_group(self) -> Any:
        return self.mod.open_nursery()


class AnyioLib(StructuredLib):
    def __init__(self, backend: str) -> None:
        self.mod = pytest.importorskip("anyio")
        if backend == "trio":
            pytest.importorskip("trio")
        self.backend = backend
        self.name = f"anyio-{backend}"

    def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        return self.mod.run(fn, backend=self.backend)  # type: ignore[no-any-return]

    def _task_group(self) -> Any:
        return self.mod.create_task_group()


def make_lib(name: str) -> Lib:
    if name in ("asyncio", "uvloop"):
        if name == "uvloop":
            pytest.importorskip("uvloop")
        return AsyncioLib(name)
    if name == "trio":
        return TrioLib()
    return AnyioLib(name.partition("-")[2])


@pytest.fixture(params=["asyncio", "uvloop", "trio", "anyio-asyncio", "anyio-trio"])
def lib(request: pytest.FixtureRequest) -> Lib:
    return make_lib(request.param)


def no_pidfd(pid: int, flags: int = 0) -> int:
    raise OSError(errno.ENOSYS, "pidfd_open is not available")


@pytest.fixture(params=["pidfd", "poll"])
def mechanism(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Wait with a pidfd, or with ``pidfd_open`` failing as on an old kernel."""
    if request.param == "poll":
        monkeypatch.setattr(os, "pidfd_open", no_pidfd, raising=False)
    yield request.param
    assert _wait_pid._children == {}, "wait_pid left entries in its table"


def wait(pid: Any) -> Callable[[], Awaitable[int]]:
    return functools.partial(childwatch.wait_pid, pid)


def killer(
    lib: Lib, pid: int, signum: int = signal.SIGKILL, after: float = 0.1
) -> Callable[[], Awaitable[None]]:
    async def kill() -> None:
        await lib.sleep(after)
        os.kill(pid, signum)

    return kill


def waiters(pid: int) -> int:
    child = _wait_pid._children.get(pid)
    return 0 if child is None else child.waiters


def fds() -> list[str]:
    return sorted(os.listdir("/proc/self/fd"))


def raises_at_once(coro: Coroutine[Any, Any, Any], exc: type) -> BaseException:
    """Assert that ``coro`` raises ``exc`` without ever suspending."""
    with pytest.raises(exc) as info:
        coro.send(None)
    return info.value


# -- statuses ------------------------------------------------------------------------


def test_exit_codes_and_signals(lib: Lib, mechanism: str) -> None:
    expected = {spawn_exit(code): code for code in (0, 1, 7, 128, 255)}
    expected.update({spawn_signal(signum): -signum for signum in SIGNALS})
    sleeper = spawn_sleeper()
    expected[sleeper] = -signal.SIGTERM

    async def main() -> list[int]:
        return await lib.gather(*map(wait, expected), killer(lib, sleeper, signal.SIGTERM))

    results = lib.run(main)
    assert dict(zip(expected, results)) == expected
    assert not set(expected) & set(children()), "wait_pid did not reap"


def test_child_that_exited_before_the_call(lib: Lib, mechanism: str) -> None:
    pid = spawn_exit(3)
    wait_zombie(pid)
    assert lib.run(wait(pid)) == 3
    assert state(pid) is None


def test_child_that_exits_on_its_own_later(lib: Lib, mechanism: str) -> None:
    pid = spawn("sleep 0.3; exit 42")
    assert lib.run(wait(pid)) == 42


# -- what can be waited for -----------------------------------------------------------


def test_fork_posix_spawn_and_popen(lib: Lib) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
        forked = os.fork()
    if forked == 0:
        os._exit(5)
    spawned = spawn("exit 6")
    popen = subprocess.Popen(["sh", "-c", "exit 7"])
    killed = subprocess.Popen(["sleep", "1000"])

    async def main() -> list[int]:
        return await lib.gather(
            wait(forked), wait(spawned), wait(popen), wait(killed), killer(lib, killed.pid)
        )

    assert lib.run(main) == [5, 6, 7, -signal.SIGKILL, None]
    for p, code in ((popen, 7), (killed, -signal.SIGKILL)):
        assert p.returncode == code
        assert p.poll() == code
        assert p.wait(timeout=TIMEOUT) == code


def test_popen_already_waited_returns_its_returncode(lib: Lib) -> None:
    popen = subprocess.Popen(["sh", "-c", "exit 9"])
    popen.wait(timeout=TIMEOUT)
    assert lib.run(wait(popen)) == 9


def test_popen_reaped_by_its_own_wait_meanwhile(lib: Lib, mechanism: str) -> None:
    """A Popen waited for while wait_pid() was waiting: its returncode is used."""
    popen = subprocess.Popen(["sleep", "1000"])

    async def main() -> list[Any]:
        async def kill_and_wait() -> None:
            while waiters(popen.pid) == 0:
                await lib.sleep(0.01)
            popen.kill()
            popen.wait(timeout=TIMEOUT)  # blocks the loop: wait_pid cannot look first

        return await lib.gather(wait(popen), kill_and_wait)

    assert lib.run(main) == [-signal.SIGKILL, None]


# -- cancellation ---------------------------------------------------------------------


def test_cancelled_wait_hands_the_child_back(lib: Lib, mechanism: str) -> None:
    pid = spawn_sleeper()

    async def main() -> int:
        before = fds()
        assert await lib.cancelled_after(0.2, wait(pid))
        assert fds() == before, "the pidfd outlived the cancelled wait"
        assert state(pid) not in (None, "Z"), "the child should still run"
        assert waiters(pid) == 0
        # The child is still ours: wait again, or reap it by hand.
        assert await lib.cancelled_after(0.05, wait(pid))
        os.kill(pid, signal.SIGTERM)
        wait_zombie(pid)
        return await childwatch.wait_pid(pid)

    assert lib.run(main) == -signal.SIGTERM
    assert state(pid) is None


def test_cancelled_wait_leaves_the_zombie_unreaped(lib: Lib, mechanism: str) -> None:
    pid = spawn("sleep 0.5; exit 4")

    async def main() -> None:
        assert await lib.cancelled_after(0.1, wait(pid))

    lib.run(main)
    wait_zombie(pid)
    time.sleep(0.1)
    assert state(pid) == "Z", "a cancelled wait must not reap"
    assert reap(pid, kill=False) == 4


def test_cancelled_after_the_exit_but_before_the_status(lib: Lib, mechanism: str) -> None:
    """Cancelled after the child exited, before the waiter woke up: not reaped."""
    pid = spawn_sleeper()

    def kill_and_block_until_dead() -> None:
        os.kill(pid, signal.SIGKILL)
        wait_zombie(pid)  # blocks the loop: the waiter cannot wake up first

    async def main() -> bool:
        return await lib.cancelled_after(0.2, wait(pid), kill_and_block_until_dead)

    if lib.run(main):
        assert state(pid) == "Z", "a cancelled wait must not reap"
        assert reap(pid, kill=False) == -signal.SIGKILL
    else:
        # Only a polling waiter can come first: its timer may expire while the
        # loop is blocked, and then it reads the status before the cancellation.
        assert mechanism == "poll", "the waiter woke before the cancellation"
        assert state(pid) is None, "a wait that returned must have reaped"


def test_cancelled_waiter_does_not_disturb_the_others(lib: Lib, mechanism: str) -> None:
    pid = spawn_sleeper()

    async def main() -> list[Any]:
        return await lib.gather(
            wait(pid),
            functools.partial(lib.cancelled_after, 0.05, wait(pid)),
            wait(pid),
            killer(lib, pid, after=0.3),
        )

    assert lib.run(main) == [-signal.SIGKILL, True, -signal.SIGKILL, None]
    assert state(pid) is None


def test_last_waiter_cancelled_after_another_got_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once one wait_pid() has returned the status, the child is reaped when the
    last waiter leaves, even by cancellation (and that waiter's Popen learns it)."""
    popen = subprocess.Popen(["sleep", "1000"])

    async def main() -> None:
        first = asyncio.ensure_future(childwatch.wait_pid(popen.pid))
        await asyncio.sleep(0)
        # The second waiter polls (up to 50 ms apart): the first, on its pidfd, wins.
        monkeypatch.setattr(os, "pidfd_open", no_pidfd, raising=False)
        second = asyncio.ensure_future(childwatch.wait_pid(popen))
        await asyncio.sleep(0.2)
        assert waiters(popen.pid) == 2
        popen.kill()
        assert await first == -signal.SIGKILL
        if not second.done():
            assert state(popen.pid) == "Z", "reaped while a waiter was still waiting"
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            assert await second == -signal.SIGKILL
        assert waiters(popen.pid) == 0

    AsyncioLib("asyncio").run(main)
    assert popen.returncode == -signal.SIGKILL
    assert popen.pid not in children()


# -- several waiters ------------------------------------------------------------------


def test_concurrent_waiters_each_get_the_status_once(lib: Lib, mechanism: str) -> None:
    pid = spawn_sleeper()
    popen = subprocess.Popen(["sleep", "1000"])

    async def main() -> list[Any]:
        async def kill_both() -> None:
            await lib.sleep(0.2)
            os.kill(pid, signal.SIGUSR1)
            popen.terminate()

        return await lib.gather(*[wait(pid)] * 5, wait(popen), wait(popen.pid), wait(popen), kill_both)

    assert lib.run(main) == [-signal.SIGUSR1] * 5 + [-signal.SIGTERM] * 3 + [None]
    assert popen.returncode == -signal.SIGTERM
    assert not {pid, popen.pid} & set(children())


def test_waiters_in_two_threads_and_loops(lib: Lib) -> None:
    pid = spawn_sleeper()
    got: list[int] = []
    other = threading.Thread(target=lambda: got.append(AsyncioLib("asyncio").run(wait(pid))))
    other.start()
    try:

        async def main() -> int:
            async def kill_when_both_wait() -> None:
                while waiters(pid) < 2:
                    await lib.sleep(0.01)
                os.kill(pid, signal.SIGHUP)

            results = await lib.gather(wait(pid), kill_when_both_wait)
            return results[0]  # type: ignore[no-any-return]

        assert lib.run(main) == -signal.SIGHUP
    finally:
        other.join(TIMEOUT)
    assert got == [-signal.SIGHUP]
    assert state(pid) is None


def test_status_reaped_by_someone_else_is_255_with_a_warning(
    lib: Lib, caplog: pytest.LogCaptureFixture
) -> None:
    pid = spawn_sleeper()

    async def main() -> list[Any]:
        async def steal() -> None:
            while waiters(pid) == 0:
                await lib.sleep(0.01)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)  # blocks the loop: wait_pid cannot look first

        return await lib.gather(wait(pid), steal)

    assert lib.run(main) == [255, None]
    assert f"pid {pid} was reaped by someone else" in caplog.text


# -- errors -----------------------------------------------------------------------------


def test_not_a_child_raises_at_once(lib: Lib) -> None:
    reaped = spawn_exit(0)
    reap(reaped, kill=False)

    async def main() -> None:
        for pid in (1, os.getpid(), reaped):
            error = raises_at_once(childwatch.wait_pid(pid), ChildProcessError)
            assert error.errno == errno.ECHILD
            assert f"pid {pid} is not a child of this process" in str(error)
        assert _wait_pid._children == {}

    lib.run(main)


@pytest.mark.parametrize(
    ("pid", "error"),
    [
        (True, TypeError),
        (1.0, TypeError),
        ("123", TypeError),
        (None, TypeError),
        (asyncio, TypeError),
        (0, ValueError),
        (-5, ValueError),
        (2**31, ValueError),
    ],
)
def test_bad_argument_raises_at_once(pid: Any, error: type) -> None:
    raises_at_once(childwatch.wait_pid(pid), error)


def test_outside_any_async_library() -> None:
    pid = spawn_exit(0)
    raises_at_once(childwatch.wait_pid(pid), RuntimeError)
    assert reap(pid, kill=False) == 0, "the child must be left alone"


# -- trio-asyncio: importing it patches asyncio, so it runs in a process of its own ------


def test_trio_asyncio_in_its_own_process() -> None:
    script = Path(__file__).with_name("wait_pid_trio_asyncio_child.py")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT * 2, check=False
    )
    if done.returncode == 77:
        pytest.skip(done.stdout.strip())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok" in done.stdout
