"""wait_pid() under trio-asyncio, run by tests/test_wait_pid.py in a process of its own.

Importing trio_asyncio installs its policy and patches asyncio for the whole
process, so it must not share the test process.  Exits 0 and prints "ok" on
success, 77 if trio-asyncio cannot be imported (it does not on 3.14+), and
raises on any failure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from typing import Any

try:
    import sniffio
    import trio
    import trio_asyncio
except Exception as exc:  # ImportError, or AttributeError from a too-new asyncio
    print(f"trio-asyncio cannot be imported here: {exc!r}")
    sys.exit(77)

import childwatch
from childwatch import _wait_pid
from spawning import sh as spawn


def sleeper() -> int:
    return spawn("exec sleep 1000")


def state(pid: int) -> Any:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


async def asyncio_side() -> None:
    """Plain asyncio code, run on trio-asyncio's loop."""
    assert sniffio.current_async_library() == "asyncio"
    assert type(asyncio.get_running_loop()).__module__.startswith("trio_asyncio")
    codes = {spawn(f"exit {code}"): code for code in (0, 3, 255)}
    codes[spawn("kill -TERM $$")] = -signal.SIGTERM
    results = await asyncio.gather(*map(childwatch.wait_pid, codes))
    assert dict(zip(codes, results)) == codes, results

    popen = subprocess.Popen(["sh", "-c", "sleep 0.2; exit 7"])
    assert await childwatch.wait_pid(popen) == 7
    assert popen.returncode == 7
    assert popen.wait() == 7

    # Cancelled: the child is left running and can be waited for again.
    pid = sleeper()
    fds = os.listdir("/proc/self/fd")
    try:
        await asyncio.wait_for(childwatch.wait_pid(pid), 0.2)
    except asyncio.TimeoutError:
        pass
    else:
        raise AssertionError("wait_for should have timed out")
    assert state(pid) not in (None, "Z")
    assert os.listdir("/proc/self/fd") == fds

    # Concurrent waiters.
    async def kill_later() -> None:
        await asyncio.sleep(0.2)
        os.kill(pid, signal.SIGKILL)

    results = await asyncio.gather(*(childwatch.wait_pid(pid) for _ in range(3)), kill_later())
    assert results == [-signal.SIGKILL] * 3 + [None], results
    assert state(pid) is None


async def trio_side() -> None:
    """Trio code inside trio_asyncio.open_loop(): served by the trio path."""
    assert sniffio.current_async_library() == "trio"
    pid = spawn("sleep 0.2; exit 12")
    assert await childwatch.wait_pid(pid) == 12

    pid = sleeper()
    with trio.move_on_after(0.2) as scope:
        await childwatch.wait_pid(pid)
    assert scope.cancelled_caught
    assert state(pid) not in (None, "Z")
    os.kill(pid, signal.SIGKILL)
    assert await childwatch.wait_pid(pid) == -signal.SIGKILL


async def both_sides_same_pid() -> list[int]:
    pid = sleeper()
    results: list[int] = []

    async def on_asyncio() -> None:
        results.append(await childwatch.wait_pid(pid))

    async def on_trio() -> None:
        results.append(await childwatch.wait_pid(pid))

    async def kill_when_both_wait() -> None:
        while pid not in _wait_pid._children or _wait_pid._children[pid].waiters < 2:
            await trio.sleep(0.01)
        os.kill(pid, signal.SIGUSR1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio_asyncio.aio_as_trio(on_asyncio))
        nursery.start_soon(on_trio)
        nursery.start_soon(kill_when_both_wait)
    assert state(pid) is None
    return results


async def main() -> None:
    threads = set(threading.enumerate())
    fds = set(os.listdir("/proc/self/fd"))
    with trio.fail_after(60):
        async with trio_asyncio.open_loop():
            await trio_asyncio.aio_as_trio(asyncio_side)()
            await trio_side()
            assert await both_sides_same_pid() == [-signal.SIGUSR1] * 2
    assert _wait_pid._children == {}
    assert set(os.listdir("/proc/self/fd")) == fds, "fd leak"
    assert set(threading.enumerate()) <= threads, "thread leak"
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
        assert not f.read().split(), "children left behind"


if __name__ == "__main__":
    trio.run(main)
    print("ok")
