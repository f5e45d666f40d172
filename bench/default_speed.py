#!/usr/bin/env python3
"""The default watcher end to end against the stdlib's fastest option, as a user meets it.

    python3 bench/default_speed.py [--repeats 5] [--n 400] [--latency 100] [--configs a,b] [--write]

Each cell runs in a fresh process (this file, ``--cell CONFIG``) at a soft
``RLIMIT_NOFILE`` of 1024: ``create_subprocess_exec("true")`` + ``wait()``
for ``--n`` children at concurrency 1 and then 32 (children per second, and
the process's CPU time per child), then ``--latency`` times: a ``sleep``
child killed with SIGKILL, timed from just before ``kill()`` to ``wait()``
returning (p50, p99).  Configurations:

- ``asyncio-default``: the loop as it comes (3.9-3.13: asyncio's default
  watcher; 3.14+: the loop's own built-in pidfd path);
- ``asyncio-pidfd`` (3.9-3.13): ``asyncio.set_child_watcher(asyncio.PidfdChildWatcher())``;
- ``childwatch-default``: ``childwatch.set_child_watcher(childwatch.default_watcher())``
  on the running loop, as the README's quick start does;
- ``childwatch-pidfd``: the same with ``childwatch.PidfdChildWatcher()``;
- ``childwatch-default-pid`` and ``childwatch-wait_pid``: a child started with
  ``os.posix_spawnp`` (no transport), awaited through the default watcher's
  ``add_child_handler`` or through ``await childwatch.wait_pid(pid)``: what
  awaiting a pid costs each way (their ratios to the stdlib rows include the
  cheaper start);
- ``uvloop`` and ``trio`` (``trio.run_process``): other libraries' own paths, for reference;
- ``raw``: blocking ``os.posix_spawn`` + ``os.waitpid``, no loop (the practical limit).

Repeats run the cells in a shuffled order; every ratio is taken within one
repeat against the fastest stdlib option of that repeat (``asyncio-default``
or ``asyncio-pidfd``, whichever is faster there), and the median of the ratios
is printed with their range.  Latency percentiles pool every repeat.  No
timing is asserted: the verdicts are printed (a ratio within 3% below 1.0
counts as equal, the noise here; a p99 within 10%).  ``--write`` also puts
the table, the verdicts and the run's conditions in ``bench/DEFAULT_SPEED.md``
as this Python's section (the other Pythons' sections are kept).  Exit status
0 unless a cell failed or a child's status was wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

TRUE = "true"
SLEEP = "sleep"
CONCURRENCIES = (1, 32)
STDLIB_HAS_WATCHERS = sys.version_info < (3, 14)
PID_CONFIGS = ("childwatch-default-pid", "childwatch-wait_pid")
ALL = [
    "asyncio-default",
    "asyncio-pidfd",
    "childwatch-default",
    "childwatch-pidfd",
    *PID_CONFIGS,
    "uvloop",
    "trio",
    "raw",
]
STDLIB = ("asyncio-default", "asyncio-pidfd")
EQUAL = 0.97
P99_SLACK = 1.10
RESULTS = Path(__file__).with_name("DEFAULT_SPEED.md")
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _set_watcher(config: str) -> str:
    """Install ``config``'s watcher on the running loop; the name of what reaps."""
    import childwatch

    warnings.simplefilter("ignore", DeprecationWarning)
    if config == "asyncio-pidfd":
        watcher: Any = asyncio.PidfdChildWatcher()  # type: ignore[attr-defined,unused-ignore]
        asyncio.set_child_watcher(watcher)  # type: ignore[attr-defined,unused-ignore]
        watcher.attach_loop(asyncio.get_running_loop())
    elif config.startswith("childwatch-"):
        watcher = (
            childwatch.default_watcher() if config == "childwatch-default" else childwatch.PidfdChildWatcher()
        )
        watcher.attach_loop(asyncio.get_running_loop())
        childwatch.set_child_watcher(watcher)
    elif STDLIB_HAS_WATCHERS and config == "asyncio-default":
        watcher = asyncio.get_child_watcher()  # type: ignore[attr-defined,unused-ignore]
    else:
        return "the loop's own" if config == "asyncio-default" else config
    return f"{type(watcher).__module__.split('.')[0]}.{type(watcher).__name__}"


async def _start(
    config: str, argv: List[str], watcher: Any, now: bool = False
) -> Tuple[Callable[[], None], Awaitable[int]]:
    """Start ``argv`` as ``config`` does; return how to kill it and what to await for its
    returncode (``wait_pid``: the coroutine itself, awaited as users write it, or with
    ``now`` a task already waiting, so that a kill is seen as it happens)."""
    if config not in PID_CONFIGS:
        proc = await asyncio.create_subprocess_exec(*argv)
        return proc.kill, proc.wait()
    import childwatch

    pid = os.posix_spawnp(argv[0], argv, os.environ)
    if config == "childwatch-wait_pid":
        waiting: Awaitable[int] = childwatch.wait_pid(pid)
        if now:
            waiting = asyncio.ensure_future(waiting)
    else:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        watcher.add_child_handler(pid, lambda _pid, returncode: future.set_result(returncode))
        waiting = future
    return lambda: os.kill(pid, signal.SIGKILL), waiting


async def _asyncio_cell(config: str, n: int, latency: int) -> Dict[str, Any]:
    watcher = None
    if config == "childwatch-default-pid":
        import childwatch

        watcher, used = childwatch.default_watcher(), "childwatch default, add_child_handler"
    elif config == "childwatch-wait_pid":
        used = "childwatch.wait_pid"
    else:
        used = _set_watcher(config) if config != "uvloop" else "libuv"
    out: Dict[str, Any] = {"watcher": used, "bad": 0}

    async def churn(count: int, concurrency: int) -> None:
        left = [count]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                _, waiting = await _start(config, [TRUE], watcher)
                if await asyncio.wait_for(waiting, 30) != 0:
                    out["bad"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await churn(50, 8)  # warm up
    for concurrency in CONCURRENCIES:
        t0, c0 = time.perf_counter(), time.process_time()
        await churn(n, concurrency)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        out[f"rate{concurrency}"] = n / wall
        out[f"cpu{concurrency}"] = cpu / n * 1e6
    samples = []
    for _ in range(latency):
        kill, waiting = await _start(config, [SLEEP, "10"], watcher, now=True)
        await asyncio.sleep(0.002)
        t0 = time.perf_counter()
        kill()
        code = await asyncio.wait_for(waiting, 30)
        samples.append(time.perf_counter() - t0)
        if code != -signal.SIGKILL:
            out["bad"] += 1
    out["latency"] = samples
    return out


def _trio_cell(n: int, latency: int) -> Dict[str, Any]:
    import trio

    out: Dict[str, Any] = {"watcher": "trio.run_process", "bad": 0}

    async def main() -> None:
        async def churn(count: int, concurrency: int) -> None:
            left = [count]

            async def worker() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    proc = await trio.run_process([TRUE], check=False)
                    if proc.returncode != 0:
                        out["bad"] += 1

            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(worker)

        await churn(50, 8)
        for concurrency in CONCURRENCIES:
            t0, c0 = time.perf_counter(), time.process_time()
            await churn(n, concurrency)
            out[f"rate{concurrency}"] = n / (time.perf_counter() - t0)
            out[f"cpu{concurrency}"] = (time.process_time() - c0) / n * 1e6
        samples = []
        for _ in range(latency):
            proc = await trio.lowlevel.open_process([SLEEP, "10"])
            await trio.sleep(0.002)
            t0 = time.perf_counter()
            proc.kill()
            code = await proc.wait()
            samples.append(time.perf_counter() - t0)
            if code != -signal.SIGKILL:
                out["bad"] += 1
        out["latency"] = samples

    trio.run(main)
    return out


def _raw_cell(n: int, latency: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {"watcher": "posix_spawn + waitpid", "bad": 0}
    for concurrency in CONCURRENCIES:
        t0, c0 = time.perf_counter(), time.process_time()
        left = n
        while left > 0:
            batch = [os.posix_spawnp(TRUE, [TRUE], os.environ) for _ in range(min(concurrency, left))]
            left -= len(batch)
            for pid in batch:
                if os.waitpid(pid, 0)[1] != 0:
                    out["bad"] += 1
        out[f"rate{concurrency}"] = n / (time.perf_counter() - t0)
        out[f"cpu{concurrency}"] = (time.process_time() - c0) / n * 1e6
    samples = []
    for _ in range(latency):
        pid = os.posix_spawnp(SLEEP, [SLEEP, "10"], os.environ)
        time.sleep(0.002)
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        samples.append(time.perf_counter() - t0)
    out["latency"] = samples
    return out


def cell(config: str, n: int, latency: int) -> Dict[str, Any]:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    if config == "raw":
        return _raw_cell(n, latency)
    if config == "trio":
        return _trio_cell(n, latency)
    loop: asyncio.AbstractEventLoop
    if config == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_asyncio_cell(config, n, latency))
    finally:
        loop.close()


def _available(config: str) -> bool:
    module = {"uvloop": "uvloop", "trio": "trio"}.get(config)
    if config == "asyncio-pidfd" and not STDLIB_HAS_WATCHERS:
        return False
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _pct(samples: List[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def _median_pct(runs: List[Dict[str, Any]], q: float) -> float:
    """The median over repeats of each repeat's ``q`` latency percentile, in µs."""
    return statistics.median(_pct(r["latency"], q) for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=400, help="children per concurrency per cell")
    parser.add_argument("--latency", type=int, default=100, help="kill->wait samples per cell")
    parser.add_argument("--configs", default=",".join(ALL))
    parser.add_argument("--write", action="store_true", help=f"write this Python's section of {RESULTS.name}")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        print(json.dumps(cell(args.cell, args.n, args.latency)))
        return 0
    configs = [c for c in args.configs.split(",") if _available(c)]
    results: Dict[str, List[Dict[str, Any]]] = {c: [] for c in configs}
    failed = 0
    loads = [os.getloadavg()[0]]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {loads[0]:.2f}", flush=True)
    started = time.monotonic()
    for repeat in range(args.repeats):
        order = configs[:]
        random.shuffle(order)
        for config in order:
            cmd = [
                sys.executable,
                __file__,
                "--cell",
                config,
                "--n",
                str(args.n),
                "--latency",
                str(args.latency),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                print(f"cell {config} failed:\n{done.stderr}", file=sys.stderr)
                failed += 1
                continue
            results[config].append(json.loads(done.stdout.strip().splitlines()[-1]))
        loads.append(os.getloadavg()[0])
        print(f"repeat {repeat + 1}/{args.repeats} done, load {loads[-1]:.2f}", flush=True)
    lines = report(results, args.repeats)
    print("\n".join(lines))
    if args.write:
        conditions = (
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; Python {sys.version.split()[0]} "
            f"({sys.implementation.name}); {os.cpu_count()} CPUs, 1-min load {min(loads):.2f}–{max(loads):.2f}; "
            f"{args.repeats} repeats of {args.n} children per concurrency and {args.latency} kills per cell, "
            f"{time.monotonic() - started:.0f} s; command: `python3 bench/default_speed.py --write`"
        )
        write_section(conditions, lines)
    bad = sum(r["bad"] for runs in results.values() for r in runs)
    return 1 if failed or bad else 0


def write_section(conditions: str, lines: List[str]) -> None:
    """Replace this Python's section of :data:`RESULTS` (the others stay, newest Python first)."""
    head = (
        "# The default watcher end to end\n\n"
        "Written by `bench/default_speed.py --write` (do not edit by hand), one section per Python.\n"
        '`create_subprocess_exec("true")` + `wait()` at concurrency 1 and 32, and SIGKILL → `wait()`\n'
        "latency, each cell a fresh process at a soft RLIMIT_NOFILE of 1024, cells shuffled per repeat;\n"
        "ratios are taken within a repeat against the fastest stdlib option (the one with the highest\n"
        "median rate: asyncio's default watcher or asyncio's Pidfd on 3.9-3.13, the loop's own path on\n"
        "3.14+) and their median (range) printed; latency percentiles are medians over repeats of each\n"
        "repeat's, and the p99 verdict the median of the per-repeat ratios to the stdlib option with the\n"
        "lowest. The verdicts apply issue 26's targets (≥ 0.97×, p99 ≤ 1.10×).\n"
    )
    sections: Dict[str, str] = {}
    if RESULTS.exists():
        for match in re.finditer(
            r"^## Python (\S+)\n(.*?)(?=^## Python |\Z)", RESULTS.read_text(), re.M | re.S
        ):
            sections[match.group(1)] = match.group(2).rstrip() + "\n"
    sections[PY] = "\n" + conditions + "\n" + "\n".join(lines) + "\n"
    order = sorted(sections, key=lambda v: [int(x) if x.isdigit() else 0 for x in v.split(".")], reverse=True)
    RESULTS.write_text(head + "".join(f"\n## Python {v}\n{sections[v]}" for v in order))
    print(f"wrote {RESULTS}")


def _fastest_stdlib(results: Dict[str, List[Dict[str, Any]]], key: str) -> Optional[str]:
    """The stdlib option with the highest median ``key``: the one the targets
    compare against.  (Not the faster of the two in each repeat: on 3.12-3.13
    both are asyncio's Pidfd watcher, and the better of two noisy samples of
    one watcher would bias every ratio down.)"""
    options = [c for c in STDLIB if results.get(c)]
    if not options:
        return None
    return max(options, key=lambda c: statistics.median(r[key] for r in results[c]))


def report(results: Dict[str, List[Dict[str, Any]]], repeats: int) -> List[str]:
    """The table and the verdicts, as Markdown lines."""
    bad = sum(r["bad"] for runs in results.values() for r in runs)
    header = (
        "| config | reaped by | c=1 /s | ×best stdlib | CPU µs | c=32 /s | ×best stdlib | CPU µs "
        "| kill→wait p50 µs | p99 µs |"
    )
    out = ["", header, "|" + "---|" * (header.count("|") - 1)]
    verdicts = []
    for config, runs in results.items():
        if not runs:
            continue
        row = [config, runs[0]["watcher"]]
        for c in CONCURRENCIES:
            key = f"rate{c}"
            fastest = _fastest_stdlib(results, key)
            fastest_runs = results[fastest] if fastest is not None else []
            ratios = [r[key] / best[key] for r, best in zip(runs, fastest_runs)]
            med = statistics.median(ratios) if ratios else None
            row += [
                f"{statistics.median(r[key] for r in runs):.0f}",
                "—" if med is None else f"{med:.2f} ({min(ratios):.2f}–{max(ratios):.2f})",
                f"{statistics.median(r[f'cpu{c}'] for r in runs):.0f}",
            ]
            if config == "childwatch-default" and med is not None:
                verdicts.append(
                    f"childwatch default, c={c}: {med:.2f}× the fastest stdlib option: {'met' if med >= EQUAL else 'MISSED'}"
                )
        row += [f"{_median_pct(runs, 0.5):.0f}", f"{_median_pct(runs, 0.99):.0f}"]
        out.append("| " + " | ".join(row) + " |")
    mine = results.get("childwatch-default")
    options = [c for c in STDLIB if results.get(c)]
    if mine and options:
        best = min(options, key=lambda c: _median_pct(results[c], 0.99))
        ratio = statistics.median(
            _pct(a["latency"], 0.99) / _pct(b["latency"], 0.99) for a, b in zip(mine, results[best])
        )
        verdicts.append(
            f"childwatch default, kill→wait p99 {_median_pct(mine, 0.99):.0f} µs vs {best}'s "
            f"{_median_pct(results[best], 0.99):.0f} µs (the stdlib's lowest), median of the per-repeat "
            f"ratios {ratio:.2f}× ({'met' if ratio <= P99_SLACK else 'MISSED'})"
        )
    waits, registrations = results.get("childwatch-wait_pid"), results.get("childwatch-default-pid")
    if waits and registrations:
        for c in CONCURRENCIES:
            key = f"cpu{c}"
            ratio = statistics.median(a[key] / b[key] for a, b in zip(waits, registrations))
            verdicts.append(
                f"wait_pid's CPU per child at c={c}: {ratio:.2f}× the default watcher's for the same child "
                f"({'met' if ratio <= 1 / EQUAL else 'MISSED'})"
            )
    out += ["", f"{repeats} interleaved repeats; wrong statuses: {bad}", ""]
    out += ["- " + line for line in verdicts]
    return out


if __name__ == "__main__":
    sys.exit(main())
