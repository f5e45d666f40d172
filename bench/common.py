"""What every benchmark script shares: its children, watchers made by name, the fd limit.

``bench/run.py``'s worker, ``bench/floor.py`` and ``bench/micro.py`` all churn
``/bin/true`` children (``os.posix_spawn``, :data:`INFLIGHT` at once), keep
idle ``cat`` children alive (:class:`Idle`), make a watcher from a name such
as ``cw:Safe`` or ``std:Pidfd`` (:func:`make_watcher`) and quiet asyncio's
signal wakeup fd (:func:`quiet_wakeup_fd`); this module is the one copy.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Tuple

TRUE = shutil.which("true") or "/bin/true"
CAT = shutil.which("cat") or "/bin/cat"
INFLIGHT = 32
WARMUP = 320
STDLIB_HAS_WATCHERS = sys.version_info < (3, 14)
KINDS = ["Safe", "Fast", "MultiLoop", "Threaded", "Pidfd"]


def spawn_true() -> int:
    return os.posix_spawn(TRUE, ["true"], {})


NESTING_MAX = 20
"""How deep a churn's callbacks nest before the next start is queued instead."""


def start_next(state: Dict[str, Any], start: Callable[[], None]) -> None:
    """Start the next churn child from a callback, in the loop's thread.

    A watcher may call back from inside ``add_child_handler`` (the child had
    exited already), so starts nest: past :data:`NESTING_MAX` levels (counted
    in ``state["depth"]``) the next start is queued on the loop instead."""
    if state["depth"] > NESTING_MAX:
        asyncio.get_running_loop().call_soon(start)
        return
    state["depth"] += 1
    try:
        start()
    finally:
        state["depth"] -= 1


def raw_warmup() -> None:
    """Spawn and reap :data:`WARMUP` children, :data:`INFLIGHT` at a time (caches warm)."""
    for _ in range(WARMUP // INFLIGHT):
        pids = [spawn_true() for _ in range(INFLIGHT)]
        for pid in pids:
            os.waitpid(pid, 0)


def raw_churn(n: int) -> Tuple[float, float, int]:
    """The blocking ``os.wait()`` loop: ``n`` children, :data:`INFLIGHT` in flight, each
    exit starting the next.  Returns children per second, CPU seconds per child and
    how many exited with a non-zero status."""
    started = finished = bad = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(min(INFLIGHT, n)):
        spawn_true()
        started += 1
    while finished < n:
        _, status = os.wait()
        finished += 1
        if status != 0:
            bad += 1
        if started < n:
            spawn_true()
            started += 1
    t1, c1 = time.perf_counter(), time.process_time()
    return n / (t1 - t0), (c1 - c0) / n, bad


class Idle:
    """Long-lived children (``cat`` reading a pipe only we write to).

    Closing the pipe ends them all: if the process dies, every ``cat`` reads
    EOF and exits, so nothing outlives a crashed benchmark.
    """

    def __init__(self) -> None:
        self._r, self._w = os.pipe()  # close-on-exec: children never hold the write end
        self._actions = [
            (os.POSIX_SPAWN_DUP2, self._r, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        ]
        self.pids: List[int] = []

    def spawn(self) -> int:
        pid = os.posix_spawn(CAT, ["cat"], {}, file_actions=self._actions)
        self.pids.append(pid)
        return pid

    def kill_all(self) -> None:
        """SIGKILL every idle child and wait (without reaping) until all are dead.

        SIGCHLD is blocked meanwhile, so a signal-driven watcher scans once,
        not once per kill.
        """
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            for pid in self.pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            pending = list(self.pids)
            while pending and time.monotonic() < deadline:
                still = []
                for pid in pending:
                    try:
                        r = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                    except ChildProcessError:
                        continue
                    if r is None or r.si_pid == 0:
                        still.append(pid)
                pending = still
                if pending:
                    time.sleep(0.001)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def close(self) -> None:
        """Close the pipe: every ``cat`` still alive reads EOF and exits."""
        os.close(self._r)
        os.close(self._w)

    def end(self) -> None:
        """Close the pipe and reap every child no watcher has reaped."""
        self.close()
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass  # reaped by a watcher


def raise_fd_limit() -> None:
    """Lift a low soft RLIMIT_NOFILE (toward the hard limit, at most 65,536): the
    benchmarks hold a pidfd per idle child."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192 and hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def quiet_wakeup_fd() -> None:
    """Keep asyncio's signal wakeup socket from printing a traceback when full.

    Under churn SIGCHLDs arrive faster than the loop drains the socket; the
    extra bytes are dropped (signals coalesce anyway) and CPython prints
    "Exception ignored when trying to write to the signal wakeup fd" for each.
    Only the warning is turned off; what the loop does is unchanged.
    """
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        signal.set_wakeup_fd(fd, warn_on_full_buffer=False)


def make_watcher(name: str, loop: Any) -> Any:
    """``FAMILY:KIND``, attached to ``loop``: family ``cw`` is childwatch, ``alt`` is
    childwatch imported from a patched copy (``--compare DIR``), any other asyncio."""
    import asyncio

    family, kind = name.split(":")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if family in ("cw", "alt"):
            import childwatch

            w = getattr(childwatch, kind + "ChildWatcher")()
        else:
            w = getattr(asyncio, kind + "ChildWatcher")()
        w.attach_loop(loop)
    return w
