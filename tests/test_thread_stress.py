"""One watcher hammered from many threads at once (issue 28): the races a
free-threaded build runs for real, which the GIL only makes rarer.

Every test here runs on every Python, with or without the GIL (on a
free-threaded build the matrix checks that the GIL is off), and checks exact
statuses, exactly-once delivery, the thread each callback runs in, and, by the
autouse ``no_leaks`` fixture, no zombie, fd or thread left behind.

* registrations from eight threads at once (loops of their own for the
  watchers that serve any loop, plain threads for Safe and Fast, which serve
  the main thread's loop), each child registered, then at random removed and
  registered again or re-registered with another callback (the last one
  must be the one called), with ``Popen.poll()`` racing the watcher on some,
  beside threads churning ``subprocess.run`` of their own;
* ``close()`` and reopen, and ``attach_loop`` moves, from one thread while
  eight others register: every child is delivered at most once, exactly, and
  those registered after the last close exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

import childwatch
from childwatch._syscalls import peek as childwatch_status
from conftest import run

THREADS = 8
PER_THREAD = 24
FOREIGN_THREADS = 2
SEED = random.SystemRandom().randrange(1, 2**31)
ANY_LOOP_WATCHERS = ("MultiLoop", "Threaded", "Pidfd")
ALL = ("Safe", "Fast", *ANY_LOOP_WATCHERS)

pytestmark = [
    pytest.mark.timeout(240),
    # CPython's own report of a SIGCHLD that tripped between signal.signal()'s check of pending
    # signals and its swap to SIG_DFL (loop.remove_signal_handler() on a close or attach_loop
    # move, while eight threads churn children): the handler it finds then is None.  Nothing is
    # lost (the watcher being removed no longer needed it); any other exception in a signal
    # handler, ours included, still fails the test.
    pytest.mark.filterwarnings(
        r"ignore:(?s)Exception ignored [^\x3a]*\x3a None\n.*Signal \d+ ignored due to race condition"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]


def gil() -> str:
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return "no GIL" if is_enabled is not None and not is_enabled() else "GIL"


class Book:
    """Who was registered (by tag: thread and number), what it must get, and every call."""

    def __init__(self) -> None:
        # Reentrant: MultiLoop calls back a child registered outside any loop in the main
        # thread's signal handler (README), which may interrupt the main thread inside
        # ``with book.lock`` (PyPy did: a deadlock).  What the main thread does under it
        # (copy the dict, read the list) bears an append in between.
        self.lock = threading.RLock()
        self.expected: Dict[Tuple[int, int], Tuple[int, int, Optional[str]]] = {}  # tag -> pid, code, thread
        self.calls: List[Tuple[Tuple[int, int], int, int, str, bool]] = []  # tag, pid, rc, thread, final

    def expect(self, tag: Tuple[int, int], pid: int, code: int, thread: Optional[str]) -> None:
        with self.lock:
            self.expected[tag] = (pid, code, thread)

    def callback(self, final: bool) -> Any:
        def called(pid: int, returncode: int, tag: Tuple[int, int], popen: subprocess.Popen[Any]) -> None:
            with self.lock:
                self.calls.append((tag, pid, returncode, threading.current_thread().name, final))

        return called

    def wait(self, tags: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len({call[0] for call in self.calls}) >= tags:
                    return
            time.sleep(0.01)

    def problems(self, only: Optional[set] = None) -> List[str]:  # type: ignore[type-arg]
        found: List[str] = []
        per_tag: Dict[Tuple[int, int], List[Any]] = {}
        for call in self.calls:
            per_tag.setdefault(call[0], []).append(call)
        for tag, (pid, code, thread) in self.expected.items():
            got = per_tag.get(tag, [])
            if only is not None and tag not in only and not got:
                continue  # dropped by a close(): never delivered, and that is allowed
            if len(got) != 1:
                found.append(f"{tag} pid {pid}: {len(got)} calls {got}")
                continue
            _, got_pid, rc, in_thread, final = got[0]
            if (got_pid, rc) != (pid, code):
                found.append(f"{tag}: got pid {got_pid} rc {rc}, expected pid {pid} rc {code}")
            if not final:
                found.append(f"{tag}: a replaced callback was called")
            if thread is not None and in_thread != thread:
                found.append(f"{tag}: called in {in_thread}, expected {thread}")
        return found


def spawn(code: int) -> subprocess.Popen[Any]:
    """A child that exits with ``code`` once its stdin is closed."""
    return subprocess.Popen(["sh", "-c", f"read _; exit {code}"], stdin=subprocess.PIPE)


def release(popen: subprocess.Popen[Any]) -> None:
    assert popen.stdin is not None
    popen.stdin.close()


def register(
    watcher: Any, book: Book, tag: Tuple[int, int], rng: random.Random, thread: Optional[str]
) -> subprocess.Popen[Any]:
    """Register one child as real code might, racing whatever else runs."""
    code = rng.randrange(256)
    popen = spawn(code)
    book.expect(tag, popen.pid, code, thread)
    how = rng.randrange(5)
    try:
        _register(watcher, book, tag, how, popen)
    except BaseException:
        release(popen)
        popen.wait(30)  # refused: not watched, reaped here
        raise
    if how == 3:
        for _ in range(rng.randrange(1, 20)):  # Popen racing the watcher for the status
            popen.poll()
    return popen


def _register(watcher: Any, book: Book, tag: Tuple[int, int], how: int, popen: subprocess.Popen[Any]) -> None:
    """0: registered, removed, registered again; 1: registered twice (the second
    callback replaces the first); 2: once; 3: once, then polled by its Popen
    (above); 4: once, the child already exited (a zombie) when registered."""
    if how == 4:
        release(popen)
        if isinstance(watcher, childwatch.FastChildWatcher):
            time.sleep(0.01)  # (Fast reaps it as it exits, and keeps its status for this registration)
        else:
            while childwatch_status(popen.pid) is None:
                time.sleep(0.0005)
        watcher.add_child_handler(popen.pid, book.callback(final=True), tag, popen)
        return
    if how == 0:
        watcher.add_child_handler(popen.pid, book.callback(final=False), tag, popen)
        assert watcher.remove_child_handler(popen.pid) in (True, False)  # (False: it exited, delivered)
        watcher.add_child_handler(popen.pid, book.callback(final=True), tag, popen)
    elif how == 1:
        watcher.add_child_handler(popen.pid, book.callback(final=False), tag, popen)
        watcher.add_child_handler(popen.pid, book.callback(final=True), tag, popen)  # replaces it
    else:
        watcher.add_child_handler(popen.pid, book.callback(final=True), tag, popen)
    release(popen)


def churn(stop: threading.Event, codes: List[int]) -> None:
    while not stop.is_set():
        codes.append(subprocess.run(["sh", "-c", "exit 42"], check=False).returncode)


def foreign_churn() -> Tuple[threading.Event, List[threading.Thread], List[int]]:
    stop = threading.Event()
    codes: List[int] = []
    threads = [threading.Thread(target=churn, args=(stop, codes)) for _ in range(FOREIGN_THREADS)]
    for thread in threads:
        thread.start()
    return stop, threads, codes


def stop_churn(churn_: Tuple[threading.Event, List[threading.Thread], List[int]], name: str) -> None:
    stop, threads, codes = churn_
    stop.set()
    for thread in threads:
        thread.join(30)
    assert codes, "the foreign threads ran no child"
    if name != "Fast":  # Fast reaps every child of the process, by contract
        assert set(codes) == {42}, f"foreign statuses disturbed: {sorted(set(codes))}"


@pytest.mark.parametrize("name", ALL)
def test_eight_threads_register_replace_and_race_popen(name: str) -> None:
    rng_seed = SEED
    book = Book()
    watcher = getattr(childwatch, f"{name}ChildWatcher")()
    errors: List[BaseException] = []
    main_thread = threading.current_thread().name

    def plain_thread(index: int) -> None:  # Safe and Fast: the loop is the main thread's
        rng = random.Random(rng_seed + index)
        try:
            for n in range(PER_THREAD):
                register(watcher, book, (index, n), rng, main_thread)
        except BaseException as exc:
            errors.append(exc)

    def loop_thread(index: int) -> None:  # the others: a loop in each thread
        rng = random.Random(rng_seed + index)
        me = threading.current_thread().name

        async def main() -> None:
            for n in range(PER_THREAD):
                register(watcher, book, (index, n), rng, me)
                if n % 4 == 3:
                    await asyncio.sleep(0.005)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # this thread's callbacks run in this loop
                with book.lock:
                    mine = {c[0] for c in book.calls if c[0][0] == index}
                if len(mine) == PER_THREAD:
                    return
                await asyncio.sleep(0.01)

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    async def main() -> None:
        if name in ("Safe", "Fast", "MultiLoop"):  # (MultiLoop: its handler is installed from here)
            watcher.attach_loop(asyncio.get_running_loop())
        target = loop_thread if name in ANY_LOOP_WATCHERS else plain_thread
        churning = foreign_churn()
        threads = [threading.Thread(target=target, args=(i,), name=f"stress-{i}") for i in range(THREADS)]
        try:
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads):
                await asyncio.sleep(0.01)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len({c[0] for c in book.calls}) < THREADS * PER_THREAD:
                await asyncio.sleep(0.01)
        finally:
            stop_churn(churning, name)

    try:
        run("asyncio", main, timeout=180)
    finally:
        watcher.close()
    assert not errors, f"seed {SEED} ({gil()}): {errors!r}"
    problems = book.problems()
    assert not problems, f"seed {SEED} ({gil()}): " + "\n".join(problems[:20])


@pytest.mark.parametrize("name", ALL)
def test_close_reopen_and_attach_moves_while_eight_threads_register(name: str) -> None:
    """The main thread closes and reattaches the watcher (and, for the watchers
    that allow it, moves it between two loops) while eight threads register:
    nothing is delivered twice or wrong, no callback runs in a thread it does
    not belong to, and every child registered after the last reopen is
    delivered.  Children dropped by a close() are reaped by the test."""
    book = Book()
    watcher = getattr(childwatch, f"{name}ChildWatcher")()
    errors: List[BaseException] = []
    popens: List[subprocess.Popen[Any]] = []
    popens_lock = threading.Lock()
    # Registered outside any loop: Safe, Fast and Pidfd call back in the attached loop's
    # thread; Threaded and MultiLoop in a thread of their own (the contract allows any).
    main_thread = threading.current_thread().name if name in ("Safe", "Fast", "Pidfd") else None
    registering = threading.Event()
    registering.set()

    def plain_thread(index: int) -> None:
        rng = random.Random(SEED + 100 + index)
        n = 0
        try:
            while registering.is_set():
                try:
                    popen = register(watcher, book, (index, n), rng, main_thread)
                except RuntimeError:  # Safe/Fast with no loop attached for a moment: refused
                    continue
                except ChildProcessError:
                    if name != "Fast":
                        raise
                    continue  # Fast reaped it ahead of its registration, and a close() forgot it
                with popens_lock:
                    popens.append(popen)
                n += 1
                time.sleep(0.002)
        except BaseException as exc:
            errors.append(exc)

    async def main() -> set:  # type: ignore[type-arg]
        loop = asyncio.get_running_loop()
        other = asyncio.new_event_loop()  # an attach_loop target that is not this one (never run)
        watcher.attach_loop(loop)
        threads = [
            threading.Thread(target=plain_thread, args=(i,), name=f"closer-{i}") for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        try:
            for round_ in range(12):
                await asyncio.sleep(0.03)
                if round_ % 3 == 2 and name not in ("Safe", "Fast"):
                    watcher.attach_loop(other)  # moved away for a moment ...
                    watcher.attach_loop(loop)  # ... and back
                else:
                    watcher.close()
                    watcher.attach_loop(loop)
            with book.lock:
                after_last_close = set(book.expected)
            await asyncio.sleep(0.1)
        finally:
            registering.clear()
            for thread in threads:
                thread.join(30)
            other.close()
        with book.lock:
            last = set(book.expected) - after_last_close
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with book.lock:
                if last <= {c[0] for c in book.calls}:
                    break
            await asyncio.sleep(0.01)
        return last

    try:
        last = run("asyncio", main, timeout=180)
    finally:
        watcher.close()
        for popen in popens:  # the ones a close() dropped: never delivered, reaped here
            popen.wait(30)
    assert not errors, f"seed {SEED} ({gil()}): {errors!r}"
    assert last, "nothing was registered after the last close"
    problems = book.problems(only=last)
    assert not problems, f"seed {SEED} ({gil()}): " + "\n".join(problems[:20])


# -- races found by reading the watchers (each failed before its fix) ----------------------------


POPEN_WAIT_IN_MAIN = """
import json, subprocess, sys, threading, time
import childwatch

watcher = childwatch.MultiLoopChildWatcher()
got, results = [], []
delivered = threading.Event()

def callback(pid, returncode, popen):
    got.append(returncode)
    delivered.set()

for code in (7, 8, 9):
    delivered.clear()
    popen = subprocess.Popen(["sh", "-c", f"sleep 0.2; exit {code}"])
    watcher.add_child_handler(popen.pid, callback, popen)  # outside any loop
    started = time.monotonic()
    waited = popen.wait()  # (no timeout: wait() then holds the Popen's lock in waitpid; bounded by the test)
    took = time.monotonic() - started
    results.append([waited, took, delivered.wait(30) and got[-1]])
watcher.close()
print(json.dumps(results))
"""


def test_multiloop_delivers_the_status_a_popen_wait_in_the_main_thread_collects() -> None:
    """A child registered outside any loop, its Popen waited for in the main thread:
    the SIGCHLD handler runs inside that very ``wait()``, which holds the Popen's
    lock; the delivery must not wait for it there (it stalled 1 s, then gave 255).
    In a process of its own, as a program would run it."""
    out = subprocess.run(
        [sys.executable, "-c", POPEN_WAIT_IN_MAIN], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    for (waited, took, delivered), code in zip(json.loads(out.stdout), (7, 8, 9)):
        assert waited == code
        assert delivered == code, out.stderr
        assert took < 0.9, f"the main thread stalled {took:.2f} s in the signal handler"


@pytest.mark.parametrize("name", ["Safe", "Fast"])
def test_close_from_another_thread(name: str) -> None:
    """close() of a Safe/Fast watcher attached to the main thread's loop, from
    another thread: no error (the loop's signal handler is the main thread's to
    remove, which it then does), and the loop's SIGCHLD handler is gone after."""
    watcher = getattr(childwatch, f"{name}ChildWatcher")()
    errors: List[BaseException] = []

    async def main() -> int:
        loop = asyncio.get_running_loop()
        watcher.attach_loop(loop)

        def close() -> None:
            try:
                watcher.close()
            except BaseException as exc:
                errors.append(exc)

        closer = threading.Thread(target=close)
        closer.start()
        while closer.is_alive():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the loop removes its handler
        return len(getattr(loop, "_signal_handlers", {}))

    try:
        handlers_left = run("asyncio", main)
    finally:
        watcher.close()
    assert not errors, errors
    assert handlers_left == 0


@pytest.mark.parametrize("name", ["Safe", "Pidfd"])
def test_a_registration_racing_close_is_watched_or_refused(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() used to give up the lock before releasing the watcher's resources:
    a registration from another thread in between reopened the watcher on
    resources about to go, and was never delivered.  (The window is widened by
    a pause at the start of the release.)"""
    cls = getattr(childwatch, f"{name}ChildWatcher")
    original = cls._release_resources

    releasing = threading.Event()

    def slow_release(self: Any) -> None:
        releasing.set()
        time.sleep(0.2)
        original(self)

    monkeypatch.setattr(cls, "_release_resources", slow_release)
    watcher = cls()
    got: List[int] = []
    outcome: List[str] = []

    async def main() -> None:
        watcher.attach_loop(asyncio.get_running_loop())
        popen = spawn(5)

        def register_late() -> None:
            releasing.wait(30)  # while close() is in its release (not before it began: then it drops it)
            try:
                watcher.add_child_handler(popen.pid, lambda pid, rc, p: got.append(rc), popen)
                outcome.append("registered")
            except RuntimeError:
                outcome.append("refused")

        late = threading.Thread(target=register_late)
        late.start()
        watcher.close()  # (the loop's thread: the release pauses inside it)
        while late.is_alive():
            await asyncio.sleep(0.01)
        release(popen)
        if outcome == ["registered"]:
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        popen.wait(30)

    try:
        run("asyncio", main)
    finally:
        watcher.close()
    assert outcome in (["registered"], ["refused"]), outcome
    if outcome == ["registered"]:
        assert got == [5], "registered after close() began, never delivered"


def test_safe_sees_an_exit_while_a_registration_is_being_admitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Safe skipped its scan when its table looked empty (read without the lock)
    while another thread held the lock between reading its child's status and
    admitting it: that child's exit went unseen for good."""
    cls = childwatch.SafeChildWatcher
    status_at_registration = cls._status_at_registration

    def slow(self: Any, pid: int) -> Any:
        status = status_at_registration(self, pid)
        time.sleep(0.3)  # preempted after the status read, before the entry is admitted
        return status

    monkeypatch.setattr(cls, "_status_at_registration", slow)
    watcher = cls()
    got: List[int] = []

    async def main() -> None:
        watcher.attach_loop(asyncio.get_running_loop())
        popen = subprocess.Popen(["sh", "-c", "sleep 0.1; exit 9"])  # exits during the pause
        registrar = threading.Thread(
            target=watcher.add_child_handler, args=(popen.pid, lambda pid, rc, p: got.append(rc), popen)
        )
        registrar.start()
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        registrar.join(10)
        popen.wait(30)

    try:
        run("asyncio", main)
    finally:
        watcher.close()
    assert got == [9]


@pytest.mark.parametrize("name", ["Safe", "MultiLoop", "Threaded", "Pidfd"])  # (Fast reaps first, by design)
def test_a_popen_reap_in_progress_in_another_thread_comes_first(name: str) -> None:
    """``poll()``/``wait()`` hold the Popen's own lock from their ``waitpid()`` until the status
    is stored.  A delivery in that window read no returncode, stored the watcher's, called back,
    and reaped the pid the Popen had just reaped (by then a newcomer's, if the pid was reused).
    Now it waits for the Popen's lock: the callback gets the Popen's status, after its reap, and
    the watcher reaps nothing.  (Emulated as ``poll()`` runs it, the window widened to 0.3 s.)"""
    watcher = getattr(childwatch, f"{name}ChildWatcher")()
    popen = spawn(42)
    order: List[Any] = []
    errors: List[BaseException] = []

    def popen_reaps() -> None:
        try:
            with popen._waitpid_lock:  # type: ignore[attr-defined]
                release(popen)  # the child exits; the watcher sees it while the lock is held
                time.sleep(0.3)
                _, status = os.waitpid(popen.pid, 0)
                order.append("the Popen reaped")
                popen.returncode = os.waitstatus_to_exitcode(status)
        except BaseException as exc:  # ECHILD: the watcher reaped it first
            errors.append(exc)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        watcher.attach_loop(loop)
        done: asyncio.Future[int] = loop.create_future()

        def called(pid: int, returncode: int, popen: subprocess.Popen[Any]) -> None:
            order.append(("called", returncode))
            loop.call_soon_threadsafe(done.set_result, returncode)

        watcher.add_child_handler(popen.pid, called, popen)
        reaper = threading.Thread(target=popen_reaps)
        reaper.start()
        try:
            return await asyncio.wait_for(done, 30)
        finally:
            while reaper.is_alive():
                await asyncio.sleep(0.01)

    try:
        returncode = run("asyncio", main)
    finally:
        watcher.close()
    assert not errors, errors
    assert returncode == 42
    assert order == ["the Popen reaped", ("called", 42)]


def test_an_adapter_plugin_may_ask_for_adapters_as_it_is_imported(tmp_path: Any) -> None:
    """Entry points were loaded under the registry's lock: a plugin that registers
    an adapter (or asks for one) as it is imported deadlocked the first query."""
    dist = tmp_path / "askingloop-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: askingloop\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[childwatch.loops]\naskingloop = askingloop_adapter:make\n")
    (tmp_path / "askingloop_adapter.py").write_text(
        "import childwatch.loops\n"
        "childwatch.loops.adapters()  # asked while the entry points load\n"
        "class Adapter(childwatch.loops.LoopAdapter):\n"
        "    name = 'askingloop'\n"
        "    def matches(self, loop):\n"
        "        return False\n"
        "def make():\n"
        "    return Adapter()\n"
    )
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "import childwatch.loops\n"
        "print([a.name for a in childwatch.loops.adapters()][:1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['askingloop']"
