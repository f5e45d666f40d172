#!/usr/bin/env python3
"""The watchers' own CPU per child, without the cost of spawning it.

    python3 bench/micro.py                      # Safe, Fast, MultiLoop; 2,000 children
    python3 bench/micro.py -n 4000 --repeats 7 --watchers Safe,Pidfd
    python3 bench/micro.py --compare PATCHED/src  # adds "alt:" rows: A/B in one run

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
side by side, on 3.9-3.13); each figure is the median over the repeats.
Nothing is asserted: the figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

from common import STDLIB_HAS_WATCHERS, Idle, make_watcher, quiet_wakeup_fd, spawn_true

BATCH = 32


def _wait_exited(pids: List[int]) -> None:
    """Block (outside the loop: no signal is handled meanwhile) until every pid is a zombie."""
    for pid in pids:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


async def _delivered(watcher: Any, pids: List[int], before: Any = None) -> None:
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


async def measure(name: str, n: int) -> Dict[str, float]:
    watcher = make_watcher(name, asyncio.get_running_loop())
    quiet_wakeup_fd()  # a burst of SIGCHLDs may fill it
    exited = live = 0.0
    try:
        for warmup in (True, False):
            count = BATCH * 4 if warmup else n
            pids = [spawn_true() for _ in range(count)]
            _wait_exited(pids)
            c0 = time.process_time()
            await _delivered(watcher, pids)
            exited = (time.process_time() - c0) / count
            live = 0.0
            for _ in range(count // BATCH):
                batch = Idle()
                pids = [batch.spawn() for _ in range(BATCH)]
                c0 = time.process_time()
                await _delivered(watcher, pids, batch.close)
                live += time.process_time() - c0
            live /= count // BATCH * BATCH
    finally:
        watcher.close()
    return {"exited": exited, "live": live}


def worker(name: str, n: int) -> None:
    loop = asyncio.new_event_loop()
    try:
        print(json.dumps(loop.run_until_complete(measure(name, n))))
    finally:
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="children per cell and path (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per cell (default 5)")
    parser.add_argument("--watchers", default="Safe,Fast,MultiLoop", help="comma-separated kinds")
    parser.add_argument("--compare", metavar="SRC_DIR", help="add rows importing childwatch from SRC_DIR")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.n)
        return
    kinds = args.watchers.split(",")
    families = ["cw", *(["alt"] if args.compare else []), *(["asyncio"] if STDLIB_HAS_WATCHERS else [])]
    cells = [f"{family}:{kind}" for family in families for kind in kinds]
    env = dict(os.environ)
    if args.compare:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.compare, env.get("PYTHONPATH")]))
    results: Dict[str, List[Dict[str, float]]] = {cell: [] for cell in cells}
    for _ in range(args.repeats):
        random.shuffle(cells)
        for cell in cells:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", cell, "-n", str(args.n)],
                check=True,
                capture_output=True,
                text=True,
                env=env if cell.startswith("alt:") else None,
            ).stdout
            results[cell].append(json.loads(out))
    print(f"Python {sys.version.split()[0]}: CPU µs per child, median of {args.repeats} (n={args.n})")
    print(f"{'watcher':<20} {'exited':>8} {'×asyncio':>9} {'live':>8} {'×asyncio':>9}")
    for kind in kinds:
        for family in families:
            cell = f"{family}:{kind}"
            if cell not in results:
                continue
            row = f"{cell:<20}"
            for path in ("exited", "live"):
                ours = statistics.median(r[path] for r in results[cell])
                theirs = results.get(f"asyncio:{kind}")
                ratio = ours / statistics.median(r[path] for r in theirs) if theirs else None
                row += f" {ours * 1e6:>8.2f} {'' if ratio is None else f'{ratio:.2f}':>9}"
            print(row)


if __name__ == "__main__":
    main()
