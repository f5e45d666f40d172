"""Run as pid 1 of a pid namespace of its own (``unshare -p -f -m --mount-proc``):
pids reused at once, with a watcher.

    python pid_reuse_child.py WATCHER {subprocesses|direct} ROUNDS SECONDS [asyncio]

It shrinks the namespace's pid space (``/proc/sys/kernel/pid_max``, settable
per namespace since Linux 6.14), fills it with idle children until spawning
fails with EAGAIN and frees a few dozen pids, so that every freed pid is
handed out again within a few spawns.  Then, with ``WATCHER`` (Safe, Fast,
MultiLoop, Threaded, Pidfd) set on the running loop:

* ``subprocesses``: six killers start asyncio subprocesses that exit at once
  and signal them (``send_signal(SIGUSR1)`` while ``returncode`` is None) a few
  times around their exit, then ``await proc.wait()``; four bystanders start
  asyncio subprocesses that sleep a little and must exit 0 (one killed by
  SIGUSR1 was signalled through a reused pid).  A killer's status must be
  its exit code or -SIGUSR1.
* ``direct``: children spawned with ``os.posix_spawn`` (or a ``Popen`` kept
  unasked where the interpreter lacks it: PyPy) (random exit codes and
  signals) registered with the watcher directly; each status must be exact.

With ``asyncio`` last (3.9-3.13, for comparison), asyncio's own watcher of
that name is used, set through asyncio's policy.  Every wait is bounded (a status not delivered within 10 s counts as hung)
and the run stops after ROUNDS rounds or SECONDS seconds.  Prints one JSON
line with the counts, or ``{"skip": reason}`` where the pid space cannot be
shrunk.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import random
import signal
import sys
import time
from typing import Any, Dict, List, Set

from spawning import start

PID_MAX = 1000  # the smallest pid space the kernel accepts is a few hundred
FREE = 24  # pids left free once the space is full
KILLERS, BYSTANDERS = 6, 4
WAIT = 10.0  # seconds before a wait counts as hung

name, mode, rounds, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
stdlib = sys.argv[5:] == ["asyncio"]
report: Dict[str, Any] = {
    "rounds": 0,
    "statuses": 0,
    "exact": 0,
    "wrong": [],
    "loud_255": 0,
    "hung": 0,
    "bystanders": 0,
    "bystanders_hit": 0,
    "pids": 0,
    "pids_reused": 0,
}
seen: Set[int] = set()
warnings: List[str] = []


def note_pid(pid: int) -> None:
    report["pids"] += 1
    if pid in seen:
        report["pids_reused"] += 1
    seen.add(pid)


def shrink_pid_space() -> List[int]:
    try:
        with open("/proc/sys/kernel/pid_max", "w") as f:
            f.write(str(PID_MAX))
    except OSError as exc:
        print(json.dumps({"skip": f"cannot set this pid namespace's pid_max (Linux 6.14+): {exc}"}))
        sys.exit(0)
    fillers = []
    while True:
        try:
            fillers.append(start(["/bin/sleep", "1000"]))
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                raise
            break
    for pid in fillers[-FREE:]:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return fillers[:-FREE]


class Catch(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        warnings.append(record.getMessage())


async def killer(deadline: float) -> None:
    while report["rounds"] < rounds and time.monotonic() < deadline:
        report["rounds"] += 1
        code = random.randrange(0, 100)
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", f"exit {code}")
        note_pid(proc.pid)
        for _ in range(random.randrange(1, 4)):
            if proc.returncode is None:
                proc.send_signal(signal.SIGUSR1)
            await asyncio.sleep(random.choice((0, 0, 0.0005, 0.001)))
        try:
            returncode = await asyncio.wait_for(proc.wait(), WAIT)
        except asyncio.TimeoutError:
            report["hung"] += 1
            continue
        report["statuses"] += 1
        if returncode in (code, -signal.SIGUSR1):
            report["exact"] += 1
        elif returncode == 255:
            report["loud_255"] += 1
        else:
            report["wrong"].append([code, returncode])


async def bystander(deadline: float) -> None:
    while report["rounds"] < rounds and time.monotonic() < deadline:
        proc = await asyncio.create_subprocess_exec("/bin/sleep", random.choice(("0.001", "0.003", "0.01")))
        note_pid(proc.pid)
        try:
            returncode = await asyncio.wait_for(proc.wait(), WAIT)
        except asyncio.TimeoutError:
            report["hung"] += 1
            continue
        report["bystanders"] += 1
        if returncode != 0:
            report["bystanders_hit"] += 1


async def direct(watcher: Any, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    while report["rounds"] < rounds and time.monotonic() < deadline:
        report["rounds"] += 1
        batch = []
        for _ in range(8):
            if random.random() < 0.5:
                expected = random.randrange(0, 256)
                script = f"exit {expected}"
            else:
                sig = random.choice((signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1, signal.SIGINT))
                expected, script = -sig, f"kill -{int(sig)} $$"
            pid = start(["/bin/sh", "-c", script])
            note_pid(pid)
            future: asyncio.Future[int] = loop.create_future()

            def done(pid: int, returncode: int, future: asyncio.Future[int] = future) -> None:
                loop.call_soon_threadsafe(lambda: future.done() or future.set_result(returncode))

            watcher.add_child_handler(pid, done)
            batch.append((expected, future))
        for expected, future in batch:
            try:
                returncode = await asyncio.wait_for(future, WAIT)
            except asyncio.TimeoutError:
                report["hung"] += 1
                continue
            report["statuses"] += 1
            if returncode == expected:
                report["exact"] += 1
            elif returncode == 255:
                report["loud_255"] += 1
            else:
                report["wrong"].append([expected, returncode])


async def main() -> None:
    import warnings

    import childwatch

    warnings.simplefilter("ignore", DeprecationWarning)  # asyncio's own watchers on 3.12/3.13
    watcher = getattr(asyncio if stdlib else childwatch, f"{name}ChildWatcher")()
    deadline = time.monotonic() + seconds
    if stdlib:
        asyncio.set_child_watcher(watcher)  # type: ignore[attr-defined]
    try:
        watcher.attach_loop(asyncio.get_running_loop())
        if mode == "direct":
            await direct(watcher, deadline)
        else:
            if not stdlib:
                childwatch.set_child_watcher(watcher)
            try:
                await asyncio.gather(
                    *[killer(deadline) for _ in range(KILLERS)],
                    *[bystander(deadline) for _ in range(BYSTANDERS)],
                )
            finally:
                if not stdlib:
                    childwatch.set_child_watcher(None)
    finally:
        if stdlib:
            asyncio.set_child_watcher(None)  # type: ignore[attr-defined]
        watcher.close()


logging.getLogger("childwatch").addHandler(Catch(logging.WARNING))
fillers = shrink_pid_space()
report["free_pids"] = FREE
started = time.monotonic()
asyncio.run(main())
report["seconds"] = round(time.monotonic() - started, 1)
report["warnings"] = len(warnings)
for pid in fillers:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print(json.dumps(report))
