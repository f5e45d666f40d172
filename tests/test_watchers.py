"""Every watcher, on every installed loop, with real children and exact statuses."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, List, Tuple

import pytest

import childwatch
from childwatch.watchers import _loop_pidfds
from conftest import (
    Collector,
    breathe,
    children,
    reap,
    run,
    spawn,
    spawn_exit,
    spawn_signal,
    spawn_sleeper,
    state,
    wait_zombie,
)

SIGNALS = [
    signal.SIGTERM,
    signal.SIGKILL,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGABRT,
    signal.SIGSEGV,
]


def test_every_exit_code_and_signal(loop_name: str, make_watcher: Callable[[], Any]) -> None:
    async def main() -> None:
        watcher = make_watcher()
        got = Collector()
        expected = {}
        for code in range(256):
            pid = spawn_exit(code)
            watcher.add_child_handler(pid, got, code)
            expected[pid] = code
            await breathe(code)
        for signum in SIGNALS:
            pid = spawn_signal(signum)
            watcher.add_child_handler(pid, got)
            expected[pid] = -signum
        assert await got.wait(len(expected)) == expected
        got.assert_once_each()
        assert all(args == (rc,) for _, rc, args in got.calls if rc >= 0)

    run(loop_name, main)


def test_child_exited_before_registration(loop_name: str, make_watcher: Callable[[], Any]) -> None:
    async def main() -> None:
        watcher = make_watcher()
        got = Collector()
        pids = {spawn_exit(code): code for code in (0, 3, 200)}
        pids[spawn_signal(signal.SIGKILL)] = -signal.SIGKILL
        for pid in pids:
            wait_zombie(pid)
        for pid in pids:
            watcher.add_child_handler(pid, got)
        assert await got.wait(len(pids)) == pids

    run(loop_name, main)


@pytest.mark.parametrize("cls", [childwatch.SafeChildWatcher, childwatch.FastChildWatcher])
def test_an_exited_child_is_called_back_before_registration_returns(cls: Any) -> None:
    """Safe and Fast, as asyncio's namesakes: a child that already exited,
    registered from the loop's thread, is called back (still a zombie) before
    add_child_handler returns; registered from another thread, it is called
    back later, in the loop's thread, and exactly once either way."""

    async def main() -> None:
        watcher = cls()
        watcher.attach_loop(asyncio.get_running_loop())
        try:
            seen: List[Any] = []

            def callback(pid: int, returncode: int) -> None:
                seen.append((pid, returncode, state(pid), threading.current_thread().name))

            pid = spawn_exit(7)
            wait_zombie(pid)
            watcher.add_child_handler(pid, callback)
            assert seen == [(pid, 7, "Z", "MainThread")]
            assert pid not in children()

            other = spawn_exit(9)
            wait_zombie(other)
            registrar = threading.Thread(
                target=watcher.add_child_handler, args=(other, callback), name="registrar"
            )
            registrar.start()
            registrar.join(10)
            assert len(seen) == 1  # not from the registering thread
            deadline = time.monotonic() + 10
            while len(seen) < 2:
                assert time.monotonic() < deadline, "the early exit was never delivered"
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)  # room for a second, wrong call
            assert seen[1:] == [(other, 9, "Z", "MainThread")]
            assert other not in children()
        finally:
            watcher.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_many_children_at_once(loop_name: str, make_watcher: Callable[[], Any]) -> None:
    rng = random.Random(7)

    async def main() -> None:
        watcher = make_watcher()
        got = Collector()
        sleepers = []
        expected = {}
        for i in range(500):
            pid = spawn_sleeper()
            sleepers.append(pid)
            watcher.add_child_handler(pid, got)
            expected[pid] = -signal.SIGKILL
            await breathe(i)
        for i in range(100):
            code = rng.randrange(256)
            pid = spawn_exit(code)
            watcher.add_child_handler(pid, got)
            expected[pid] = code
            await breathe(i)
        for i, pid in enumerate(sleepers):
            os.kill(pid, signal.SIGKILL)
            await breathe(i)
        assert await got.wait(len(expected)) == expected
        got.assert_once_each()

    run(loop_name, main)


def test_registration_from_several_threads(loop_name: str, make_watcher: Callable[[], Any]) -> None:
    async def main() -> None:
        watcher = make_watcher()
        watcher.attach_loop(asyncio.get_running_loop())
        got = Collector()
        expected = {}
        lock = threading.Lock()
        errors: List[BaseException] = []

        def register(seed: int) -> None:
            try:
                for i in range(40):
                    code = (seed * 40 + i) % 256
                    pid = spawn_exit(code)
                    with lock:
                        expected[pid] = code
                    watcher.add_child_handler(pid, got)
                    if i % 8 == 7:
                        time.sleep(0.002)  # let the loop drain its signal wakeup socket (see breathe)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=register, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(0.005)
        assert not errors
        assert await got.wait(160) == expected
        got.assert_once_each()

    run(loop_name, main)


def test_second_registration_replaces_the_first(loop_name: str, make_watcher: Callable[[], Any]) -> None:
    async def main() -> None:
        watcher = make_watcher()
        first, second = Collector(), Collector()
        pid = spawn_sleeper()
        watcher.add_child_handler(pid, first, "a")
        watcher.add_child_handler(pid, second, "b")
        os.kill(pid, signal.SIGTERM)
        await second.wait(1)
        await asyncio.sleep(0.1)
        assert first.calls == []
        assert second.calls == [(pid, -signal.SIGTERM, ("b",))]

    run(loop_name, main)


def test_remove_child_handler(loop_name: str, make_watcher: Callable[[], Any], watcher_cls: Any) -> None:
    async def main() -> None:
        watcher = make_watcher()
        got = Collector()
        kept = spawn_exit(5)
        removed = spawn_sleeper()
        watcher.add_child_handler(kept, got)
        watcher.add_child_handler(removed, got)
        assert watcher.remove_child_handler(removed) is True
        assert watcher.remove_child_handler(removed) is False
        os.kill(removed, signal.SIGKILL)
        assert await got.wait(1) == {kept: 5}
        await asyncio.sleep(0.1)
        assert got.results == {kept: 5}
        if watcher_cls is childwatch.FastChildWatcher:
            # Fast reaps every child, registered or not (its documented cost).
            assert removed not in children()
        else:
            assert reap(removed) == -signal.SIGKILL

    run(loop_name, main)


def test_close_with_children_running(loop_name: str, make_watcher: Callable[[], Any]) -> None:
    async def main() -> None:
        watcher = make_watcher()
        got = Collector()
        pids = [spawn_sleeper() for _ in range(5)]
        for pid in pids:
            watcher.add_child_handler(pid, got)
        watcher.close()
        assert "closed" in repr(watcher)
        # The watcher left them alone: we collect their statuses ourselves.
        assert [reap(pid) for pid in pids] == [-signal.SIGKILL] * 5
        await asyncio.sleep(0.05)
        assert got.calls == []

    run(loop_name, main)


def test_close_with_a_status_on_its_way(
    loop_name: str, make_watcher: Callable[[], Any], tmp_path: Any
) -> None:
    """close() between a child's exit and its delivery (the Threaded waiter
    has read it and retired, handing it to the loop): no error, no callback,
    and the zombie is left for us, as for any registered child.  The child
    exits only once registered (a gate file): Safe and Fast call back a child
    that exited before, from add_child_handler itself."""

    async def main() -> None:
        watcher = make_watcher()
        got = Collector()
        gate = tmp_path / "gate"
        pid = spawn(f"while [ ! -e '{gate}' ]; do sleep 0.005; done; exit 7")
        watcher.add_child_handler(pid, got)
        gate.touch()
        wait_zombie(pid)
        time.sleep(0.2)  # the loop is blocked: whatever the watcher read waits for it
        watcher.close()
        assert reap(pid, kill=False) == 7
        await asyncio.sleep(0.05)
        assert got.calls == []

    run(loop_name, main)


def test_child_is_a_zombie_while_its_callback_runs(loop_name: str, make_watcher: Callable[[], Any]) -> None:
    """The pid is released only after the callback: it cannot be reused meanwhile."""

    async def main() -> None:
        watcher = make_watcher()
        states: List[Any] = []

        def callback(pid: int, returncode: int) -> None:
            states.append((returncode, state(pid)))

        for code in (0, 9):
            watcher.add_child_handler(spawn_exit(code), callback)
        while len(states) < 2:
            await asyncio.sleep(0.002)
        assert sorted(states) == [(0, "Z"), (9, "Z")]

    run(loop_name, main)


def test_raising_callback_is_reported_and_others_served(
    loop_name: str, make_watcher: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    reported: List[Any] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reported.append(ctx["exception"]))
        watcher = make_watcher()

        def bad(pid: int, returncode: int) -> None:
            raise ZeroDivisionError("boom")

        got = Collector()
        watcher.add_child_handler(spawn_exit(1), bad)
        await asyncio.sleep(0.2)
        good = spawn_exit(2)
        watcher.add_child_handler(good, got)
        assert await got.wait(1) == {good: 2}

    with caplog.at_level(logging.ERROR, logger="childwatch"):
        run(loop_name, main)
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    errors = reported + logged
    assert len(errors) == 1
    assert isinstance(errors[0], ZeroDivisionError)


def test_concurrent_foreign_subprocess_run_keeps_its_statuses(
    loop_name: str, make_watcher: Callable[[], Any], watcher_cls: Any
) -> None:
    foreign: List[int] = []

    def other_code() -> None:
        for _ in range(40):
            foreign.append(subprocess.run(["sh", "-c", "exit 42"]).returncode)

    async def main() -> None:
        watcher = make_watcher()
        got = Collector()
        thread = threading.Thread(target=other_code)
        thread.start()
        expected = {}
        for i in range(200):
            pid = spawn_exit(i % 256)
            watcher.add_child_handler(pid, got)
            expected[pid] = i % 256
            await breathe(i)
        assert await got.wait(200) == expected
        while thread.is_alive():
            await asyncio.sleep(0.01)

    run(loop_name, main)
    if watcher_cls is childwatch.FastChildWatcher:
        # Fast reaps every child by design (documented): subprocess then reads 0.
        assert set(foreign) <= {0, 42} and len(foreign) == 40
    else:
        assert foreign == [42] * 40


def test_status_reaped_behind_our_back_is_255_with_warning(
    loop_name: str, make_watcher: Callable[[], Any], watcher_cls: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        watcher = make_watcher()
        got = Collector()
        pid = spawn_sleeper()
        watcher.add_child_handler(pid, got)
        await asyncio.sleep(0.01)
        # Kill and reap it ourselves before the watcher can look: SIGCHLD is
        # blocked so no signal handler runs in between, and the loop does not
        # run until we are done.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            os.kill(pid, signal.SIGKILL)
            assert os.waitpid(pid, 0)[0] == pid
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        await got.wait(1)
        await asyncio.sleep(0.1)
        assert len(got.calls) == 1
        return got.calls[0][1]

    with caplog.at_level(logging.WARNING, logger="childwatch"):
        returncode = run(loop_name, main)
    warned = [r for r in caplog.records if "reaped by someone else" in r.getMessage()]
    if watcher_cls is childwatch.ThreadedChildWatcher and returncode == -signal.SIGKILL:
        # Its waiter thread may peek at the status before we reap: exact too.
        assert warned == []
    else:
        assert (returncode, len(warned)) == (255, 1)


def test_closed_watcher_is_a_new_one_again(watcher_cls: Any) -> None:
    """The lifecycle rule (asyncio's watchers behave so, and its policy and
    CPython's tests rely on it): on a closed watcher close(), attach_loop(None),
    remove_child_handler() and ``with`` are harmless no-ops; attach_loop(loop)
    and add_child_handler() reopen it, and it then delivers exactly.  What was
    registered before close() is never delivered."""
    watcher = watcher_cls()
    dropped = spawn_sleeper()
    got = Collector()

    async def before_close() -> None:
        watcher.add_child_handler(dropped, got)

    async def reopened() -> None:
        watcher.attach_loop(asyncio.get_running_loop())
        assert watcher.is_active()
        pid = spawn_exit(5)
        watcher.add_child_handler(pid, got)
        os.kill(dropped, signal.SIGKILL)
        assert await got.wait(1) == {pid: 5}
        await asyncio.sleep(0.1)
        assert dropped not in got.results

    try:
        run("asyncio", before_close)
        for _ in range(2):
            watcher.close()  # any number of times
            assert "closed" in repr(watcher)
            assert watcher.remove_child_handler(dropped) is False
            watcher.attach_loop(None)
            with watcher as entered:
                assert entered is watcher
            assert "closed" in repr(watcher)  # none of those reopened it
        run("asyncio", reopened)
        assert "closed" not in repr(watcher)
    finally:
        watcher.close()
    if watcher_cls is childwatch.FastChildWatcher:
        assert dropped not in children()  # reaped, as Fast reaps every child, but not delivered
    else:
        assert reap(dropped, kill=False) == -signal.SIGKILL  # left alone by close(), even once reopened


@pytest.mark.parametrize(
    ("pid", "error", "message"),
    [
        ("1234", TypeError, "pid must be an int"),
        (12.0, TypeError, "pid must be an int"),
        (True, TypeError, "pid must be an int"),
        (None, TypeError, "pid must be an int"),
        (0, ValueError, "positive"),
        (-5, ValueError, "positive"),
        (2**31, ValueError, "out of range"),
        (2**70, ValueError, "out of range"),
    ],
)
def test_bad_pid(watcher_cls: Any, pid: Any, error: type, message: str) -> None:
    async def main() -> None:
        watcher = watcher_cls()
        try:
            with pytest.raises(error, match=message):
                watcher.add_child_handler(pid, Collector())
            with pytest.raises(error, match=message):
                watcher.remove_child_handler(pid)
            got = Collector()
            child = spawn_exit(4)
            watcher.add_child_handler(child, got)
            assert await got.wait(1) == {child: 4}
        finally:
            watcher.close()

    run("asyncio", main)


def test_bad_callback_and_loop(watcher_cls: Any) -> None:
    watcher = watcher_cls()
    pid = spawn_sleeper()
    try:
        with pytest.raises(TypeError, match="callback must be callable"):
            watcher.add_child_handler(pid, "not callable")
        with pytest.raises(TypeError, match="loop must be an asyncio event loop"):
            watcher.attach_loop("loop")
        closed = asyncio.new_event_loop()
        closed.close()
        with pytest.raises(RuntimeError, match="closed event loop"):
            watcher.attach_loop(closed)
    finally:
        watcher.close()
        assert reap(pid) == -signal.SIGKILL


def test_pid_that_is_not_a_child(watcher_cls: Any) -> None:
    """Not our child (ourselves, init, a pid already reaped): ChildProcessError at once."""

    async def main() -> None:
        watcher = watcher_cls()
        try:
            gone = spawn_exit(0)
            reap(gone, kill=False)
            for pid in (os.getpid(), 1, gone):
                with pytest.raises(ChildProcessError, match="not a child of this process"):
                    watcher.add_child_handler(pid, Collector())
            got = Collector()
            child = spawn_exit(6)
            watcher.add_child_handler(child, got)
            assert await got.wait(1) == {child: 6}
        finally:
            watcher.close()

    run("asyncio", main)


def test_context_manager_returns_the_watcher(watcher_cls: Any) -> None:
    watcher = watcher_cls()
    with watcher as entered:
        assert entered is watcher
    watcher.close()


def test_abstract_methods_are_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        childwatch.AbstractChildWatcher()  # type: ignore[abstract]

    class Partial(childwatch.AbstractChildWatcher):
        def add_child_handler(self, pid: int, callback: Any, *args: Any) -> None:
            pass

    with pytest.raises(TypeError, match="abstract"):
        Partial()  # type: ignore[abstract]


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="asyncio has no AbstractChildWatcher on 3.14+")
def test_is_an_asyncio_child_watcher(watcher_cls: Any) -> None:
    watcher = watcher_cls()
    assert isinstance(watcher, asyncio.AbstractChildWatcher)  # type: ignore[attr-defined]
    watcher.close()


def test_no_deprecation_warning_on_import_or_construction() -> None:
    code = (
        "import childwatch\n"
        "for name in ('Safe', 'Fast', 'MultiLoop', 'Threaded', 'Pidfd'):\n"
        "    getattr(childwatch, name + 'ChildWatcher')().close()\n"
        "class Mine(childwatch.ThreadedChildWatcher): pass\n"
        "Mine().close()\n"
        "print('quiet')\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, "quiet", "")


def test_registration_needs_a_loop_for_loop_watchers() -> None:
    for cls in (childwatch.SafeChildWatcher, childwatch.FastChildWatcher, childwatch.PidfdChildWatcher):
        watcher = cls()
        pid = spawn_exit(0)
        try:
            with pytest.raises(RuntimeError, match="needs an event loop"):
                watcher.add_child_handler(pid, Collector())
        finally:
            watcher.close()
            assert reap(pid, kill=False) == 0


@pytest.mark.parametrize("cls", [childwatch.ThreadedChildWatcher, childwatch.MultiLoopChildWatcher])
def test_works_without_any_loop(cls: Any) -> None:
    watcher = cls()
    try:
        got = Collector()
        pids = {spawn_exit(c): c for c in (0, 1, 77)}
        for pid in pids:
            watcher.add_child_handler(pid, got, "x")
        assert got.wait_sync(3) == pids
    finally:
        watcher.close()


@pytest.mark.parametrize("cls", [childwatch.ThreadedChildWatcher, childwatch.MultiLoopChildWatcher])
def test_a_callback_bound_to_a_closed_loop_is_not_called(cls: Any, caplog: pytest.LogCaptureFixture) -> None:
    """It could only raise "Event loop is closed": the status is dropped with
    a warning (as asyncio's watchers do) and the child reaped all the same."""
    calls: List[Any] = []

    class Loop(asyncio.SelectorEventLoop):
        def on_exit(self, pid: int, returncode: int) -> None:
            calls.append((pid, returncode))

    loop = Loop()
    loop.close()
    watcher = cls()
    try:
        pid = spawn_exit(3)
        with caplog.at_level(logging.WARNING, logger="childwatch"):
            watcher.add_child_handler(pid, loop.on_exit)
            deadline = time.monotonic() + 10
            while state(pid) is not None:
                assert time.monotonic() < deadline, f"pid {pid} was not reaped"
                time.sleep(0.005)
        assert calls == []
        assert f"the loop that handles pid {pid} is closed: its status 3 is dropped" in caplog.text
    finally:
        watcher.close()


def watcher_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("childwatch-")]


def test_threaded_reads_a_loops_children_in_the_loop(loop_name: str) -> None:
    """Registered from a running loop, a child's pidfd is read by that loop:
    no waiter thread runs, the callback comes in the loop's thread with the
    exact status, the child still a zombie then, and nothing is held after."""
    watcher = childwatch.ThreadedChildWatcher()
    seen: List[Tuple[int, int, bool, List[str]]] = []

    async def main() -> None:
        loop_thread = threading.current_thread()
        done = asyncio.get_running_loop().create_future()

        def callback(pid: int, returncode: int) -> None:
            seen.append((pid, returncode, threading.current_thread() is loop_thread, watcher_threads()))
            assert state(pid) == "Z", "called back before the reap"
            if len(seen) == 3:
                done.set_result(None)

        pids = {
            spawn_exit(5): 5,
            spawn_signal(signal.SIGKILL): -signal.SIGKILL,
            spawn_sleeper(): -signal.SIGTERM,
        }
        for pid in pids:
            watcher.add_child_handler(pid, callback)
        assert watcher_threads() == [], "no thread for a loop's children"
        os.kill(list(pids)[2], signal.SIGTERM)
        await asyncio.wait_for(done, 10)
        assert {pid: rc for pid, rc, _, _ in seen} == pids
        assert all(in_loop and threads == [] for _, _, in_loop, threads in seen), seen

    try:
        fds = len(os.listdir("/proc/self/fd"))
        run(loop_name, main)
        assert len(os.listdir("/proc/self/fd")) == fds and not watcher._homes
    finally:
        watcher.close()


def test_threaded_hands_a_closed_loops_children_to_a_waiter_thread(loop_name: str) -> None:
    """A loop closed while its children run: they are not lost (as with
    asyncio's Pidfd) but handed to the pidfd waiter with their pidfds (at
    ``loop.close()`` on CPython, at the latest at the next registration),
    called back there once they exit, and reaped."""
    watcher = childwatch.ThreadedChildWatcher()
    got = Collector()
    sleeper = spawn_sleeper()

    async def register() -> None:
        watcher.add_child_handler(sleeper, got)

    try:
        run(loop_name, register)
        if sys.implementation.name != "cpython":
            gc.collect()
        if "childwatch-threaded" not in watcher_threads():
            watcher.add_child_handler(spawn_exit(0), got)  # the registration's sweep
        assert "childwatch-threaded" in watcher_threads()
        os.kill(sleeper, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while sleeper not in got.results:
            assert time.monotonic() < deadline, "the closed loop's child was never called back"
            time.sleep(0.005)
        assert got.results[sleeper] == -signal.SIGTERM
        assert dict(zip(got.results, got.threads))[sleeper] == "childwatch-threaded"
        deadline = time.monotonic() + 10
        while state(sleeper) is not None:
            assert time.monotonic() < deadline, "not reaped"
            time.sleep(0.005)
    finally:
        watcher.close()


def test_threaded_rewatches_a_closed_loops_child_registered_again(
    loop_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a closed loop's reader is finalized late (PyPy: at the next garbage
    collection; simulated here by a finalizer that does nothing), registering
    its child again from another loop watches it there afresh, instead of
    replacing the callback of an entry no loop reads any more."""
    monkeypatch.setattr(_loop_pidfds._Home, "dropped", lambda self, callback: None)
    watcher = childwatch.ThreadedChildWatcher()
    sleeper = spawn_sleeper()
    got = Collector()

    async def in_a() -> None:
        watcher.add_child_handler(sleeper, Collector())

    async def in_b() -> None:
        watcher.add_child_handler(sleeper, got)
        os.kill(sleeper, signal.SIGTERM)
        assert await got.wait(1, timeout=10) == {sleeper: -signal.SIGTERM}
        assert got.threads == [threading.current_thread().name]

    try:
        run(loop_name, in_a)
        run(loop_name, in_b)
    finally:
        watcher.close()


def test_threaded_uses_its_waiter_on_a_loop_without_add_reader() -> None:
    """A loop whose add_reader refuses: the child goes to the pidfd waiter
    thread and is called back in the loop's thread all the same."""

    class NoReaders(asyncio.SelectorEventLoop):
        def add_reader(self, fd: Any, callback: Any, *args: Any) -> None:
            raise NotImplementedError("no readers here")

    watcher = childwatch.ThreadedChildWatcher()
    loop = NoReaders()
    got = Collector()

    async def main() -> None:
        loop_thread = threading.current_thread().name
        sleepers = {spawn_sleeper(): signal.SIGTERM, spawn_sleeper(): signal.SIGKILL}
        for pid in sleepers:
            watcher.add_child_handler(pid, got)
        assert "childwatch-threaded" in watcher_threads()  # (children that exit at once may be gone with it)
        for pid, signum in sleepers.items():
            os.kill(pid, signum)
        assert await got.wait(2) == {pid: -signum for pid, signum in sleepers.items()}
        assert got.threads == [loop_thread, loop_thread]

    try:
        loop.run_until_complete(asyncio.wait_for(main(), 30))
    finally:
        watcher.close()
        loop.close()


def test_threaded_close_waits_for_the_thread_delivering_its_last_child() -> None:
    """The waiter thread retires as it reads its last child's exit and then
    delivers it (here in that thread: no loop).  close() meanwhile returns
    only once that thread is gone: CPython's tests check for dangling threads
    right after closing the watcher."""
    watcher = childwatch.ThreadedChildWatcher()
    in_callback = threading.Event()

    def slow(pid: int, returncode: int) -> None:
        in_callback.set()
        time.sleep(0.3)

    try:
        watcher.add_child_handler(spawn_exit(4), slow)
        assert in_callback.wait(10)
    finally:
        watcher.close()
    assert [t.name for t in threading.enumerate() if t.name == "childwatch-threaded"] == []


def test_pidfd_frees_a_closed_loops_fds_when_it_closes(loop_name: str) -> None:
    """Pidfd holds a pidfd per child, read by the loop it was registered
    from.  Once that loop is closed with a child still registered, the pidfd
    is closed (CPython: by loop.close() itself; elsewhere at the latest by the
    next registration, which is the one that follows here); registering the
    child again from another loop watches it afresh there."""
    watcher = childwatch.PidfdChildWatcher()
    sleeper = spawn_sleeper()
    counts: List[int] = []

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def in_a() -> None:
        watcher.add_child_handler(sleeper, Collector())
        counts.append(open_fds())

    async def in_b() -> None:
        got = Collector()
        watcher.add_child_handler(sleeper, got)
        counts.append(open_fds())
        os.kill(sleeper, signal.SIGKILL)
        assert await got.wait(1) == {sleeper: -signal.SIGKILL}

    before = open_fds()
    try:
        run(loop_name, in_a)
        if sys.implementation.name == "cpython":
            assert open_fds() == before, "loop A closed: the child's pidfd is closed with it"
        run(loop_name, in_b)
        assert counts[0] == counts[1], f"fds open with the child watched in loop A, then B: {counts}"
        assert not watcher._homes  # B's went with its loop
        assert open_fds() == before  # neither loop's epoll nor any pidfd is left
    finally:
        watcher.close()


@pytest.mark.parametrize(
    "cls", [childwatch.ThreadedChildWatcher, childwatch.MultiLoopChildWatcher, childwatch.PidfdChildWatcher]
)
def test_loops_in_several_threads(cls: Any, loop_name: str) -> None:
    if loop_name == "uvloop" and cls is childwatch.MultiLoopChildWatcher:
        pytest.skip("MultiLoopChildWatcher is refused on uvloop")
    watcher = cls()
    results: List[Any] = []
    errors: List[BaseException] = []

    def in_thread(seed: int) -> None:
        async def main() -> None:
            got = Collector()
            pids = {spawn_exit((seed * 31 + i) % 256): (seed * 31 + i) % 256 for i in range(30)}
            for pid in pids:
                watcher.add_child_handler(pid, got)
            results.append((await got.wait(30)) == pids)

        try:
            run(loop_name, main)
        except BaseException as exc:
            errors.append(exc)

    try:
        if cls is childwatch.MultiLoopChildWatcher:
            loop = asyncio.new_event_loop()
            watcher.attach_loop(loop)  # installs the handler from the main thread
            loop.close()
        threads = [threading.Thread(target=in_thread, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            # The main thread keeps running Python code, as MultiLoop requires:
            # a SIGCHLD that lands in another thread is handled here.
            time.sleep(0.01)
        assert not errors, errors
        assert results == [True, True, True]
    finally:
        watcher.close()


def test_a_waiter_thread_joined_from_several_threads_at_once() -> None:
    """Each loop a retiring waiter delivers to joins it before its callbacks
    (and close() joins it too), so three threads may join it as it ends.
    PyPy 3.9's Thread.join raised then, now and then (about 1 round in 30
    here), and the loop lost that batch; the waiter's joins take turns."""
    from childwatch.watchers.threaded import _WaiterThread

    errors: List[BaseException] = []

    def join(thread: threading.Thread) -> None:
        try:
            thread.join(5.0)
        except BaseException as exc:
            errors.append(exc)

    for _ in range(200):
        go = threading.Event()
        waiter = _WaiterThread(go.wait, "childwatch-test", (5.0,))
        waiter.start()
        joiners = [threading.Thread(target=join, args=(waiter,)) for _ in range(3)]
        for t in joiners:
            t.start()
        time.sleep(0.001)  # the joiners wait on the thread's end
        go.set()
        for t in joiners:
            t.join(10.0)
        assert not waiter.is_alive() and not any(t.is_alive() for t in joiners)
    assert not errors, errors[:3]


@pytest.mark.parametrize("cls", [childwatch.SafeChildWatcher, childwatch.FastChildWatcher])
def test_signal_watchers_refuse_loops_in_other_threads_clearly(cls: Any) -> None:
    """Safe and Fast handle SIGCHLD with loop.add_signal_handler(), which only
    the main thread may call: a loop in another thread gets a RuntimeError
    that says so and names the watchers that work there; nothing is changed."""
    watcher = cls()
    outcome: List[BaseException] = []

    async def main() -> None:
        pid = spawn_sleeper()
        try:
            for attempt in (
                lambda: watcher.attach_loop(asyncio.get_running_loop()),
                lambda: watcher.add_child_handler(pid, Collector()),
            ):
                try:
                    attempt()
                except RuntimeError as exc:
                    outcome.append(exc)
        finally:
            assert reap(pid) == -signal.SIGKILL

    thread = threading.Thread(target=lambda: asyncio.run(asyncio.wait_for(main(), 30)))
    try:
        thread.start()
        thread.join(60)
        assert [str(exc) for exc in outcome] == [
            f"{cls.__name__} handles SIGCHLD through loop.add_signal_handler(), which works only from "
            "the main thread: attach it from there, or use ThreadedChildWatcher or PidfdChildWatcher "
            "for loops in other threads"
        ] * 2
        assert signal.getsignal(signal.SIGCHLD) in (signal.SIG_DFL, None)
        assert watcher.is_active() is False or watcher._loop is None
    finally:
        watcher.close()


def test_uvloop_refuses_sigchld_watchers() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pid = spawn_sleeper()
        try:
            for cls in (
                childwatch.SafeChildWatcher,
                childwatch.FastChildWatcher,
                childwatch.MultiLoopChildWatcher,
            ):
                watcher = cls()
                with pytest.raises(
                    childwatch.UnsupportedLoopError,
                    match=rf"^{cls.__name__} cannot run on uvloop \(uvloop\.Loop\): uvloop reaps its own children",
                ):
                    watcher.attach_loop(loop)
                with pytest.raises(
                    NotImplementedError, match="use ThreadedChildWatcher or PidfdChildWatcher"
                ):
                    watcher.add_child_handler(pid, Collector())
                watcher.close()
        finally:
            assert reap(pid) == -signal.SIGKILL

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 30))
    finally:
        loop.close()
    assert signal.getsignal(signal.SIGCHLD) in (signal.SIG_DFL, None)


def test_fast_never_delivers_a_remembered_status_to_a_reused_pid() -> None:
    """Fast remembers statuses of unregistered children; after pid reuse that memory is stale."""

    async def main() -> None:
        watcher = childwatch.FastChildWatcher()
        try:
            got = Collector()
            pid = spawn_sleeper()
            # Stands for an earlier process with the same pid, reaped and remembered
            # by Fast: real pid reuse takes a wrap-around of the pid space.
            watcher._early[pid] = 77
            watcher.add_child_handler(pid, got)
            os.kill(pid, signal.SIGTERM)
            assert await got.wait(1) == {pid: -signal.SIGTERM}
            gone = spawn_exit(12)
            wait_zombie(gone)
            await asyncio.sleep(0)
            watcher.attach_loop(asyncio.get_running_loop())
            # An exit before registration is remembered and delivered.
            while gone not in watcher._early:
                await asyncio.sleep(0.01)
            watcher.add_child_handler(gone, got)
            assert (await got.wait(2))[gone] == 12
        finally:
            watcher.close()

    run("asyncio", main)


def test_the_loop_wakes_when_another_thread_takes_the_sigchld(watcher_cls: Any) -> None:
    """The kernel gives SIGCHLD to any thread that does not block it; Python
    runs the handler in the main thread only once that thread runs bytecode
    again.  Here the main thread blocks SIGCHLD, so its loop, asleep in its
    selector with nothing due for 30 s, is never interrupted: it must be
    woken all the same (it is a lost wake-up otherwise, the same race as a
    SIGCHLD arriving just before the loop blocks)."""
    taker_may_go = threading.Event()
    taker = threading.Thread(target=taker_may_go.wait, args=(60,), name="sigchld-taker")
    taker.start()  # before the mask: it inherits the main thread's, SIGCHLD unblocked
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})

    async def main() -> int:
        loop = asyncio.get_running_loop()
        watcher = watcher_cls()
        watcher.attach_loop(loop)
        try:
            done: asyncio.Future[int] = loop.create_future()
            pid = spawn("sleep 0.3; exit 5")  # registered well before it exits
            watcher.add_child_handler(pid, lambda _pid, rc: done.done() or done.set_result(rc))
            return await asyncio.wait_for(done, 30)
        finally:
            watcher.close()

    try:
        assert run("asyncio", main, timeout=60) == 5
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        taker_may_go.set()
        taker.join(10)
