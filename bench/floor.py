"""How close can any loop-based pidfd reaper get to the raw ``os.wait()`` loop?

A probe behind ``bench/FINDINGS.md`` (not part of ``bench/run.py``'s tables):
churn of ``/bin/true`` at 32 in flight, as in ``run.py``, but with no harness
around the callback, for

- ``raw``: the blocking ``os.wait()`` loop;
- ``bare``: no watcher at all, one epoll of pidfds read by an asyncio loop
  (reap, close the pidfd, then start the next child) -- the floor;
- ``bare-close-late``: the same, closing the pidfd only after the next child
  has been started;
- ``childwatch``: ``childwatch.PidfdChildWatcher``;
- ``asyncio``: ``asyncio.PidfdChildWatcher`` (Python 3.9-3.13).

Each configuration runs in a fresh process, in a shuffled order per repeat;
ratios to ``raw`` are taken within one repeat, and their median printed::

    bench/.venv-3.11/bin/python bench/floor.py --repeats 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Tuple

TRUE = shutil.which("true") or "/bin/true"
INFLIGHT = 32


def _spawn() -> int:
    return os.posix_spawn(TRUE, ["true"], {})


def _warm_up() -> None:
    for _ in range(10):
        pids = [_spawn() for _ in range(INFLIGHT)]
        for pid in pids:
            os.waitpid(pid, 0)


def raw(n: int) -> Tuple[float, float]:
    started = finished = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(INFLIGHT):
        _spawn()
        started += 1
    while finished < n:
        os.wait()
        finished += 1
        if started < n:
            _spawn()
            started += 1
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / n


def _bare(n: int, close_late: bool) -> Tuple[float, float]:
    async def main() -> Tuple[float, float]:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        epoll = select.epoll()
        count = {"started": 0, "finished": 0}

        def start() -> None:
            count["started"] += 1
            epoll.register(os.pidfd_open(_spawn()), select.EPOLLIN)

        def ready() -> None:
            for fd, _ in epoll.poll(0):
                os.waitid(os.P_PIDFD, fd, os.WEXITED)
                if not close_late:
                    os.close(fd)
                count["finished"] += 1
                if count["started"] < n:
                    start()
                elif count["finished"] == n:
                    done.set_result(None)
                if close_late:
                    os.close(fd)

        loop.add_reader(epoll.fileno(), ready)
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(INFLIGHT):
            start()
        await done
        result = n / (time.perf_counter() - t0), (time.process_time() - c0) / n
        loop.remove_reader(epoll.fileno())
        epoll.close()
        return result

    return asyncio.run(main())


def _watcher(n: int, make: Callable[[], Any]) -> Tuple[float, float]:
    async def main() -> Tuple[float, float]:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        watcher = make()
        watcher.attach_loop(loop)
        count = {"started": 0, "finished": 0}

        def start() -> None:
            count["started"] += 1
            watcher.add_child_handler(_spawn(), on_exit)

        def on_exit(pid: int, returncode: int) -> None:
            count["finished"] += 1
            if count["started"] < n:
                start()
            elif count["finished"] == n:
                done.set_result(None)

        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(INFLIGHT):
            start()
        await done
        result = n / (time.perf_counter() - t0), (time.process_time() - c0) / n
        watcher.close()
        return result

    return asyncio.run(main())


def _childwatch_pidfd() -> Any:
    import childwatch

    return childwatch.PidfdChildWatcher()


def _asyncio_pidfd() -> Any:
    warnings.simplefilter("ignore", DeprecationWarning)
    return asyncio.PidfdChildWatcher()  # type: ignore[attr-defined,unused-ignore]


CONFIGS: Dict[str, Callable[[int], Tuple[float, float]]] = {
    "raw": raw,
    "bare": lambda n: _bare(n, close_late=False),
    "bare-close-late": lambda n: _bare(n, close_late=True),
    "childwatch": lambda n: _watcher(n, _childwatch_pidfd),
}
if sys.version_info < (3, 14):
    CONFIGS["asyncio"] = lambda n: _watcher(n, _asyncio_pidfd)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("-n", type=int, default=2000, help="children per measurement")
    parser.add_argument("--worker", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _warm_up()
        print(json.dumps(CONFIGS[args.worker](args.n)))
        return 0
    runs: List[Dict[str, Tuple[float, float]]] = []
    for repeat in range(args.repeats):
        order = list(CONFIGS)
        random.shuffle(order)
        run: Dict[str, Tuple[float, float]] = {}
        for name in order:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", name, "-n", str(args.n)],
                check=True,
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
            rate, cpu = json.loads(out)
            run[name] = (rate, cpu)
        runs.append(run)
        print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
    print(
        f"Python {sys.version.split()[0]}, {args.n} children x {args.repeats} repeats, {INFLIGHT} in flight"
    )
    print(f"{'configuration':16} {'churn /s':>9} {'x raw':>6} {'CPU us/child':>13}")
    for name in CONFIGS:
        rate = statistics.median(run[name][0] for run in runs)
        ratio = statistics.median(run[name][0] / run["raw"][0] for run in runs)
        cpu = statistics.median(run[name][1] for run in runs) * 1e6
        print(f"{name:16} {rate:9.0f} {ratio:6.3f} {cpu:13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
