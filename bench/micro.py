#!/usr/bin/env python3
"""The watchers' own cost per child, without the cost of spawning it.

    python3 bench/micro.py                      # Safe, Fast, MultiLoop; 2,000 children
    python3 bench/micro.py -n 4000 --repeats 7 --watchers Safe,Pidfd
    python3 bench/micro.py --compare PATCHED/src  # adds "alt:" rows: A/B in one run
    python3 bench/micro.py --instructions -n 400  # instructions per child (callgrind)

Each cell runs in a fresh worker process (this file, ``--worker``), on a
running asyncio loop, and measures the process's CPU time
(``time.process_time()``, steady on a busy machine) per child for two paths:

- **exited**: ``/bin/true`` children (``os.posix_spawn``) that have already
  exited, each registered (``with watcher: add_child_handler()``) and
  delivered to its callback: registration plus delivery, with no SIGCHLD
  handled before the registration;
- **live**: batches of 32 children (``cat`` reading a pipe) registered while
  alive, then let go together (the pipe closed): registration, the SIGCHLD
  handling and the delivery, as under ``bench/run.py``'s churn (32 in flight).

Spawning and waiting for the exits are outside the measured time.  The cells
of each repeat run in a shuffled order (childwatch's and asyncio's namesakes
side by side, on 3.9-3.13); each figure is the median over the repeats.  A
worker that takes longer than ``--timeout`` seconds is killed and its cell
reported as timed out.  Nothing is asserted: the figures are printed.

``--instructions`` counts instead of timing, independent of the machine's
load: each cell and path runs under ``valgrind --tool=callgrind`` twice, with
``-n`` children and with none (the warm-up alone), and the difference divided
by ``-n`` is the instructions the process executes per child, spawning and
waiting included (the same for every watcher).  The ``raw:`` row is the
floor, a "watcher" that reaps each exited child with ``os.waitpid`` at
registration and calls back at once: "net" is a cell's count less the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional

from common import STDLIB_HAS_WATCHERS, Idle, make_watcher, quiet_wakeup_fd, spawn_true

BATCH = 32
WARMUP = BATCH * 4


class RawReaper:
    """The floor of the exited path: reaps a child at registration and calls back at once."""

    def add_child_handler(self, pid: int, callback: Callable[..., object], *args: Any) -> None:
        callback(pid, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), *args)

    def __enter__(self) -> RawReaper:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None


def _wait_exited(pids: List[int]) -> None:
    """Block (outside the loop: no signal is handled meanwhile) until every pid is a zombie."""
    for pid in pids:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


async def _delivered(watcher: Any, pids: List[int], before: Optional[Callable[[], None]] = None) -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    left = [len(pids)]

    def callback(pid: int, returncode: int) -> None:
        left[0] -= 1
        if left[0] == 0:
            loop.call_soon_threadsafe(done.set_result, None)

    for pid in pids:
        with watcher:
            watcher.add_child_handler(pid, callback)
    if before is not None:
        before()
    await done


async def _exited(watcher: Any, count: int) -> float:
    """CPU seconds per child of ``count`` already-exited children."""
    pids = [spawn_true() for _ in range(count)]
    _wait_exited(pids)
    c0 = time.process_time()
    if pids:
        await _delivered(watcher, pids)
    return (time.process_time() - c0) / max(count, 1)


async def _live(watcher: Any, count: int) -> float:
    """CPU seconds per child of ``count`` children (whole batches) exiting after registration."""
    spent = 0.0
    batches = count // BATCH
    for _ in range(batches):
        batch = Idle()
        pids = [batch.spawn() for _ in range(BATCH)]
        c0 = time.process_time()
        await _delivered(watcher, pids, batch.close)
        spent += time.process_time() - c0
    return spent / max(batches * BATCH, 1)


PATHS: Dict[str, Callable[[Any, int], Awaitable[float]]] = {"exited": _exited, "live": _live}


async def measure(name: str, n: int, paths: List[str]) -> Dict[str, float]:
    loop = asyncio.get_running_loop()
    watcher = RawReaper() if name.startswith("raw:") else make_watcher(name, loop)
    quiet_wakeup_fd()  # a burst of SIGCHLDs may fill it
    try:
        for path in paths:
            await PATHS[path](watcher, WARMUP)
        return {path: await PATHS[path](watcher, n) for path in paths}
    finally:
        watcher.close()


def worker(name: str, n: int, paths: List[str]) -> None:
    loop = asyncio.new_event_loop()
    try:
        print(json.dumps(loop.run_until_complete(measure(name, n, paths))))
    finally:
        loop.close()


def _run_worker(
    cell: str, n: int, paths: List[str], timeout: float, env: Dict[str, str], under: List[str]
) -> str:
    """The worker's output (its stderr too, under valgrind), or "" if it timed out or failed."""
    command = [*under, sys.executable, __file__, "--worker", cell, "-n", str(n), "--paths", ",".join(paths)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{cell} ({','.join(paths)}, n={n}): no answer within {timeout:g} s", file=sys.stderr)
        return ""
    if done.returncode != 0:
        print(f"{cell} ({','.join(paths)}, n={n}) failed:\n{done.stderr}", file=sys.stderr)
        return ""
    return done.stdout + done.stderr if under else done.stdout


CALLGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--trace-children=no"]


def _instructions(cell: str, n: int, path: str, timeout: float, env: Dict[str, str]) -> Optional[float]:
    """Instructions the worker executes per child on ``path`` (callgrind: with n children less with none)."""
    counts = []
    for size in (n, 0):
        out = _run_worker(cell, size, [path], timeout, env, CALLGRIND)
        found = re.search(r"^==(\d+)== Collected : (\d+)", out, re.MULTILINE)
        if found is None:
            return None
        counts.append(int(found.group(2)))
    return (counts[0] - counts[1]) / n


def _table(
    title: str,
    kinds: List[str],
    families: List[str],
    figure: Callable[[str, str], Optional[float]],
    digits: int,
) -> None:
    """Print ``figure(cell, path)`` for every cell, with its ratio to asyncio's namesake."""
    print(title)
    print(f"{'watcher':<20} {'exited':>10} {'×asyncio':>9} {'live':>10} {'×asyncio':>9}")
    for kind in kinds:
        for family in families:
            cell = f"{family}:{kind}"
            row = f"{cell:<20}"
            for path in PATHS:
                ours, theirs = figure(cell, path), figure(f"asyncio:{kind}", path)
                ratio = "" if ours is None or not theirs else f"{ours / theirs:.2f}"
                row += f" {'-' if ours is None else f'{ours:.{digits}f}':>10} {ratio:>9}"
            print(row)


def _count_all(
    args: argparse.Namespace,
    kinds: List[str],
    families: List[str],
    env: Dict[str, str],
    alt_env: Dict[str, str],
) -> None:
    """The ``--instructions`` run: every cell and path once under callgrind, and the floor."""
    for prime in (env, alt_env):  # compile what the workers import once, outside the counts
        subprocess.run([sys.executable, "-c", "import childwatch"], env=prime, check=True)
    paths = args.paths.split(",")
    counts = {
        (f"{family}:{kind}", path): _instructions(
            f"{family}:{kind}", args.n, path, args.timeout, alt_env if family == "alt" else env
        )
        for family in families
        for kind in kinds
        for path in paths
    }
    title = f"Python {sys.version.split()[0]}: instructions per child (callgrind, n={args.n})"
    _table(title, kinds, families, lambda cell, path: counts.get((cell, path)), 0)
    if "exited" not in paths:
        return
    floor = _instructions("raw:floor", args.n, "exited", args.timeout, env)
    print(f"{'raw:floor':<20} {'-' if floor is None else f'{floor:.0f}':>10}")
    if floor is None:
        return

    def net(cell: str, path: str) -> Optional[float]:
        count = counts.get((cell, "exited")) if path == "exited" else None
        return None if count is None else count - floor

    _table("net of the floor (exited path):", kinds, families, net, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="children per cell and path (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per cell (default 5)")
    parser.add_argument("--watchers", default="Safe,Fast,MultiLoop", help="comma-separated kinds")
    parser.add_argument("--compare", metavar="SRC_DIR", help="add rows importing childwatch from SRC_DIR")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per worker (default 300)")
    parser.add_argument("--instructions", action="store_true", help="count instructions (callgrind), once")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--paths", default=",".join(PATHS), help="comma-separated paths (default exited,live)"
    )
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.paths.split(","))
        return
    kinds = args.watchers.split(",")
    families = ["cw", *(["alt"] if args.compare else []), *(["asyncio"] if STDLIB_HAS_WATCHERS else [])]
    cells = [f"{family}:{kind}" for family in families for kind in kinds]
    env = dict(os.environ)
    alt_env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [args.compare, env.get("PYTHONPATH")])))
    if args.instructions:
        _count_all(args, kinds, families, env, alt_env)
        return
    results: Dict[str, List[Dict[str, float]]] = {cell: [] for cell in cells}
    for _ in range(args.repeats):
        random.shuffle(cells)
        for cell in cells:
            out = _run_worker(
                cell, args.n, list(PATHS), args.timeout, alt_env if cell.startswith("alt:") else env, []
            )
            if out:
                results[cell].append(json.loads(out))

    def median_us(cell: str, path: str) -> Optional[float]:
        runs = results.get(cell)
        return statistics.median(r[path] for r in runs) * 1e6 if runs else None

    title = f"Python {sys.version.split()[0]}: CPU µs per child, median of {args.repeats} (n={args.n})"
    _table(title, kinds, families, median_us, 2)


if __name__ == "__main__":
    main()
