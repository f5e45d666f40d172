"""Faults around a watcher, one test each, with real children.

Callbacks that raise; the loop or the watcher closed while children are
pending; ``os.fork()`` with an active watcher; ``pidfd_open`` unavailable; fd
exhaustion; a flood of signals (EINTR); someone else's SIGCHLD handler;
children reaped behind the watcher's back; stopped and continued children;
``Process.kill()`` racing the child's exit; pids reused after delivery; a
SIGCHLD arriving in the middle of the watcher's own code.

Every test ends with the autouse ``no_leaks`` check (no child, zombie, thread,
fd or SIGCHLD handler left behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import childwatch
from childwatch._syscalls import peek
from childwatch.watchers._base import WatcherBase
from conftest import (
    SIGCHLD_WATCHERS,
    breathe,
    children,
    in_pid_namespace,
    new_loop,
    reap,
    run,
    spawn,
    spawn_exit,
    spawn_signal,
    spawn_sleeper,
    state,
    wait_zombie,
)

NEW_STDLIB = sys.version_info >= (3, 14)


# -- helpers ----------------------------------------------------------------------


class Calls:
    """A callback recording ``(pid, returncode, args)``, lock-free (list.append).

    MultiLoop may run callbacks inside a signal handler in the main thread,
    which must never wait for a lock the interrupted main thread holds.
    """

    def __init__(self) -> None:
        self.calls: List[Tuple[int, int, Tuple[Any, ...]]] = []

    def __call__(self, pid: int, returncode: int, *args: Any) -> None:
        self.calls.append((pid, returncode, args))

    def by_pid(self) -> Dict[int, List[int]]:
        out: Dict[int, List[int]] = {}
        for pid, rc, _ in list(self.calls):
            out.setdefault(pid, []).append(rc)
        return out

    def has(self, pids: Any) -> bool:
        return set(pids) <= {pid for pid, _, _ in list(self.calls)}

    async def wait(self, pids: Any, timeout: float = 30.0) -> Dict[int, List[int]]:
        deadline = time.monotonic() + timeout
        while not self.has(pids):
            if time.monotonic() > deadline:
                missing = set(pids) - set(self.by_pid())
                raise AssertionError(f"no status after {timeout}s for {sorted(missing)}")
            await asyncio.sleep(0.005)
        return self.by_pid()

    def wait_sync(self, pids: Any, timeout: float = 30.0) -> Dict[int, List[int]]:
        deadline = time.monotonic() + timeout
        while not self.has(pids):
            if time.monotonic() > deadline:
                missing = set(pids) - set(self.by_pid())
                raise AssertionError(f"no status after {timeout}s for {sorted(missing)}")
            time.sleep(0.005)
        return self.by_pid()


def exactly(calls: Calls, expected: Dict[int, int]) -> None:
    """Each expected pid delivered exactly once with its status; nothing else delivered."""
    assert calls.by_pid() == {pid: [rc] for pid, rc in expected.items()}


def wait_state(pid: int, wanted: Callable[[Optional[str]], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not wanted(state(pid)):
        assert time.monotonic() < deadline, f"pid {pid} stuck in state {state(pid)!r}"
        time.sleep(0.001)


async def settle_zombies(timeout: float = 10.0) -> List[int]:
    """Our children left once the watcher had time to reap (it reaps right after each callback)."""
    deadline = time.monotonic() + timeout
    while children() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return children()


async def kill_and_settle(got: Calls, expected: Dict[int, int], sleepers: List[int]) -> None:
    """SIGKILL the sleepers, then check that every expected status came exactly
    once and that no zombie is left."""
    for pid in sleepers:
        os.kill(pid, signal.SIGKILL)
        expected[pid] = -signal.SIGKILL
    await got.wait(expected)
    await asyncio.sleep(0.1)
    exactly(got, expected)
    assert await settle_zombies() == []


def attach_here(watcher: Any) -> None:
    watcher.attach_loop(asyncio.get_running_loop())


# -- 1. callbacks that raise ----------------------------------------------------------


class Boom(Exception):
    pass


RAISED = [ValueError, RuntimeError, OSError, ZeroDivisionError, Boom, KeyError]


def test_raising_callbacks_under_load(
    loop_name: str, watcher_cls: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Every third callback raises: each error reported exactly once (the loop's
    exception handler, or the ``childwatch`` logger outside any loop), every
    other status delivered, every child reaped, the watcher still usable."""
    raised: List[BaseException] = []
    reported: List[BaseException] = []
    good = Calls()
    good_expected: Dict[int, int] = {}
    bad_pids: List[int] = []
    lock = threading.Lock()

    def bad_callback(i: int) -> Callable[..., None]:
        def bad(pid: int, returncode: int) -> None:
            exc = RAISED[i % len(RAISED)](f"callback {i} for pid {pid}")
            with lock:
                raised.append(exc)
            raise exc

        return bad

    def register(watcher: Any, i: int, rng: random.Random) -> None:
        code = rng.randrange(256)
        pid = spawn_exit(code)
        with lock:
            if i % 3:
                good_expected[pid] = code
            else:
                bad_pids.append(pid)
        watcher.add_child_handler(pid, good if i % 3 else bad_callback(i))

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reported.append(ctx["exception"]))
        watcher = watcher_cls()
        try:
            attach_here(watcher)
            rng = random.Random(1)
            for i in range(60):
                register(watcher, i, rng)
                if i % 8 == 7:
                    await asyncio.sleep(0)
            if watcher_cls in (childwatch.ThreadedChildWatcher, childwatch.MultiLoopChildWatcher):
                # Registered outside any loop: called back in the waiter thread
                # or the signal handler, errors go to the childwatch logger.
                thread_rng = random.Random(2)
                thread = threading.Thread(
                    target=lambda: [register(watcher, i, thread_rng) for i in range(60, 90)]
                )
                thread.start()
                while thread.is_alive():
                    await asyncio.sleep(0.005)
            await good.wait(good_expected)
            deadline = time.monotonic() + 30
            while len(raised) < len(bad_pids):
                assert time.monotonic() < deadline, (
                    f"only {len(raised)} of {len(bad_pids)} raising callbacks called"
                )
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.2)
            assert await settle_zombies() == [], "the child of a raising callback must be reaped too"
            exactly(good, good_expected)
            last = spawn_exit(77)
            watcher.add_child_handler(last, good)
            await good.wait([last])
        finally:
            watcher.close()

    with caplog.at_level(logging.ERROR, logger="childwatch"):
        run(loop_name, main)
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    errors = reported + logged
    assert len(raised) == len(bad_pids)
    assert sorted(map(id, errors)) == sorted(map(id, raised)), (
        f"{len(raised)} callbacks raised, {len(errors)} errors reported: {errors[:3]}"
    )


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_base_exception_in_a_waiter_thread_callback_stops_nothing(exc_type: type) -> None:
    """Threaded, children registered outside any loop: their callbacks run in
    childwatch's own waiter thread.  A callback raising SystemExit or
    KeyboardInterrupt there must not stop the deliveries of other children,
    nor leave the watcher writing into fds it closed (which another file may
    have taken meanwhile), nor make close() fail."""
    watcher = childwatch.ThreadedChildWatcher()
    files: List[Any] = []
    leftover: List[int] = []
    try:

        def bad(pid: int, returncode: int) -> None:
            raise exc_type("from a callback")

        first = spawn_exit(1)
        watcher.add_child_handler(first, bad)
        deadline = time.monotonic() + 10
        while first in children() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        # Files opened now take the lowest free fds, including any the watcher closed.
        files = [tempfile.TemporaryFile() for _ in range(4)]  # noqa: SIM115 (closed in finally)
        got = Calls()
        later = {spawn_exit(c): c for c in (2, 3, 4)}
        for pid in later:
            watcher.add_child_handler(pid, got)
        got.wait_sync(later, timeout=10)
        exactly(got, later)
        for f in files:
            f.seek(0)
            assert f.read() == b"", "the watcher wrote into a file that reused one of its closed fds"
    finally:
        for f in files:
            f.close()
        try:
            watcher.close()
        finally:
            leftover = children()
            for pid in leftover:
                reap(pid)
    assert leftover == []


# -- 2. the loop closed while children are pending -----------------------------------


def test_loop_closed_while_children_are_pending(loop_name: str, watcher_cls: Any) -> None:
    """Children registered from loop A; A stops and closes while some are still
    running and some exit meanwhile.  Once the watcher has a live loop B again
    (``attach_loop(B)`` and the same pids registered again from B), every status
    reaches one of the two callbacks exactly once, right, and nothing is left
    behind: no zombie, no fd, no thread."""
    watcher = watcher_cls()
    first, second = Calls(), Calls()
    expected: Dict[int, int] = {}
    try:
        loop_a = new_loop(loop_name)
        sleepers: List[int] = []

        async def in_a() -> None:
            attach_here(watcher)
            quick = {spawn_exit(c): c for c in (0, 5, 200)}
            for pid in quick:
                watcher.add_child_handler(pid, first)
            sleepers.extend(spawn_sleeper() for _ in range(6))
            for pid in sleepers:
                watcher.add_child_handler(pid, first)
            expected.update(quick)
            await first.wait(quick)
            for pid in sleepers[:2]:  # die while A runs
                os.kill(pid, signal.SIGTERM)
                expected[pid] = -signal.SIGTERM
            await first.wait(sleepers[:2])

        try:
            loop_a.run_until_complete(asyncio.wait_for(in_a(), 30))
            # A is stopped but not closed: these exit now; the watcher may try to
            # hand them to A, which will never run again.
            for pid in sleepers[2:4]:
                os.kill(pid, signal.SIGKILL)
                expected[pid] = -signal.SIGKILL
                wait_state(pid, lambda s: s in ("Z", None))
            time.sleep(0.2)
        finally:
            loop_a.close()
        os.kill(sleepers[4], signal.SIGINT)  # exits while there is no loop at all
        expected[sleepers[4]] = -signal.SIGINT
        time.sleep(0.2)

        async def in_b() -> None:
            attach_here(watcher)
            for pid in sleepers[2:]:
                try:
                    watcher.add_child_handler(pid, second)
                except ChildProcessError:
                    # Only acceptable if its status already went to the first callback.
                    assert pid in first.by_pid(), f"pid {pid}: neither delivered nor registrable"
            os.kill(sleepers[5], signal.SIGHUP)
            expected[sleepers[5]] = -signal.SIGHUP
            deadline = time.monotonic() + 10
            while not all(pid in first.by_pid() or pid in second.by_pid() for pid in expected):
                if time.monotonic() > deadline:
                    lost = [p for p in expected if p not in first.by_pid() and p not in second.by_pid()]
                    raise AssertionError(
                        f"statuses lost after the loop closed: {lost} (states {[state(p) for p in lost]})"
                    )
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            assert await settle_zombies() == []

        run(loop_name, in_b)
        merged: Dict[int, List[int]] = {}
        for calls in (first, second):
            for pid, rcs in calls.by_pid().items():
                merged.setdefault(pid, []).extend(rcs)
        assert merged == {pid: [rc] for pid, rc in expected.items()}
    finally:
        with contextlib.suppress(RuntimeError):
            watcher.close()


# -- 3. the watcher closed while children are pending -----------------------------------


def test_watcher_closed_while_children_are_pending(loop_name: str, watcher_cls: Any) -> None:
    """close() leaves registered children alone (documented): no callback after
    close() returned, and each child is either delivered before close() or
    still ours, unreaped, with its exact status for the caller to collect."""

    async def main() -> None:
        watcher = watcher_cls()
        got = Calls()
        attach_here(watcher)
        running = [spawn_sleeper() for _ in range(4)]
        exited = {spawn_exit(c): c for c in (0, 9, 255)}
        for pid in exited:
            wait_zombie(pid)
        for pid in running + list(exited):
            watcher.add_child_handler(pid, got)
        watcher.close()
        assert "closed" in repr(watcher)
        before = got.by_pid()
        for pid in running:
            os.kill(pid, signal.SIGUSR1)
        await asyncio.sleep(0.3)
        assert got.by_pid() == before, "a callback ran after close() returned"
        expected = {**{pid: -signal.SIGUSR1 for pid in running}, **exited}
        for pid, rc in expected.items():
            if pid in before:
                assert before[pid] == [rc]
                assert pid not in children()
            else:
                assert reap(pid, kill=False) == rc
        assert await settle_zombies() == []

    run(loop_name, main)


def test_watcher_closed_from_its_own_callback(loop_name: str, watcher_cls: Any) -> None:
    """close() called inside a callback: no error, no further callback, the
    other registered children left alone for us to reap."""

    async def main() -> None:
        watcher = watcher_cls()
        got = Calls()
        errors: List[BaseException] = []

        def closing(pid: int, returncode: int) -> None:
            got(pid, returncode)
            try:
                watcher.close()
            except BaseException as exc:
                errors.append(exc)

        attach_here(watcher)
        others = [spawn_sleeper() for _ in range(3)]
        for pid in others:
            watcher.add_child_handler(pid, got)
        trigger = spawn_exit(12)
        watcher.add_child_handler(trigger, closing)
        await got.wait([trigger])
        for pid in others:
            os.kill(pid, signal.SIGTERM)
        await asyncio.sleep(0.3)
        assert errors == []
        assert got.by_pid() == {trigger: [12]}
        assert [reap(pid, kill=False) for pid in others] == [-signal.SIGTERM] * 3
        assert await settle_zombies() == []

    run(loop_name, main)


# -- 4. os.fork() with an active watcher ----------------------------------------------------


FORK_TIMEOUT = 30.0


def test_fork_child_starts_clean(watcher_cls: Any) -> None:
    """os.fork() while a watcher has registered, still running children.

    In the child process: none of the parent's callbacks ever runs (those
    children are not its children), ``subprocess.run`` statuses are intact,
    the watcher serves a child of its own on a new loop, and closing it there
    works.  In the parent: nothing changes (not even by the child's close(),
    though the child shares the parent's epoll instance and pipes), every
    pending status arrives exactly.
    """

    async def main() -> None:
        watcher = watcher_cls()
        parent_calls = Calls()
        try:
            attach_here(watcher)
            pending = [spawn_sleeper() for _ in range(4)]
            for pid in pending[:3]:
                watcher.add_child_handler(pid, parent_calls)
            # And one registered outside any loop (from a bare thread).
            thread = threading.Thread(target=watcher.add_child_handler, args=(pending[3], parent_calls))
            thread.start()
            thread.join()
            done = spawn_exit(3)
            watcher.add_child_handler(done, parent_calls)
            await parent_calls.wait([done])
            read_end, write_end = os.pipe()
            with warnings.catch_warnings():
                # 3.12+: "This process is multi-threaded, use of fork() may lead
                # to deadlocks in the child" (Threaded's waiter thread): the point here.
                warnings.simplefilter("ignore", DeprecationWarning)
                child = os.fork()
            if child == 0:  # pragma: no cover - runs in the fork child
                out: Dict[str, Any] = {}
                try:
                    os.close(read_end)
                    out["run"] = [subprocess.run(["sh", "-c", "exit 7"]).returncode for _ in range(3)]
                    time.sleep(0.2)
                    out["parent_callbacks_in_child"] = len(parent_calls.calls) - 1
                    fresh = Calls()

                    async def in_child() -> None:
                        if watcher_cls is not childwatch.ThreadedChildWatcher:
                            attach_here(watcher)
                        pid = spawn_exit(9)
                        watcher.add_child_handler(pid, fresh, "fresh")
                        with contextlib.suppress(AssertionError):
                            await fresh.wait([pid], timeout=10)
                        await asyncio.sleep(0.2)
                        out["fresh"] = [(rc, args) for _, rc, args in fresh.calls]

                    loop = asyncio.new_event_loop()
                    try:
                        loop.run_until_complete(asyncio.wait_for(in_child(), FORK_TIMEOUT / 2))
                    finally:
                        with contextlib.suppress(Exception):
                            loop.close()
                    out["parent_callbacks_in_child"] = len(parent_calls.calls) - 1
                    # A child cleaning up what it inherited must not disturb the parent.
                    watcher.close()
                except BaseException as exc:
                    out["error"] = repr(exc)
                finally:
                    with contextlib.suppress(BaseException):
                        os.write(write_end, json.dumps(out).encode())
                    os._exit(0)
            os.close(write_end)
            # The fork child is a child like any other: the watcher collects it
            # (Fast would reap it anyway).
            forked = Calls()
            watcher.add_child_handler(child, forked)
            try:
                await forked.wait([child], timeout=FORK_TIMEOUT)
            except AssertionError:
                os.kill(child, signal.SIGKILL)
                await forked.wait([child])
                raise AssertionError("the fork child hung") from None
            assert forked.by_pid() == {child: [0]}
            with os.fdopen(read_end, "rb") as f:
                report = json.loads(f.read() or b"{}")
            for pid in pending:
                os.kill(pid, signal.SIGKILL)
            await parent_calls.wait(pending)
            await asyncio.sleep(0.1)
            exactly(parent_calls, {done: 3, **{pid: -signal.SIGKILL for pid in pending}})
            assert report == {
                "run": [7, 7, 7],
                "parent_callbacks_in_child": 0,
                "fresh": [[9, ["fresh"]]],
            }, report
        finally:
            watcher.close()

    run("asyncio", main)


# -- 5. pidfd_open unavailable ----------------------------------------------------------


PIDFD_FAILURES = {
    # What pidfd_open raises on a kernel without it / under a seccomp filter.
    "ENOSYS": lambda: OSError(errno.ENOSYS, os.strerror(errno.ENOSYS)),
    "EPERM": lambda: PermissionError(errno.EPERM, os.strerror(errno.EPERM)),
}


def no_such_call(*args: Any) -> int:
    raise OSError(errno.ENOSYS, "pidfd_open is not available here")


def break_pidfd_open(monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    if failure == "missing":  # a Python without os.pidfd_open, on a platform without the call
        monkeypatch.delattr(os, "pidfd_open", raising=False)
        monkeypatch.setattr(childwatch._syscalls, "c_pidfd_open", no_such_call)
        return

    def pidfd_open(pid: int, flags: int = 0) -> int:
        raise PIDFD_FAILURES[failure]()

    monkeypatch.setattr(os, "pidfd_open", pidfd_open, raising=False)


@pytest.mark.parametrize("failure", ["ENOSYS", "EPERM", "missing"])
def test_threaded_without_pidfd_waits_in_one_fdless_thread(
    loop_name: str, failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No pidfd_open (old kernel, seccomp, no such function): every child is
    waited for by the one fd-less waiter thread, with no fd; nothing lost,
    the thread gone once the last child is delivered."""
    break_pidfd_open(monkeypatch, failure)
    threads_before = set(threading.enumerate())

    async def main() -> None:
        fds_before = len(os.listdir("/proc/self/fd"))
        watcher = childwatch.ThreadedChildWatcher()
        got = Calls()
        try:
            expected: Dict[int, int] = {}
            sleepers = [spawn_sleeper() for _ in range(5)]
            for pid in sleepers:
                watcher.add_child_handler(pid, got)
            for i in range(30):
                pid = spawn_exit(i * 8)
                watcher.add_child_handler(pid, got)
                expected[pid] = i * 8
            for signum in (signal.SIGTERM, signal.SIGSEGV):
                pid = spawn_signal(signum)
                watcher.add_child_handler(pid, got)
                expected[pid] = -signum
            zombie = spawn_exit(66)
            wait_zombie(zombie)
            watcher.add_child_handler(zombie, got)
            expected[zombie] = 66
            from_thread: Dict[int, int] = {}

            def register_from_a_thread() -> None:
                for _ in range(10):
                    pid = spawn_exit(31)
                    from_thread[pid] = 31
                    watcher.add_child_handler(pid, got)

            thread = threading.Thread(target=register_from_a_thread)
            thread.start()
            while thread.is_alive():
                await asyncio.sleep(0.005)
            expected.update(from_thread)
            await got.wait(expected)
            mine = [t.name for t in set(threading.enumerate()) - threads_before]
            assert mine == ["childwatch-fdless"], f"one thread for every child, not {mine}"
            assert len(os.listdir("/proc/self/fd")) == fds_before, "no fd without pidfd"
            await kill_and_settle(got, expected, sleepers)
        finally:
            watcher.close()

    run(loop_name, main)


def test_fdless_waiter_outlives_close_until_an_exit_and_is_reused() -> None:
    """The fd-less waiter cannot be interrupted in ``waitid``: closed with a
    child still running, it stays until some child of the process exits; a
    registration meanwhile reopens the watcher on that same thread, and the
    dropped child is neither delivered nor reaped."""

    async def main() -> None:
        watcher = childwatch.ThreadedChildWatcher(fd_share=0)
        got = Calls()
        dropped = spawn_sleeper()
        try:
            watcher.add_child_handler(dropped, got)
            (thread,) = [t for t in threading.enumerate() if t.name == "childwatch-fdless"]
            await asyncio.sleep(0.2)  # it reaches its waitid
            watcher.close()
            await asyncio.sleep(0.1)
            assert thread.is_alive(), "blocked in waitid: it cannot have ended"
            later = spawn_exit(5)
            watcher.add_child_handler(later, got)
            await got.wait([later])
            assert [t for t in threading.enumerate() if t.name == "childwatch-fdless"] in ([thread], [])
            os.kill(dropped, signal.SIGTERM)
            wait_zombie(dropped)
            thread.join(5)
            assert not thread.is_alive(), "an exit wakes it, and it has nothing left to wait for"
            exactly(got, {later: 5})
            assert reap(dropped, kill=False) == -signal.SIGTERM, "dropped by close(): the caller's to reap"
        finally:
            watcher.close()

    run("asyncio", main)


@pytest.mark.parametrize("failure", ["ENOSYS", "EPERM"])
def test_pidfd_watcher_raises_when_pidfd_open_fails(
    loop_name: str, failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PidfdChildWatcher has no fallback: the registration raises the OSError
    (same type and errno, naming pidfd_open and the pid), registers nothing,
    and leaves the child alone for the caller."""

    async def main() -> None:
        watcher = childwatch.PidfdChildWatcher()
        got = Calls()
        pid = spawn_exit(21)
        try:
            with monkeypatch.context() as patch:
                break_pidfd_open(patch, failure)
                with pytest.raises(OSError) as info:
                    watcher.add_child_handler(pid, got)
            wanted = PIDFD_FAILURES[failure]()
            assert (type(info.value), info.value.errno) == (type(wanted), wanted.errno)
            message = str(info.value)
            assert "pidfd_open" in message and str(pid) in message, f"unclear error: {message!r}"
            assert watcher.remove_child_handler(pid) is False
            await asyncio.sleep(0.1)
            assert got.calls == []
            assert reap(pid, kill=False) == 21
            pid = 0
            # pidfd_open works again: so does the watcher.
            again = spawn_exit(22)
            watcher.add_child_handler(again, got)
            await got.wait([again])
            exactly(got, {again: 22})
        finally:
            watcher.close()
            if pid and pid in children():
                reap(pid)

    run(loop_name, main)


# -- 6. fd exhaustion ------------------------------------------------------------------------


@contextlib.contextmanager
def fds_exhausted(free: int) -> Iterator[None]:
    """Lower the soft RLIMIT_NOFILE and fill the table so exactly ``free`` fds remain."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    fillers: List[int] = []
    limit = in_use + 64 if soft == resource.RLIM_INFINITY else min(in_use + 64, soft)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        while True:
            try:
                fillers.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        for _ in range(free):
            os.close(fillers.pop())
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("free", [0, 1, 2])
def test_fd_exhaustion(watcher_cls: Any, free: int) -> None:
    """With only ``free`` fds left, each registration either works or raises
    OSError(EMFILE) and registers nothing; once fds are back, registering the
    refused ones again works: nothing lost, no zombie, close() works."""

    async def main() -> None:
        watcher = watcher_cls()
        got = Calls()
        refused: List[int] = []
        try:
            attach_here(watcher)
            sleepers = [spawn_sleeper() for _ in range(4)]
            exited = {spawn_exit(c): c for c in (13, 14)}
            for pid in exited:
                wait_zombie(pid)
            with fds_exhausted(free):
                for pid in sleepers + list(exited):
                    try:
                        watcher.add_child_handler(pid, got)
                    except OSError as exc:
                        assert exc.errno == errno.EMFILE, exc
                        refused.append(pid)
            for pid in refused:
                assert watcher.remove_child_handler(pid) is False, f"pid {pid} refused yet registered"
                watcher.add_child_handler(pid, got)
            for pid in sleepers:
                os.kill(pid, signal.SIGTERM)
            expected = {**exited, **{pid: -signal.SIGTERM for pid in sleepers}}
            await got.wait(expected, timeout=15)
            await asyncio.sleep(0.1)
            exactly(got, expected)
            assert await settle_zombies() == []
        finally:
            watcher.close()

    run("asyncio", main)


def test_pidfd_watcher_tells_the_fd_limit() -> None:
    """At EMFILE, PidfdChildWatcher's error keeps the errno and says what is
    wrong (the soft limit, how many fds the process and the watcher hold) and
    what to do (the Threaded watcher, or a higher limit), not "needs Linux 5.3+"."""

    async def main() -> None:
        watcher = childwatch.PidfdChildWatcher()
        got = Calls()
        first, refused = spawn_sleeper(), spawn_exit(9)
        try:
            watcher.add_child_handler(first, got)
            with fds_exhausted(0):
                soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                with pytest.raises(OSError) as info:
                    watcher.add_child_handler(refused, got)
            assert info.value.errno == errno.EMFILE
            message = str(info.value)
            for needed in (f"pidfd_open({refused})", f"soft RLIMIT_NOFILE is {soft}", "all its fds"):
                assert needed in message, message
            assert "2 of them are this watcher's" in message, message  # the loop's epoll, the first pidfd
            assert "ThreadedChildWatcher" in message and "resource.setrlimit" in message, message
            assert "5.3" not in message, message
            assert watcher.remove_child_handler(refused) is False
            os.kill(first, signal.SIGTERM)
            await got.wait([first])
            assert reap(refused, kill=False) == 9, "the refused child is the caller's"
        finally:
            watcher.close()

    run("asyncio", main)


def test_threaded_fd_share_is_checked() -> None:
    for bad, error in ((True, TypeError), ("0.5", TypeError), (-0.1, ValueError), (1.5, ValueError)):
        with pytest.raises(error, match="fd_share"):
            childwatch.ThreadedChildWatcher(fd_share=bad)  # type: ignore[arg-type]


# -- 7. EINTR: a flood of signals -------------------------------------------------------------


def test_signal_flood_interrupts_nothing(loop_name: str, watcher_cls: Any) -> None:
    """A process-directed SIGUSR1 every 1 ms, with a Python handler (so system
    calls in whichever thread it lands fail with EINTR and are retried), while
    children come and go: nothing lost or wrong.  (Not SIGALRM/ITIMER_REAL:
    pytest-timeout uses them.)"""
    alarms = [0]
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        alarms[0] += 1

    def flood() -> None:
        while not stop.is_set():
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.001)

    async def main() -> None:
        watcher = watcher_cls()
        got = Calls()
        try:
            attach_here(watcher)
            expected: Dict[int, int] = {}
            rng = random.Random(5)
            sleepers = [spawn_sleeper() for _ in range(10)]
            for pid in sleepers:
                watcher.add_child_handler(pid, got)
            for i in range(80):
                if i % 3:
                    code = rng.randrange(256)
                    pid = spawn_exit(code)
                    expected[pid] = code
                else:
                    signum = rng.choice([signal.SIGTERM, signal.SIGKILL, signal.SIGUSR2])
                    pid = spawn_signal(signum)
                    expected[pid] = -signum
                watcher.add_child_handler(pid, got)
                if i % 4 == 3:
                    await asyncio.sleep(0)
            await got.wait(expected)
            await kill_and_settle(got, expected, sleepers)
        finally:
            watcher.close()

    previous = signal.signal(signal.SIGUSR1, on_signal)
    flooder = threading.Thread(target=flood, name="flood")
    flooder.start()
    try:
        run(loop_name, main)
    finally:
        stop.set()
        flooder.join()
        signal.signal(signal.SIGUSR1, previous)
    assert alarms[0] > 10, "the flood did not happen"


# -- 8. someone else's SIGCHLD handler ----------------------------------------------------------


class ForeignHandler:
    """A Python SIGCHLD handler of someone else's, chaining to the one it replaced."""

    def __init__(self) -> None:
        self.calls = 0
        self.previous: Any = None

    def install(self) -> None:
        self.previous = signal.signal(signal.SIGCHLD, self)

    def __call__(self, signum: int, frame: Any) -> None:
        self.calls += 1
        if callable(self.previous):
            self.previous(signum, frame)


@pytest.mark.parametrize("when", ["before", "after"])
def test_someone_elses_sigchld_handler(watcher_cls: Any, when: str) -> None:
    """A Python SIGCHLD handler installed before the watcher, or after it (then
    chaining to ours): statuses exact; theirs is still called while ours is
    active (except that Safe/Fast hand SIGCHLD to the loop, which keeps one
    handler per signal); after close(), theirs is the one installed -- ours
    neither left behind nor clobbering theirs."""
    theirs = ForeignHandler()
    original = signal.getsignal(signal.SIGCHLD)

    async def main() -> None:
        watcher = watcher_cls()
        got = Calls()
        try:
            if when == "before":
                theirs.install()
            attach_here(watcher)
            first = spawn_exit(1)
            watcher.add_child_handler(first, got)
            await got.wait([first])
            if when == "after":
                theirs.install()
            expected = {first: 1}
            for code in range(2, 22):
                pid = spawn_exit(code)
                watcher.add_child_handler(pid, got)
                expected[pid] = code
            await got.wait(expected)
            await asyncio.sleep(0.1)
            exactly(got, expected)
            if not (
                when == "before" and watcher_cls in (childwatch.SafeChildWatcher, childwatch.FastChildWatcher)
            ):
                assert theirs.calls > 0, "their handler was never called"
        finally:
            watcher.close()
        assert signal.getsignal(signal.SIGCHLD) is theirs, (
            f"after close() the SIGCHLD handler is {signal.getsignal(signal.SIGCHLD)!r}, not theirs"
        )

    try:
        run("asyncio", main)
    finally:
        signal.signal(signal.SIGCHLD, original)


# -- 9. reaped behind our back ------------------------------------------------------------------


def test_reaped_behind_our_back_under_load(
    loop_name: str, watcher_cls: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Half of 30 children are killed and reaped by someone else.  Each one
    stolen before the watcher saw its status is reported as 255 with exactly
    one warning naming it; any other is reported with its real status and no
    warning; every pid exactly once."""
    stolen: List[int] = []
    all_pids: List[int] = []

    async def main() -> None:
        watcher = watcher_cls()
        got = Calls()
        try:
            attach_here(watcher)
            all_pids.extend(spawn_sleeper() for _ in range(30))
            for pid in all_pids:
                watcher.add_child_handler(pid, got)
            await asyncio.sleep(0.05)
            # From the loop's thread, without yielding, with SIGCHLD blocked: no
            # loop callback and no signal handler of ours runs in between.
            old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
            try:
                for pid in all_pids[::2]:
                    os.kill(pid, signal.SIGKILL)
                    with contextlib.suppress(ChildProcessError):  # a waiter thread got there first
                        os.waitpid(pid, 0)
                        stolen.append(pid)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
            for pid in all_pids[1::2]:
                os.kill(pid, signal.SIGKILL)
            await got.wait(all_pids)
            await asyncio.sleep(0.2)
            assert await settle_zombies() == []
            assert {pid: len(rcs) for pid, rcs in got.by_pid().items()} == {pid: 1 for pid in all_pids}
            return got.by_pid()
        finally:
            watcher.close()

    with caplog.at_level(logging.WARNING, logger="childwatch"):
        results = run(loop_name, main)
    warnings_for: Dict[int, int] = {}
    for record in caplog.records:
        found = re.search(r"pid (\d+) was reaped by someone else", record.getMessage())
        if found:
            pid = int(found.group(1))
            warnings_for[pid] = warnings_for.get(pid, 0) + 1
    assert stolen, "nothing was stolen: the test did not test"
    for pid in all_pids:
        (rc,) = results[pid]
        if rc == 255:
            assert pid in stolen and warnings_for.get(pid) == 1, (pid, warnings_for.get(pid))
        else:
            assert rc == -signal.SIGKILL and pid not in warnings_for, (pid, rc, warnings_for.get(pid))
    if watcher_cls not in (childwatch.ThreadedChildWatcher, childwatch.MultiLoopChildWatcher):
        # Nothing of the watcher could run during the theft: all 255.  (MultiLoop's is a
        # Python signal handler: when another thread takes the SIGCHLD, Python runs it in
        # the main thread between two bytecodes of the theft, and it may read a real status
        # before the test reaps that child, which is then no theft at all.)
        assert sorted(p for p in all_pids if results[p] == [255]) == sorted(stolen)


@pytest.mark.parametrize("cls", SIGCHLD_WATCHERS, ids=lambda cls: cls.__name__)
def test_reaped_behind_our_back_among_many_registered(cls: Any, caplog: pytest.LogCaptureFixture) -> None:
    """With 600 children registered, the check for children reaped behind the
    watcher's back is spaced out (0.2 ms per registered child), not skipped:
    the stolen child is reported once, 255 with a warning, the 599 others
    with their real status."""
    count = 600
    pids: List[int] = []
    read_during_theft: List[bool] = []

    async def main() -> Dict[int, List[int]]:
        watcher = cls()
        got = Calls()
        try:
            attach_here(watcher)
            pids.extend(spawn_sleeper() for _ in range(count))
            for pid in pids:
                watcher.add_child_handler(pid, got)
            old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
            try:
                os.kill(pids[0], signal.SIGKILL)
                os.waitpid(pids[0], 0)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
            await got.wait(pids[:1])
            # MultiLoop's handler may have read the real status during the theft (see
            # test_reaped_behind_our_back_under_load): then it was no theft at all.
            read_during_theft.append(
                cls is childwatch.MultiLoopChildWatcher and got.calls[0][1] == -signal.SIGKILL
            )
            assert got.calls[0][:2] == (pids[0], -signal.SIGKILL if read_during_theft[0] else 255), got.calls
            for i, pid in enumerate(pids[1:]):
                os.kill(pid, signal.SIGKILL)
                await breathe(i)  # 599 SIGCHLDs unread overflow 3.9's signal wakeup socket
            await got.wait(pids)
            assert await settle_zombies() == []
            return got.by_pid()
        finally:
            watcher.close()

    with caplog.at_level(logging.WARNING, logger="childwatch"):
        results = run("asyncio", main)
    stolen = not read_during_theft[0]
    assert results == {pid: [255 if pid == pids[0] and stolen else -signal.SIGKILL] for pid in pids}
    stolen_warnings = [r for r in caplog.records if "was reaped by someone else" in r.getMessage()]
    assert [str(pids[0]) in r.getMessage() for r in stolen_warnings] == ([True] if stolen else [])


# -- 10. stopped and continued children -----------------------------------------------------------


def test_stopped_and_continued_child_is_not_an_exit(loop_name: str, watcher_cls: Any) -> None:
    """SIGSTOP/SIGCONT (SIGCHLD each time) is not an exit: no callback, and
    the loop keeps running meanwhile; stopped children that then exit, are
    killed while stopped, or get SIGTERM while stopped report exactly."""

    async def main() -> None:
        watcher = watcher_cls()
        got = Calls()
        ticks = [0]

        async def heartbeat() -> None:
            while True:
                ticks[0] += 1
                await asyncio.sleep(0.001)

        beat = asyncio.ensure_future(heartbeat())
        try:
            attach_here(watcher)
            sleepers = [spawn_sleeper() for _ in range(6)]
            for pid in sleepers:
                watcher.add_child_handler(pid, got)
            for _ in range(10):
                for sig, stopped in ((signal.SIGSTOP, True), (signal.SIGCONT, False)):
                    for pid in sleepers:
                        os.kill(pid, sig)
                    for pid in sleepers:
                        wait_state(pid, (lambda s: s == "T") if stopped else (lambda s: s not in ("T", None)))
                    before = ticks[0]
                    while ticks[0] < before + 2:  # the loop is not blocked
                        await asyncio.sleep(0.001)
            await asyncio.sleep(0.1)
            assert got.calls == [], "a stop or a continue was reported as an exit"
            self_stopping = [spawn("kill -STOP $$; exit 7") for _ in range(2)]
            for pid in self_stopping:
                watcher.add_child_handler(pid, got)
            for pid in self_stopping:
                wait_state(pid, lambda s: s == "T")
            await asyncio.sleep(0.05)
            assert got.calls == []
            for pid in self_stopping:
                os.kill(pid, signal.SIGCONT)
            for pid in sleepers[:2]:
                os.kill(pid, signal.SIGSTOP)
                wait_state(pid, lambda s: s == "T")
                os.kill(pid, signal.SIGKILL)
            for pid in sleepers[2:4]:
                os.kill(pid, signal.SIGSTOP)
                wait_state(pid, lambda s: s == "T")
                os.kill(pid, signal.SIGTERM)  # pending until continued
                await asyncio.sleep(0.01)
                assert state(pid) == "T" and got.by_pid().get(pid) is None
                os.kill(pid, signal.SIGCONT)
            for pid in sleepers[4:]:
                os.kill(pid, signal.SIGUSR2)
            expected = {
                **{pid: 7 for pid in self_stopping},
                **{pid: -signal.SIGKILL for pid in sleepers[:2]},
                **{pid: -signal.SIGTERM for pid in sleepers[2:4]},
                **{pid: -signal.SIGUSR2 for pid in sleepers[4:]},
            }
            await got.wait(expected)
            await asyncio.sleep(0.1)
            exactly(got, expected)
            assert await settle_zombies() == []
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            watcher.close()

    run(loop_name, main)


# -- 11. Process.kill() racing the child's exit -------------------------------------------------


KILL_RACE_PROCESSES = 1000 if os.environ.get("CHILDWATCH_STRESS", "").lower() == "long" else 150


def run_on_stdlib_loop_with(watcher: Any, main: Callable[[], Any]) -> Any:
    """Run ``main()`` (within 120 s) on a new stdlib loop whose subprocesses
    ``watcher`` reaps (the policy's watcher on 3.9-3.13, the loop's own on 3.14+);
    return its result."""
    if NEW_STDLIB:
        loop = asyncio.new_event_loop()
        try:
            loop._watcher = watcher  # type: ignore[attr-defined]
            return loop.run_until_complete(asyncio.wait_for(main(), 120))
        finally:
            loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_child_watcher(watcher)  # type: ignore[attr-defined]
    try:
        return asyncio.run(asyncio.wait_for(main(), 120))
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_child_watcher(None)  # type: ignore[attr-defined]


def test_asyncio_transport_learns_the_status_before_the_reap(
    watcher_cls: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README "No pid-reuse window": an asyncio subprocess's child is still an
    unreaped zombie when its transport's ``_process_exited()`` runs (3.10 and
    3.11 reach it two loop iterations after the watcher's callback, 3.9, 3.12
    and 3.13 one, 3.14+ inside it), so ``kill()`` meanwhile reaches the zombie."""
    from asyncio import base_subprocess

    original = base_subprocess.BaseSubprocessTransport._process_exited
    seen = {"zombie": 0, "alive": 0, "reaped": 0}

    def spy(transport: Any, returncode: int) -> None:
        try:
            seen["zombie" if peek(transport.get_pid()) is not None else "alive"] += 1
        except ChildProcessError:
            seen["reaped"] += 1
        original(transport, returncode)

    monkeypatch.setattr(base_subprocess.BaseSubprocessTransport, "_process_exited", spy)
    codes = list(range(0, 256, 9))

    async def main() -> List[int]:
        async def one(code: int) -> int:
            proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
            return await proc.wait()

        return list(await asyncio.gather(*(one(code) for code in codes)))

    watcher = watcher_cls()
    try:
        results = run_on_stdlib_loop_with(watcher, main)
    finally:
        watcher.close()
    assert results == codes
    assert seen == {"zombie": len(codes), "alive": 0, "reaped": 0}


@pytest.mark.skipif(NEW_STDLIB, reason="3.14+ loops finish the transport in their callback")
@pytest.mark.parametrize("override", [False, True], ids=["stdlib-callback", "overridden-callback"])
def test_the_stdlib_loops_own_callback_is_taken_over_only_as_it_is(
    watcher_cls: Any, override: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3.9-3.13: the stdlib loop's very ``_child_watcher_callback`` only has the loop run
    the transport's step later, through its self-pipe; delivered in the loop's thread,
    a watcher queues that step itself (no self-pipe write for it: none at all on the
    watchers without SIGCHLD) and reaps after it.  A loop class that overrides the
    callback has its override called, once per child.  The statuses are exact either way."""
    calls: List[int] = []
    steps: List[int] = []
    writes = [0]
    step_then_reap = WatcherBase._step_then_reap

    def counted_step(watcher: Any, entry: Any, run: Any, returncode: int, iterations_left: int) -> None:
        if iterations_left == 0:
            steps.append(entry.pid)
        step_then_reap(watcher, entry, run, returncode, iterations_left)

    monkeypatch.setattr(WatcherBase, "_step_then_reap", counted_step)

    class OwnCallback(asyncio.SelectorEventLoop):
        def _child_watcher_callback(self, pid: int, returncode: int, transport: Any) -> None:
            calls.append(pid)
            super()._child_watcher_callback(pid, returncode, transport)  # type: ignore[misc]

    codes = list(range(0, 100, 7))

    async def main() -> List[int]:
        loop = asyncio.get_running_loop()
        write = loop._write_to_self  # type: ignore[attr-defined]

        def counted_write() -> None:
            writes[0] += 1
            write()

        loop._write_to_self = counted_write  # type: ignore[attr-defined]

        async def one(code: int) -> int:
            proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
            return await proc.wait()

        return [await one(code) for code in codes]

    watcher = watcher_cls()
    loop = OwnCallback() if override else asyncio.SelectorEventLoop()
    try:
        if isinstance(watcher, SIGCHLD_WATCHERS):
            watcher.attach_loop(loop)
        childwatch.set_child_watcher(watcher, loop=loop)
        assert loop.run_until_complete(asyncio.wait_for(main(), 60)) == codes
    finally:
        watcher.close()
        loop.close()
    if override:
        assert len(calls) == len(codes) and steps == []
    else:
        assert calls == [] and len(steps) == len(codes)
        if not isinstance(watcher, SIGCHLD_WATCHERS):  # (asyncio writes one per signal it handles)
            assert writes[0] == 0, f"{writes[0]} self-pipe writes for {len(codes)} children"


@functools.cache
def kill_race(watcher_name: str) -> Dict[str, Any]:
    """Run asyncio subprocesses on the stdlib loop driven by the watcher, each
    killed (kill() or send_signal()) again and again while its returncode is
    unknown, racing its own exit.  Every os.kill() is checked just before it
    happens: is the pid still our child (alive or zombie), or already freed
    (where a reused pid would belong to a stranger)?  A freed pid is never
    actually signalled."""
    watcher = getattr(childwatch, watcher_name)()
    real_kill = os.kill
    ours: set = set()
    freed: List[int] = []
    hits = {"alive": 0, "zombie": 0}

    def guarded_kill(pid: int, signum: int) -> None:
        if pid in ours:
            time.sleep(0)  # let other threads (a waiter) run, as a preemption here would
            try:
                exited = peek(pid)
            except ChildProcessError:
                freed.append(pid)
                raise ProcessLookupError(errno.ESRCH, "freed pid (not signalled by the test)") from None
            hits["zombie" if exited is not None else "alive"] += 1
        real_kill(pid, signum)

    rng = random.Random(11)
    outcomes: List[Tuple[int, int]] = []

    async def one(index: int) -> None:
        code = rng.randrange(256)
        use_kill = rng.random() < 0.5
        delay = rng.randrange(8)
        # Most children exit at once, racing the first kill; some live a few
        # milliseconds (the race lands later); every tenth outlives its kill,
        # so some kills certainly reach a live child.
        life = "sleep 5; " if index % 10 == 0 else ("sleep 0.01; " if index % 3 == 0 else "")
        proc = await asyncio.create_subprocess_exec("sh", "-c", f"{life}exit {code}")
        ours.add(proc.pid)
        for _ in range(delay):
            await asyncio.sleep(0)
        while proc.returncode is None:
            if use_kill:
                proc.kill()
            else:
                proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0)
        rc = await asyncio.wait_for(proc.wait(), 30)
        outcomes.append((code, rc if rc not in (-signal.SIGKILL, -signal.SIGTERM) else -1))

    async def main() -> None:
        for start in range(0, KILL_RACE_PROCESSES, 8):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 8, KILL_RACE_PROCESSES))))

    warned: List[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warned.append(record.getMessage())

    handler = Catch(logging.WARNING)
    logging.getLogger("childwatch").addHandler(handler)
    os.kill = guarded_kill  # type: ignore[assignment]
    try:
        run_on_stdlib_loop_with(watcher, main)
    finally:
        os.kill = real_kill  # type: ignore[assignment]
        logging.getLogger("childwatch").removeHandler(handler)
        watcher.close()
    wrong = [(code, rc) for code, rc in outcomes if rc not in (code, -1)]
    return {"processes": len(outcomes), "freed": freed, "hits": hits, "wrong": wrong, "warnings": warned}


def test_process_kill_racing_exit_never_reaches_a_freed_pid(watcher_cls: Any) -> None:
    result = kill_race(watcher_cls.__name__)
    assert result["processes"] == KILL_RACE_PROCESSES
    assert result["hits"]["alive"] > 0, "no kill reached a live child: the test did not test"
    assert result["freed"] == [], (
        f"{len(result['freed'])} of {result['processes']} processes were signalled after their pid "
        f"was released (signals that reached the still-unreaped child: {result['hits']})"
    )


def test_process_kill_racing_exit_keeps_the_real_status(watcher_cls: Any) -> None:
    result = kill_race(watcher_cls.__name__)
    assert result["wrong"] == [], (
        f"{len(result['wrong'])} of {result['processes']} got a wrong returncode "
        f"(exit code, returncode): {result['wrong'][:8]}; warnings: {result['warnings'][:3]}"
    )


# -- 12. pids reused after delivery -------------------------------------------------------------


REUSE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, logging, os, subprocess, sys, threading, time
    import childwatch
    from childwatch._syscalls import peek  # waitid(WNOWAIT), also where os lacks it (PyPy)

    sys.path.insert(0, TESTS_DIR)
    from spawning import sh as spawn

    def spawn_at(pid, script):
        # The next pid this namespace hands out is ns_last_pid + 1.
        for _ in range(100):
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(pid - 1))
            new = spawn(script)
            if new == pid:
                return new
            os.kill(new, 9)
            os.waitpid(new, 0)
        raise RuntimeError("could not get pid %d again" % pid)

    def wait_exited(pid):
        while peek(pid) is None:
            time.sleep(0.001)

    cls = getattr(childwatch, sys.argv[1])
    scenario = sys.argv[2]
    out = {}
    calls = []
    warned = []

    class Catch(logging.Handler):
        def emit(self, record):
            warned.append(record.getMessage())

    logging.getLogger("childwatch").addHandler(Catch(logging.WARNING))

    def callback(pid, rc, tag):
        calls.append([tag, pid, rc])

    async def wait(n):
        for _ in range(3000):
            if len(calls) >= n:
                return
            await asyncio.sleep(0.01)

    async def delivered_then_reused(watcher):
        a = spawn("exit 11")
        watcher.add_child_handler(a, callback, "A")
        await wait(1)
        # B gets A's pid once A's status was delivered and A reaped.
        b = spawn_at(a, "sleep 0.2; exit 22")
        watcher.add_child_handler(b, callback, "B")
        await wait(2)
        # C is not registered; once it is gone, D gets its pid.
        c = spawn("exit 33")
        await asyncio.sleep(0.3)
        if cls is not childwatch.FastChildWatcher:
            os.waitpid(c, 0)  # no other watcher touches an unregistered child
        d = spawn_at(c, "sleep 0.3; exit 44")
        watcher.add_child_handler(d, callback, "D")
        await wait(3)
        await asyncio.sleep(0.5)
        out["reused"] = [a == b, c == d]

    async def stolen_then_reused(watcher):
        # A registered; someone else kills and reaps A, and B (not registered:
        # some other code's child) gets A's pid and exits, all before the
        # watcher looks at A.  A must get 255, B must stay for its owner.
        gate, entered = threading.Event(), threading.Event()
        if cls is childwatch.ThreadedChildWatcher:
            # Keep the waiter thread busy in a callback of its own meanwhile
            # (y keeps it from retiring, so A goes to that busy thread too).
            def blocking(pid, rc):
                entered.set()
                gate.wait(30)
            y = spawn("exec sleep 1000")
            watcher.add_child_handler(y, lambda pid, rc: None)
            x = spawn("exit 0")
            t = threading.Thread(target=watcher.add_child_handler, args=(x, blocking))
            t.start()
            t.join()
            entered.wait(30)
        a = spawn("exec sleep 1000")
        watcher.add_child_handler(a, callback, "A")
        # No await from here on: the loop (Pidfd) cannot look either.
        os.kill(a, 9)
        os.waitpid(a, 0)
        b = spawn_at(a, "exit 55")
        wait_exited(b)
        gate.set()
        await wait(1)
        if cls is childwatch.ThreadedChildWatcher:
            os.kill(y, 9)
        await asyncio.sleep(0.5)
        try:
            _, status = os.waitpid(b, os.WNOHANG)
            out["b_for_its_owner"] = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
        except ChildProcessError:
            out["b_for_its_owner"] = "stolen"
        out["reused"] = [a == b]

    async def main():
        watcher = cls()
        watcher.attach_loop(asyncio.get_running_loop())
        try:
            await (delivered_then_reused if scenario == "delivered" else stolen_then_reused)(watcher)
        finally:
            watcher.close()

    try:
        if not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK):
            out["skip"] = "ns_last_pid is not writable"
        else:
            asyncio.run(main())
    except PermissionError as exc:
        out["skip"] = repr(exc)
    out["calls"] = calls
    out["warnings"] = warned
    print(json.dumps(out))
    """
).replace("TESTS_DIR", repr(os.path.dirname(os.path.abspath(__file__))))


def in_a_pid_namespace(watcher_cls: Any, scenario: str) -> Dict[str, Any]:
    """Run REUSE_SCRIPT in a pid namespace of its own (``unshare``, needs root),
    where it can hand a pid out again on purpose (``ns_last_pid``)."""
    return in_pid_namespace(["-c", REUSE_SCRIPT, watcher_cls.__name__, scenario], timeout=60)


def test_reused_pid_is_a_new_child(watcher_cls: Any) -> None:
    """A pid handed out again after a registered child's status was delivered,
    and after an unregistered child is gone: the new child with the old pid
    gets its own status, exactly once, when it exits -- never its predecessor's."""
    report = in_a_pid_namespace(watcher_cls, "delivered")
    assert report["reused"] == [True, True]
    assert [(tag, rc) for tag, _, rc in report["calls"]] == [("A", 11), ("B", 22), ("D", 44)], report


@pytest.mark.parametrize("cls", [childwatch.ThreadedChildWatcher, childwatch.PidfdChildWatcher])
def test_stolen_pid_reused_before_the_watcher_looked(cls: Any) -> None:
    """Registered child A is reaped by someone else, and its pid goes to B, some
    other code's child, which exits -- all before the watcher looks at A.  A
    pidfd names A itself, not its pid: A is reported as 255 with one warning,
    and B's status stays for B's owner.  (Safe, Fast and MultiLoop know
    children by pid only and cannot tell: not promised for them.)"""
    report = in_a_pid_namespace(cls, "stolen")
    assert report["reused"] == [True]
    assert [(tag, rc) for tag, _, rc in report["calls"]] == [("A", 255)], report
    assert len([w for w in report["warnings"] if "reaped by someone else" in w]) == 1, report
    assert report["b_for_its_owner"] == 55, report


# -- 13. a SIGCHLD in the middle of the watcher's own code -----------------------------------------


def test_multiloop_sigchld_inside_its_own_calls() -> None:
    """MultiLoop's handler runs in the main thread, between any two bytecodes:
    also while the main thread is inside the watcher's own code.  Sweep a
    SIGCHLD over every point of a registration (right after each C call made
    by childwatch code, through ``sys.setprofile``): every status still
    arrives exactly once, and the registration never fails."""
    watcher = childwatch.MultiLoopChildWatcher()
    got = Calls()
    fired: List[int] = []
    errors: List[Tuple[int, BaseException]] = []
    expected: Dict[int, int] = {}
    state_ = {"armed": False, "countdown": 0}

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if event != "c_return" or not state_["armed"]:
            return
        if not frame.f_globals.get("__name__", "").startswith("childwatch"):
            return
        state_["countdown"] -= 1
        if state_["countdown"] < 0:
            state_["armed"] = False
            fired.append(1)
            signal.raise_signal(signal.SIGCHLD)

    try:
        watcher.add_child_handler(spawn_exit(0), got)  # installs the handler
        for point in range(80):
            pid = spawn_exit(point % 256)
            wait_zombie(pid)
            expected[pid] = point % 256
            state_.update(armed=True, countdown=point)
            sys.setprofile(profiler)
            try:
                watcher.add_child_handler(pid, got)
            except Exception as exc:
                errors.append((point, exc))
            finally:
                sys.setprofile(None)
                state_["armed"] = False
            if not fired or len(fired) < point + 1:
                break  # past the last C call of a registration: the sweep is complete
        got.wait_sync(expected, timeout=10)
        time.sleep(0.1)
    finally:
        watcher.close()
    assert len(fired) >= 5, f"the sweep covered only {len(fired)} points: it did not test"
    assert errors == [], (
        f"registrations failed when SIGCHLD arrived at C call #{errors[0][0]}: {errors[0][1]!r}"
    )
    calls = {pid: rcs for pid, rcs in got.by_pid().items() if pid in expected}
    assert calls == {pid: [rc] for pid, rc in expected.items()}


# -- 14. the ctypes path of the syscall layer (what PyPy uses) ---------------------------------


def test_ctypes_waitid_and_pidfd_open_agree_with_os() -> None:
    """libc's waitid and the pidfd_open syscall through ctypes, which PyPy uses,
    give what os.waitid and os.pidfd_open give, on every interpreter that has both."""
    from childwatch import _syscalls as sc

    if not hasattr(os, "waitid") or not hasattr(os, "pidfd_open"):
        pytest.skip("needs os.waitid and os.pidfd_open to compare with")
    flags = sc.WEXITED | sc.WNOHANG | sc.WNOWAIT
    running = spawn_sleeper()
    try:
        assert sc.c_waitid(sc.P_PID, running, flags) is None  # running: nothing to report
        fd = sc.c_pidfd_open(running)
        try:
            assert sc.c_waitid(sc.P_PIDFD, fd, flags) is None
        finally:
            os.close(fd)
    finally:
        os.kill(running, signal.SIGKILL)
    wait_zombie(running)
    for pid, code in ((running, -signal.SIGKILL), (spawn_exit(42), 42)):
        wait_zombie(pid)
        ours, theirs = sc.c_waitid(sc.P_PID, pid, flags), os.waitid(os.P_PID, pid, flags)
        assert ours is not None and theirs is not None
        assert (ours.si_pid, ours.si_code, ours.si_status) == (
            theirs.si_pid,
            theirs.si_code,
            theirs.si_status,
        )
        assert childwatch._syscalls.returncode_of(ours) == code
        assert reap(pid, kill=False) == code  # WNOWAIT left it a zombie
    with pytest.raises(ChildProcessError):
        sc.c_waitid(sc.P_PID, running, flags)  # reaped: ECHILD, as os.waitid
    with pytest.raises(ProcessLookupError):
        sc.c_pidfd_open(running)  # no such process: ESRCH
