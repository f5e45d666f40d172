"""Stress: every watcher, on every loop that supports it, under load and bounded in time.

Each run mixes, for one watcher on one loop:

* children with random exit codes (0-255) and random fatal signals, some
  exiting at once, some a little later, some killed before they are registered
  (half of those already zombies when registered);
* idle registered children alive throughout, killed with random signals at the end;
* other threads running ``subprocess.run`` concurrently (foreign children);
* registrations from the loop, from several plain threads and, where the
  watcher allows it (Threaded, Pidfd, MultiLoop), from loops in several threads.

and counts, for every registration: lost, wrong and duplicated statuses,
callbacks that ran after the pid was already released (the child must still be
an unreaped zombie with that very status while its callback runs), zombies
left behind, foreign ``subprocess.run`` statuses disturbed (every watcher but
Fast, which reaps every child by design) and signals sent by childwatch itself
(none: after delivery nothing in childwatch can signal a reused pid).  The
autouse ``no_leaks`` fixture adds: no fd, thread or SIGCHLD handler left behind.

Modes
-----
* short (default, run in CI on every Python): 360-500 children per
  watcher × loop, the whole file in 7-20 s on 2 cores (budget: 30 s);
* long: ``CHILDWATCH_STRESS=long`` -- 1,000 idle registered children and
  4,000-6,000 children per watcher × loop, about a minute for the file.
  Run with ``-s`` to see the figures each run prints.

``CHILDWATCH_STRESS_SEED=<int>`` replays the random choices of a run (the seed
is printed and quoted in every failure); timing, of course, is never replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Set, Tuple

import pytest

import childwatch
from childwatch._syscalls import peek
from conftest import (
    children,
    run,
    spawn,
    spawn_exit,
    spawn_signal,
    spawn_sleeper,
    state,
)

MODE = os.environ.get("CHILDWATCH_STRESS", "short").strip().lower()
if MODE not in ("short", "long"):
    raise RuntimeError(f"CHILDWATCH_STRESS must be 'short' or 'long', not {MODE!r}")
LONG = MODE == "long"
SEED = int(os.environ.get("CHILDWATCH_STRESS_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)

pytestmark = pytest.mark.timeout(3600 if LONG else 300)

# Signals a child dies of (default disposition guaranteed by conftest.spawn).
FATAL = [
    signal.SIGKILL,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGABRT,
    signal.SIGSEGV,
    signal.SIGQUIT,
    signal.SIGPIPE,
]
FOREIGN_CODE = 42
LOOP_THREAD_WATCHERS = (
    childwatch.ThreadedChildWatcher,
    childwatch.PidfdChildWatcher,
    childwatch.MultiLoopChildWatcher,
)


@dataclass(frozen=True)
class Plan:
    idle: int  # registered sleepers alive throughout, killed at the end
    main: int  # children registered from the loop in the main thread
    threads: int  # plain threads registering children
    per_thread: int
    loop_threads: int  # threads each running a loop of their own (where allowed)
    per_loop_thread: int
    foreign_threads: int  # threads running subprocess.run meanwhile
    foreign_runs: int  # at most, per foreign thread
    timeout: float  # for one watcher × loop run: each of its three waits for statuses gets a third


PLAN = (
    Plan(
        idle=1000,
        main=1500,
        threads=4,
        per_thread=500,
        loop_threads=3,
        per_loop_thread=500,
        foreign_threads=2,
        foreign_runs=400,
        timeout=1500.0,
    )
    if LONG
    else Plan(
        idle=50,
        main=150,
        threads=3,
        per_thread=60,
        loop_threads=2,
        per_loop_thread=60,
        foreign_threads=2,
        foreign_runs=25,
        timeout=120.0,
    )
)


# -- the ledger ------------------------------------------------------------------


def still_unreaped(pid: int, returncode: int) -> bool:
    """True if ``pid`` is still our unreaped child and exited with ``returncode``."""
    try:
        return peek(pid) == returncode  # waitid(WNOWAIT): None while it runs
    except ChildProcessError:
        return False


Tag = Tuple[str, int]


class Ledger:
    """Every registration (by a unique tag, so a reused pid is told apart) and every call.

    The callback takes no lock: MultiLoop may run it inside a signal handler in
    the main thread, which must never wait for a lock the main thread holds.
    """

    def __init__(self, zombie_check: Callable[[str], bool] = lambda kind: True) -> None:
        self.expected: Dict[Tag, Tuple[int, int]] = {}
        self.kinds: Dict[str, int] = {}
        self.kind_of: Dict[Tag, str] = {}
        self.calls: List[Tuple[Tag, int, int, bool, str]] = []
        self._zombie_check = zombie_check
        self._exempt: Set[Tag] = set()

    def expect(self, tag: Tag, pid: int, returncode: int, kind: str) -> None:
        self.expected[tag] = (pid, returncode)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.kind_of[tag] = kind
        if not self._zombie_check(kind):
            self._exempt.add(tag)

    def __call__(self, pid: int, returncode: int, tag: Tag) -> None:
        zombie = still_unreaped(pid, returncode)
        self.calls.append((tag, pid, returncode, zombie, threading.current_thread().name))

    def delivered(self) -> Set[Tag]:
        return {call[0] for call in list(self.calls)}

    async def wait_for(self, tags: Set[Tag], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        seen: Set[Tag] = set()
        done = 0
        while not tags <= seen and time.monotonic() < deadline:
            calls = self.calls
            seen.update(call[0] for call in calls[done : len(calls)])
            done = len(calls)
            await asyncio.sleep(0.005)

    def verdict(self) -> Dict[str, Any]:
        per_tag: Dict[Tag, List[Tuple[int, int]]] = {}
        not_zombie = []
        for tag, pid, rc, zombie, _ in list(self.calls):
            per_tag.setdefault(tag, []).append((pid, rc))
            if not zombie and tag not in self._exempt:
                not_zombie.append((tag, pid, rc))
        lost = [
            (tag, self.kind_of[tag], exp, state(exp[0]) or "gone")  # "Z": exited, unreaped
            for tag, exp in self.expected.items()
            if tag not in per_tag
        ]
        wrong = [
            (tag, self.expected.get(tag), got[0])
            for tag, got in per_tag.items()
            if got[0] != self.expected.get(tag)
        ]
        duplicated = [(tag, got) for tag, got in per_tag.items() if len(got) > 1]
        return {"lost": lost, "wrong": wrong, "duplicated": duplicated, "not_zombie": not_zombie}


async def pace(i: int) -> None:
    """Let the loop run every 4 registrations.

    Like conftest.breathe, but more often: here other threads' children exit
    too while the loop registers, and a stdlib loop that does not run while a
    few hundred SIGCHLDs arrive overflows its signal wakeup socket (CPython
    then prints "Exception ignored when trying to write to the signal wakeup
    fd", an error under pytest; no status is lost by that).
    """
    if i % 4 == 3:
        await asyncio.sleep(0)


# -- children --------------------------------------------------------------------


def make_child(rng: random.Random) -> Tuple[int, int, str]:
    """Start one child of a random kind; return (pid, expected returncode, kind)."""
    roll = rng.random()
    if roll < 0.45:
        code = rng.randrange(256)
        return spawn_exit(code), code, "exit"
    if roll < 0.70:
        signum = rng.choice(FATAL)
        return spawn_signal(signum), -signum, "signal"
    if roll < 0.85:
        code = rng.randrange(256)
        return spawn(f"sleep 0.0{rng.randrange(1, 6)}; exit {code}"), code, "late exit"
    # Killed before it is registered; half the time already a zombie by then.
    signum = rng.choice(FATAL)
    pid = spawn_sleeper()
    os.kill(pid, signum)
    if rng.random() < 0.5:
        wait_exited(pid)
        return pid, -signum, "zombie before registration"
    return pid, -signum, "killed before registration"


def wait_exited(pid: int, timeout: float = 30.0) -> None:
    """Wait until ``pid`` has exited: a zombie, or already reaped (Fast reaps
    unregistered children at once)."""
    deadline = time.monotonic() + timeout
    while state(pid) not in ("Z", None):
        assert time.monotonic() < deadline, f"pid {pid} did not exit"
        time.sleep(0.001)


def zombie_check_for(watcher_cls: Any) -> Callable[[str], bool]:
    """Which kinds of children must still be zombies while their callback runs.

    All of them, except with Fast: it reaps every exited child at once and
    remembers the status of one not registered yet, so a child that may have
    exited before its registration is already released when its callback
    runs (documented).  Idle children are registered long before they die.
    """
    if watcher_cls is childwatch.FastChildWatcher:
        return lambda kind: kind == "idle"
    return lambda kind: True


def register_one(watcher: Any, ledger: Ledger, rng: random.Random, tag: Tag) -> None:
    pid, returncode, kind = make_child(rng)
    ledger.expect(tag, pid, returncode, kind)
    watcher.add_child_handler(pid, ledger, tag)


# -- load around the watcher ---------------------------------------------------------


class Foreign:
    """Threads running ``subprocess.run`` as unrelated code would."""

    def __init__(self, count: int, runs: int) -> None:
        self.codes: List[int] = []
        self.errors: List[BaseException] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(runs,), name=f"foreign-{n}") for n in range(count)
        ]

    def _work(self, runs: int) -> None:
        try:
            for _ in range(runs):
                if self._stop.is_set():
                    return
                self.codes.append(subprocess.run(["sh", "-c", f"exit {FOREIGN_CODE}"]).returncode)
                time.sleep(0.001)
        except BaseException as exc:
            self.errors.append(exc)

    def start(self) -> None:
        for t in self._threads:
            t.start()

    async def stop(self) -> None:
        self._stop.set()
        while any(t.is_alive() for t in self._threads):
            await asyncio.sleep(0.01)


class KillMonitor:
    """Records every signal sent from childwatch's own code (there must be none)."""

    NAMES = ((os, "kill"), (os, "killpg"), (signal, "pthread_kill"), (signal, "pidfd_send_signal"))

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.from_childwatch: List[Tuple[str, Any]] = []
        for module, name in self.NAMES:
            real = getattr(module, name, None)
            if real is not None:
                monkeypatch.setattr(module, name, self._wrap(real, f"{module.__name__}.{name}"))

    def _wrap(self, real: Callable[..., Any], name: str) -> Callable[..., Any]:
        def guarded(*args: Any) -> Any:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.split(".")[0] == "childwatch":
                self.from_childwatch.append((name, args))
            return real(*args)

        return guarded


def open_fds() -> Set[str]:
    return set(os.listdir("/proc/self/fd"))


def leaks_since(fds_before: Set[str], threads_before: Set[threading.Thread]) -> Tuple[int, int]:
    """fds and threads opened since, and still there (threads get 5 s to end)."""
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - threads_before and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(open_fds() - fds_before), len(set(threading.enumerate()) - threads_before)


@contextlib.contextmanager
def enough_fds(needed: int) -> Iterator[None]:
    """Raise the soft RLIMIT_NOFILE (never above the hard one) for the run; restore it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = soft if soft >= needed else (needed if hard == resource.RLIM_INFINITY else min(needed, hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- one run ------------------------------------------------------------------------


@dataclass
class Report:
    loop_name: str
    watcher: str
    seed: int
    registered: int = 0
    kinds: Dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    verdict: Dict[str, Any] = field(default_factory=dict)
    zombies: List[int] = field(default_factory=list)
    foreign: List[int] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    kills_from_childwatch: List[Any] = field(default_factory=list)
    fds_leaked: int = 0
    threads_leaked: int = 0

    def line(self) -> str:
        v = self.verdict
        return (
            f"[stress {MODE}] {self.loop_name}/{self.watcher} seed={self.seed}: "
            f"{self.registered} children {dict(sorted(self.kinds.items()))} in {self.seconds:.1f}s; "
            f"lost={len(v.get('lost', ()))} wrong={len(v.get('wrong', ()))} "
            f"duplicated={len(v.get('duplicated', ()))} not-zombie-in-callback={len(v.get('not_zombie', ()))} "
            f"zombies={len(self.zombies)} foreign={len(self.foreign)} "
            f"foreign-disturbed={sum(c != FOREIGN_CODE for c in self.foreign)} "
            f"fds-leaked={self.fds_leaked} threads-leaked={self.threads_leaked} errors={len(self.errors)}"
        )


def stress(loop_name: str, watcher_cls: Any, monkeypatch: pytest.MonkeyPatch, seed: int) -> Report:
    report = Report(loop_name, watcher_cls.__name__, seed)
    ledger = Ledger(zombie_check_for(watcher_cls))
    monitor = KillMonitor(monkeypatch)
    foreign = Foreign(PLAN.foreign_threads, PLAN.foreign_runs)
    errors: List[BaseException] = []
    watcher = watcher_cls()
    loop_threads_allowed = issubclass(watcher_cls, LOOP_THREAD_WATCHERS)

    main_loop: List[asyncio.AbstractEventLoop] = []

    def plain_thread(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        try:
            for i in range(PLAN.per_thread):
                register_one(watcher, ledger, rng, (f"thread-{n}", i))
                if i % 8 == 7:
                    # As breathe() does for the loop's own registrations: wait
                    # until the main loop has run (and drained its signal wakeup
                    # socket), however long a SIGCHLD scan keeps it busy.
                    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), main_loop[0]).result(30)
        except BaseException as exc:
            errors.append(exc)

    def loop_thread(n: int) -> None:
        rng = random.Random(seed * 1000 + 500 + n)

        async def main() -> None:
            tags = set()
            for i in range(PLAN.per_loop_thread):
                tag = (f"loop-{n}", i)
                register_one(watcher, ledger, rng, tag)
                tags.add(tag)
                await pace(i)
            # Keep this loop running until its children are all delivered:
            # their callbacks run here.
            await ledger.wait_for(tags, PLAN.timeout / 3)

        try:
            run(loop_name, main, timeout=PLAN.timeout + 60)  # the waits give up first: a verdict
        except BaseException as exc:
            errors.append(exc)

    async def main() -> None:
        rng = random.Random(seed)
        loop = asyncio.get_running_loop()
        main_loop.append(loop)
        watcher.attach_loop(loop)  # from the main thread: Safe/Fast need it, MultiLoop installs here
        started = time.monotonic()
        idle = []
        for i in range(PLAN.idle):
            pid = spawn_sleeper()
            idle.append((pid, ("idle", i)))
            watcher.add_child_handler(pid, ledger, ("idle", i))
            await pace(i)
        foreign.start()
        threads = [
            threading.Thread(target=plain_thread, args=(n,), name=f"register-{n}")
            for n in range(PLAN.threads)
        ]
        if loop_threads_allowed:
            threads += [
                threading.Thread(target=loop_thread, args=(n,), name=f"loop-{n}")
                for n in range(PLAN.loop_threads)
            ]
        for t in threads:
            t.start()
        for i in range(PLAN.main):
            register_one(watcher, ledger, rng, ("main", i))
            await pace(i)
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(0.01)
        non_idle = set(ledger.expected) - {tag for _, tag in idle}
        await ledger.wait_for(non_idle, PLAN.timeout / 3)
        # The idle ones, alive all along, now die of random signals.
        for i, (pid, tag) in enumerate(idle):
            signum = rng.choice(FATAL)
            ledger.expect(tag, pid, -signum, "idle")
            os.kill(pid, signum)
            await pace(i)
        await ledger.wait_for(set(ledger.expected), PLAN.timeout / 3)
        await foreign.stop()
        await asyncio.sleep(0.3)  # a duplicate, if any, would arrive now
        report.seconds = time.monotonic() - started

    fds_before, threads_before = open_fds(), set(threading.enumerate())
    with enough_fds(PLAN.idle + 2 * PLAN.main + 512):
        try:
            run(loop_name, main, timeout=PLAN.timeout + 60)  # the waits give up first: a verdict
        finally:
            # Whatever happened, nothing may outlive the run (no_leaks checks the rest).
            deadline = time.monotonic() + 10
            while children() and time.monotonic() < deadline:
                time.sleep(0.01)  # the watcher reaps right after each callback
            report.zombies = children()
            watcher.close()
    report.fds_leaked, report.threads_leaked = leaks_since(fds_before, threads_before)
    report.registered = len(ledger.expected)
    report.kinds = ledger.kinds
    report.verdict = ledger.verdict()
    report.foreign = list(foreign.codes)
    report.errors = [repr(e) for e in errors + foreign.errors]
    report.kills_from_childwatch = list(monitor.from_childwatch)
    print(report.line())
    return report


def check(report: Report, watcher_cls: Any) -> None:
    v = report.verdict
    where = f"{report.line()}\nreplay with CHILDWATCH_STRESS_SEED={report.seed}"
    assert not report.errors, f"errors in threads: {report.errors[:5]}\n{where}"
    assert not v["lost"], f"lost statuses: {v['lost'][:10]}\n{where}"
    assert not v["wrong"], f"wrong statuses (tag, expected, got): {v['wrong'][:10]}\n{where}"
    assert not v["duplicated"], f"duplicated statuses: {v['duplicated'][:10]}\n{where}"
    assert not v["not_zombie"], f"callback ran after the pid was released: {v['not_zombie'][:10]}\n{where}"
    assert not report.zombies, f"zombies left behind: {report.zombies[:10]}\n{where}"
    assert not report.kills_from_childwatch, (
        f"childwatch sent signals: {report.kills_from_childwatch[:5]}\n{where}"
    )
    assert (report.fds_leaked, report.threads_leaked) == (0, 0), f"leaks\n{where}"
    assert report.foreign, f"no foreign subprocess.run completed\n{where}"
    if watcher_cls is childwatch.FastChildWatcher:
        # Fast reaps every child by design: subprocess.run then reads 0.
        assert set(report.foreign) <= {0, FOREIGN_CODE}, where
    else:
        assert set(report.foreign) == {FOREIGN_CODE}, f"foreign statuses disturbed\n{where}"


# -- the tests -----------------------------------------------------------------------


def test_stress(loop_name: str, watcher_cls: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every supported watcher × loop: nothing lost, wrong, duplicated or left behind."""
    check(stress(loop_name, watcher_cls, monkeypatch, SEED), watcher_cls)


@pytest.mark.parametrize("cls", [childwatch.ThreadedChildWatcher, childwatch.MultiLoopChildWatcher])
def test_stress_without_any_loop(cls: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threaded and MultiLoop need no loop: registrations from bare threads only,
    callbacks in the waiter thread / the main thread's signal handler."""
    ledger = Ledger()
    monitor = KillMonitor(monkeypatch)
    foreign = Foreign(PLAN.foreign_threads, PLAN.foreign_runs)
    fds_before, threads_before = open_fds(), set(threading.enumerate())
    watcher = cls()
    errors: List[BaseException] = []
    per_thread = PLAN.per_thread * 2
    started = time.monotonic()

    def register(n: int) -> None:
        rng = random.Random(SEED * 7 + n)
        try:
            for i in range(per_thread):
                register_one(watcher, ledger, rng, (f"bare-{n}", i))
        except BaseException as exc:
            errors.append(exc)

    try:
        if cls is childwatch.MultiLoopChildWatcher:
            # The handler is installed from the main thread, by the first registration.
            register_one(watcher, ledger, random.Random(SEED), ("main", 0))
        foreign.start()
        threads = [threading.Thread(target=register, args=(n,)) for n in range(PLAN.threads)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + PLAN.timeout
        # Poll, never join: MultiLoop's handler runs only while the main thread runs Python.
        while time.monotonic() < deadline and (
            any(t.is_alive() for t in threads) or not set(ledger.expected) <= ledger.delivered()
        ):
            time.sleep(0.005)
        foreign._stop.set()
        while any(t.is_alive() for t in foreign._threads):
            time.sleep(0.01)
        time.sleep(0.3)
        deadline = time.monotonic() + 10
        while children() and time.monotonic() < deadline:
            time.sleep(0.01)
        zombies = children()
    finally:
        watcher.close()
    report = Report("none", cls.__name__, SEED, registered=len(ledger.expected), kinds=ledger.kinds)
    report.seconds = time.monotonic() - started
    report.fds_leaked, report.threads_leaked = leaks_since(fds_before, threads_before)
    report.verdict = ledger.verdict()
    report.zombies = zombies
    report.foreign = list(foreign.codes)
    report.errors = [repr(e) for e in errors + foreign.errors]
    report.kills_from_childwatch = list(monitor.from_childwatch)
    print(report.line())
    check(report, cls)
