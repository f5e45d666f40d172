"""How close can any loop-based reaper get to the raw ``os.wait()`` loop, and
what does holding the zombie while the callback runs cost a SIGCHLD reaper?

A probe behind ``bench/FINDINGS.md`` (not part of ``bench/run.py``'s tables):
churn of ``/bin/true`` at 32 in flight, as in ``run.py``, but with no harness
around the callback, for

- ``raw``: the blocking ``os.wait()`` loop;
- ``bare``: no watcher at all, one epoll of pidfds read by an asyncio loop
  (reap, close the pidfd, then start the next child) -- the floor;
- ``bare-close-late``: the same, closing the pidfd only after the next child
  has been started;
- ``childwatch``: ``childwatch.PidfdChildWatcher``;
- ``asyncio``: ``asyncio.PidfdChildWatcher`` (Python 3.9-3.13);
- ``raw+pidfds`` (with ``--idle``): the raw loop holding one open pidfd per
  idle child, polled by nobody -- what a pidfd per child costs the kernel
  when the next child is spawned.
- ``bare-sigchld``: no watcher at all, the least a SIGCHLD reaper that holds
  each child a zombie until its callback has run can do (childwatch's
  guarantee): a dict of callbacks, ``waitid(WNOWAIT)`` of the pid at
  registration (is it ours, has it exited), ``waitid(P_ALL, WNOWAIT)`` on
  SIGCHLD until nothing shows, the callback, then ``waitpid`` -- the floor
  of childwatch's Safe and Fast;
- ``bare-sigchld-reap-first``: the same reaping first, as asyncio's Safe
  does (``waitpid`` of the pid at registration, ``waitpid(-1)`` on
  SIGCHLD): what the zombie guarantee costs;
- ``childwatch-safe``, ``childwatch-fast``, ``asyncio-safe``,
  ``asyncio-fast``: those watchers, attached to the loop.

``--configs`` picks some, and ``--cpu-base NAME`` adds each one's CPU per
child as a ratio to NAME's (taken within a repeat, median printed).

With ``--idle N`` every configuration measures twice in one process: with no
other child, then with N idle children alive (``cat`` blocked on a pipe;
registered with the watcher or the epoll), and prints the second rate as a
ratio to the first as well.

Each configuration runs in a fresh process, in a shuffled order per repeat;
ratios to ``raw`` are taken within one repeat, and their median printed::

    bench/.venv-3.11/bin/python bench/floor.py --repeats 15
    bench/.venv-3.11/bin/python bench/floor.py --repeats 9 --idle 1000
    bench/.venv-3.11/bin/python bench/floor.py --repeats 15 --cpu-base asyncio-safe \\
        --configs bare-sigchld,bare-sigchld-reap-first,childwatch-safe,asyncio-safe
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Tuple

from common import (
    INFLIGHT,
    Idle,
    make_watcher,
    quiet_wakeup_fd,
    raw_churn,
    raw_warmup,
    spawn_true,
    start_next,
)

Sample = Tuple[float, float]  # (children per second, CPU seconds per child)


def _levels(idle: int) -> List[int]:
    return [0, idle] if idle else [0]


def _raw(n: int, idle: int, hold_pidfds: bool) -> List[Sample]:
    children = Idle()
    held: List[int] = []
    out = []
    try:
        for level in _levels(idle):
            new = [children.spawn() for _ in range(level - len(children.pids))]
            if hold_pidfds:
                held += [os.pidfd_open(pid) for pid in new]
            rate, cpu, _ = raw_churn(n)
            out.append((rate, cpu))
    finally:
        for fd in held:
            os.close(fd)
        children.end()
    return out


async def _churn(count: Dict[str, Any], start: Callable[[], None], n: int) -> Sample:
    """Start INFLIGHT children (each exit starts the next, until ``n``; the last
    sets ``count["done"]``) and time the ``n`` exits."""
    count.update(started=0, finished=0, depth=0, done=asyncio.get_running_loop().create_future())
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(INFLIGHT):
        start()
    await count["done"]
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / n


def _bare(n: int, idle: int, close_late: bool) -> List[Sample]:
    async def main() -> List[Sample]:
        loop = asyncio.get_running_loop()
        epoll = select.epoll()
        children = Idle()
        idle_fds: Dict[int, int] = {}
        count: Dict[str, Any] = {}

        def start() -> None:
            count["started"] += 1
            epoll.register(os.pidfd_open(spawn_true()), select.EPOLLIN)

        def ready() -> None:
            for fd, _ in epoll.poll(0):
                os.waitid(os.P_PIDFD, fd, os.WEXITED)
                if not close_late:
                    os.close(fd)
                count["finished"] += 1
                if count["started"] < n:
                    start()
                elif count["finished"] == n:
                    count["done"].set_result(None)
                if close_late:
                    os.close(fd)

        loop.add_reader(epoll.fileno(), ready)
        out = []
        try:
            for level in _levels(idle):
                for _ in range(level - len(children.pids)):
                    pid = children.spawn()
                    fd = os.pidfd_open(pid)
                    idle_fds[fd] = pid
                    epoll.register(fd, select.EPOLLIN)
                out.append(await _churn(count, start, n))
        finally:
            loop.remove_reader(epoll.fileno())
            for fd in idle_fds:
                os.close(fd)
            epoll.close()
            children.end()
        return out

    return asyncio.run(main())


_PEEK = os.WEXITED | os.WNOHANG | os.WNOWAIT


def _bare_sigchld(n: int, idle: int, hold_zombie: bool) -> List[Sample]:
    async def main() -> List[Sample]:
        loop = asyncio.get_running_loop()
        children = Idle()
        callbacks: Dict[int, Callable[[int], None]] = {}
        count: Dict[str, Any] = {}

        def deliver(pid: int, status: Any) -> None:
            callbacks.pop(pid)(status)
            if hold_zombie:
                os.waitpid(pid, os.WNOHANG)

        def register(pid: int, callback: Callable[[int], None]) -> None:
            callbacks[pid] = callback
            if hold_zombie:
                found = os.waitid(os.P_PID, pid, _PEEK)
                if found is not None:
                    deliver(pid, found)
            else:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    deliver(pid, status)

        def on_sigchld() -> None:
            while True:
                try:
                    if hold_zombie:
                        found = os.waitid(os.P_ALL, 0, _PEEK)
                        if found is None or found.si_pid not in callbacks:
                            return  # (every child here is registered: none is foreign)
                        deliver(found.si_pid, found)
                    else:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                        if pid == 0:
                            return
                        deliver(pid, status)
                except ChildProcessError:
                    return

        def start() -> None:
            count["started"] += 1
            register(spawn_true(), on_exit)

        def on_exit(status: Any) -> None:
            count["finished"] += 1
            if count["started"] < n:
                start_next(count, start)
            elif count["finished"] == n:
                count["done"].set_result(None)

        loop.add_signal_handler(signal.SIGCHLD, on_sigchld)
        quiet_wakeup_fd()  # as run.py's harness: a full wakeup socket must not print per signal
        out = []
        try:
            for level in _levels(idle):
                for _ in range(level - len(children.pids)):
                    register(children.spawn(), lambda status: None)
                out.append(await _churn(count, start, n))
        finally:
            loop.remove_signal_handler(signal.SIGCHLD)
            children.end()
        return out

    return asyncio.run(main())


def _watcher(n: int, idle: int, name: str) -> List[Sample]:
    async def main() -> List[Sample]:
        loop = asyncio.get_running_loop()
        watcher = make_watcher(name, loop)  # attached
        quiet_wakeup_fd()
        children = Idle()
        count: Dict[str, Any] = {}

        def start() -> None:
            count["started"] += 1
            with watcher:  # the contract (asyncio's Fast insists)
                watcher.add_child_handler(spawn_true(), on_exit)

        def on_exit(pid: int, returncode: int) -> None:
            count["finished"] += 1
            if count["started"] < n:
                start_next(count, start)
            elif count["finished"] == n:
                count["done"].set_result(None)

        def on_idle_exit(pid: int, returncode: int) -> None:
            pass

        out = []
        try:
            for level in _levels(idle):
                for _ in range(level - len(children.pids)):
                    with watcher:
                        watcher.add_child_handler(children.spawn(), on_idle_exit)
                out.append(await _churn(count, start, n))
        finally:
            watcher.close()
            children.end()
        return out

    return asyncio.run(main())


CONFIGS: Dict[str, Callable[[int, int], List[Sample]]] = {
    "raw": lambda n, idle: _raw(n, idle, hold_pidfds=False),
    "raw+pidfds": lambda n, idle: _raw(n, idle, hold_pidfds=True),
    "bare": lambda n, idle: _bare(n, idle, close_late=False),
    "bare-close-late": lambda n, idle: _bare(n, idle, close_late=True),
    "childwatch": lambda n, idle: _watcher(n, idle, "cw:Pidfd"),
    "bare-sigchld": lambda n, idle: _bare_sigchld(n, idle, hold_zombie=True),
    "bare-sigchld-reap-first": lambda n, idle: _bare_sigchld(n, idle, hold_zombie=False),
    "childwatch-safe": lambda n, idle: _watcher(n, idle, "cw:Safe"),
    "childwatch-fast": lambda n, idle: _watcher(n, idle, "cw:Fast"),
}
if sys.version_info < (3, 14):
    CONFIGS["asyncio"] = lambda n, idle: _watcher(n, idle, "std:Pidfd")
    CONFIGS["asyncio-safe"] = lambda n, idle: _watcher(n, idle, "std:Safe")
    CONFIGS["asyncio-fast"] = lambda n, idle: _watcher(n, idle, "std:Fast")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("-n", type=int, default=2000, help="children per measurement")
    parser.add_argument("--idle", type=int, default=0, help="measure again with this many idle children")
    parser.add_argument("--configs", help="comma-separated subset (default: every one; raw always runs)")
    parser.add_argument("--cpu-base", help="add a column: CPU per child as a ratio to this configuration's")
    parser.add_argument("--worker", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n < INFLIGHT or args.idle < 0 or args.repeats < 1:
        parser.error(f"need -n >= {INFLIGHT}, --idle >= 0 and --repeats >= 1")
    chosen = list(CONFIGS) if args.configs is None else ["raw", *args.configs.split(",")]
    unknown = sorted(set(chosen) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configuration {', '.join(unknown)}: choose from {', '.join(CONFIGS)}")
    if args.worker:
        raw_warmup()
        print(json.dumps(CONFIGS[args.worker](args.n, args.idle)))
        return 0
    names = [name for name in dict.fromkeys(chosen) if args.idle or name != "raw+pidfds"]
    if args.cpu_base is not None and args.cpu_base not in names:
        parser.error(f"--cpu-base {args.cpu_base} is not among the configurations run")
    runs: List[Dict[str, List[Sample]]] = []
    for repeat in range(args.repeats):
        order = list(names)
        random.shuffle(order)
        run: Dict[str, List[Sample]] = {}
        for name in order:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", name, "-n", str(args.n), "--idle", str(args.idle)],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            ).stdout
            run[name] = [(rate, cpu) for rate, cpu in json.loads(out)]
        runs.append(run)
        print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
    print(
        f"Python {sys.version.split()[0]}, {args.n} children x {args.repeats} repeats, {INFLIGHT} in flight"
        + (f", then again with {args.idle} idle children" if args.idle else "")
    )
    base = args.cpu_base
    header = f"{'configuration':24} {'churn /s':>9} {'x raw':>6} {'CPU us/child':>13}"
    if base:
        header += f" {'CPU x ' + base:>{len(base) + 6}}"
    if args.idle:
        header += f" | {'idle: /s':>9} {'x raw':>6} {'x own':>6} {'CPU us/child':>13}"
    print(header)

    def med(values: Iterable[float]) -> float:
        return float(statistics.median(list(values)))

    for name in names:
        line = f"{name:24}"
        for level in range(len(runs[0][name])):
            rate = med(run[name][level][0] for run in runs)
            ratio = med(run[name][level][0] / run["raw"][level][0] for run in runs)
            cpu = med(run[name][level][1] for run in runs) * 1e6
            if level:
                own = med(run[name][1][0] / run[name][0][0] for run in runs)
                line += f" | {rate:9.0f} {ratio:6.3f} {own:6.3f} {cpu:13.1f}"
            else:
                line += f" {rate:9.0f} {ratio:6.3f} {cpu:13.1f}"
                if base:
                    cpu_ratio = med(run[name][0][1] / run[base][0][1] for run in runs)
                    line += f" {cpu_ratio:{len(base) + 6}.3f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
