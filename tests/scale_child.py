"""Thousands of live children under a soft RLIMIT_NOFILE of 1024, in a fresh interpreter.

Run by tests/test_scale.py, and by hand for the 10,000-children figures::

    python tests/scale_child.py WATCHER LOOP N [--foreign]

WATCHER is ``default`` (:func:`childwatch.default_watcher`), ``threaded``
(``ThreadedChildWatcher()``) or ``fdless`` (``ThreadedChildWatcher(fd_share=0)``);
LOOP is ``asyncio``, ``uvloop`` or ``trio-asyncio`` (importing trio_asyncio
patches asyncio: one more reason for a process of its own).  ``--foreign``
first starts a child that nobody registers and leaves it an unreaped zombie
until the end: it hides every other exit from ``waitid(P_ALL)``.

All N children (``sh`` blocked reading a pipe) are registered from the
running loop, then released at once by closing the pipe.  Prints one JSON
line with the figures and exits 0, or 77 if LOOP cannot be imported here.
Whatever it measures, the caller checks; it only fails (exit 1) on a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Coroutine, Dict, List

SOFT_LIMIT = 1024
TIMEOUT = 25.0
_kept: List[subprocess.Popen] = []  # type: ignore[type-arg]


def spawn(code: int, stdin: int) -> int:
    """A child reading ``stdin`` until every writer is gone, then exiting with
    ``code`` (negative: killed by that signal)."""
    script = f"read _; kill -{-code} $$" if code < 0 else f"read _; exit {code}"
    if hasattr(os, "posix_spawn"):
        return os.posix_spawn(
            "/bin/sh", ["sh", "-c", script], os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, stdin, 0)]
        )
    _kept.append(subprocess.Popen(["/bin/sh", "-c", script], stdin=stdin))  # PyPy: kept, never asked
    return _kept[-1].pid


def fds() -> int:
    return len(os.listdir("/proc/self/fd")) - 1


def watcher_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("childwatch"))


def children() -> List[int]:
    pids: List[int] = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.extend(int(p) for p in f.read().split())
        except FileNotFoundError:
            pass
    return pids


def state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def free_fds() -> int:
    """How many files the application can still open (opened, counted, closed)."""
    opened: List[int] = []
    try:
        while True:
            opened.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    for fd in opened:
        os.close(fd)
    return len(opened)


async def scale(kind: str, n: int, foreign: bool) -> Dict[str, Any]:
    import childwatch

    read_end, write_end = os.pipe()  # the children's stdin: closing write_end releases them
    baseline = fds()
    stray = 0
    if foreign:
        devnull = os.open("/dev/null", os.O_RDONLY)
        stray = spawn(42, devnull)  # reads EOF at once
        os.close(devnull)
        while state(stray) != "Z":
            await asyncio.sleep(0.001)
    if kind == "default":
        watcher = childwatch.default_watcher()
    else:
        watcher = childwatch.ThreadedChildWatcher(**({"fd_share": 0} if kind == "fdless" else {}))
    got: Dict[int, int] = {}
    figures: Dict[str, Any] = {"n": n, "watcher": type(watcher).__name__, "twice": 0, "not_zombie": 0}
    figures["off_loop_thread"] = 0
    peak = {"threads": 0, "fds": 0}
    loop_thread = threading.current_thread()

    def sample() -> None:
        peak["threads"] = max(peak["threads"], watcher_threads())
        peak["fds"] = max(peak["fds"], fds() - baseline)

    def callback(pid: int, returncode: int) -> None:
        if pid in got:
            figures["twice"] += 1
        got[pid] = returncode
        if state(pid) != "Z":
            figures["not_zombie"] += 1  # it must be reaped only after its callback
        if threading.current_thread() is not loop_thread:
            figures["off_loop_thread"] += 1
        if len(got) % 250 == 0:
            sample()

    expected: Dict[int, int] = {}
    start = time.monotonic()
    try:
        for i in range(n):
            code = -signal.SIGTERM if i % 10 == 9 else i % 256
            pid = spawn(code, read_end)
            expected[pid] = code
            watcher.add_child_handler(pid, callback)
            if i % 64 == 63:
                sample()
                await asyncio.sleep(0)
        sample()
        figures["pidfds"] = getattr(watcher, "_pidfds", None)  # polled in a waiter thread
        in_loop = getattr(watcher, "_in_loop_fds", None)
        figures["in_loop_pidfds"] = None if in_loop is None else in_loop()  # read by the loop
        figures["register_s"] = round(time.monotonic() - start, 2)
        figures["free_fds_while_watching"] = free_fds()
        figures["soft_limit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        os.close(read_end)
        os.close(write_end)  # every child reads EOF and exits
    start = time.monotonic()
    deadline = start + TIMEOUT
    while len(got) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    figures["deliver_s"] = round(time.monotonic() - start, 2)
    figures["delivered"] = len(got)
    figures["exact"] = got == expected
    figures["wrong"] = sorted(
        (pid, rc, expected.get(pid)) for pid, rc in got.items() if rc != expected.get(pid)
    )[:5]
    figures["max_watcher_threads"] = peak["threads"]
    figures["max_watcher_fds"] = peak["fds"]
    # Idle, the watcher lets go of everything: its threads end, the loop's epoll goes
    # (IDLE_GRACE after the last child).
    while (watcher_threads() or fds() - baseline + 2) and time.monotonic() < deadline + 5:
        await asyncio.sleep(0.005)
    figures["left_threads"] = watcher_threads()
    figures["left_fds"] = fds() - baseline + 2  # the pipe is closed
    figures["left_children"] = sorted(set(children()) - {stray})
    watcher.close()
    if foreign:
        assert state(stray) == "Z", "the foreign zombie must be left alone"
        figures["foreign_status"] = os.waitstatus_to_exitcode(os.waitpid(stray, 0)[1])
    return figures


def run(loop_name: str, main: Callable[[], Coroutine[Any, Any, Dict[str, Any]]]) -> Dict[str, Any]:
    if loop_name == "trio-asyncio":
        import trio
        import trio_asyncio

        async def on_trio() -> Dict[str, Any]:
            async with trio_asyncio.open_loop():
                result: Dict[str, Any] = await trio_asyncio.aio_as_trio(main)()
                return result

        return trio.run(on_trio)
    loop: asyncio.AbstractEventLoop
    if loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def main() -> None:
    kind, loop_name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT_LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    try:
        if loop_name == "uvloop":
            import uvloop  # noqa: F401
        elif loop_name == "trio-asyncio":
            import trio_asyncio  # noqa: F401
    except Exception as exc:  # ImportError, or AttributeError from a too-new asyncio
        print(f"{loop_name} cannot be imported here: {exc!r}")
        sys.exit(77)
    started = time.monotonic()
    figures = run(loop_name, lambda: scale(kind, count, "--foreign" in sys.argv))
    figures["total_s"] = round(time.monotonic() - started, 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
