#!/usr/bin/env python3
"""childwatch benchmarks: every watcher side by side with asyncio's, in one run.

    python3 bench/run.py                  # full run (~4-5 min) on this Python
    python3 bench/run.py --python 3.9     # full run on another pyenv Python
    python3 bench/run.py --quick          # ~40 s smoke run (writes nothing)

The command makes (once) a venv ``bench/.venv-X.Y`` with childwatch (editable),
uvloop, trio, anyio and matplotlib, and re-runs itself inside it.  Every
measurement runs in a fresh worker process (this same file, ``--worker``), so
no watcher inherits another's signal handlers, threads or fds.  The cells of
each repeat run in a shuffled order; each figure is the median over repeats,
and each ratio is the median of the ratios taken within one repeat (so the
two measurements of a ratio are minutes apart at most, never runs apart).

Measured, for the raw ``os.wait()`` loop, every childwatch watcher and (on
3.9-3.13) every asyncio watcher:

1. churn: ``/bin/true`` children (``os.posix_spawn``) reaped per second, 32 in
   flight, each exit's callback starting the next child, and the benchmark
   process's CPU time per child (steadier than throughput on a busy machine);
2. scaling: the same with 1,000 idle registered children alive;
3. latency: SIGKILL sent -> callback entered, p50/p99 of every repeat pooled;
4. end to end: ``create_subprocess_exec`` + ``wait`` per second on stdlib
   asyncio (own default, childwatch's default, stdlib pidfd), uvloop, trio;
5. memory: threads, fds and RSS with 1,000 live registered children;
6. the cost curve: churn with 0/100/1,000/3,000 idle registered children,
   drawn to ``bench/cost_curve.png``.

A full run writes ``bench/results/X.Y.json`` and ``bench/cost_curve-X.Y.png``
(and ``bench/cost_curve.png`` on Python 3.11, the primary), and regenerates
``bench/RESULTS.md`` from every ``results/*.json`` present (with ``bench/FINDINGS.md``, the hand-written
analysis, appended).  ``--compare SRC_DIR`` adds a "patched X" row after each
childwatch row, imported from a patched copy of ``src/``: an A/B in one run.
No timing is asserted anywhere: the targets are evaluated and printed, and the
exit status is 0 unless a measurement failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_DIR = BENCH / "results"
PY = "{}.{}".format(*sys.version_info[:2])
STDLIB_HAS_WATCHERS = sys.version_info < (3, 14)
KINDS = ["Safe", "Fast", "MultiLoop", "Threaded", "Pidfd"]
TRUE = shutil.which("true") or "/bin/true"
CAT = shutil.which("cat") or "/bin/cat"
INFLIGHT = 32
WARMUP = 320
WORKER_TIMEOUT = 120.0
PRIMARY_PYTHON = "3.11"
"""Its latest full run leads RESULTS.md and draws ``cost_curve.png``; the others follow."""


def has_pidfd() -> bool:
    try:
        fd = os.pidfd_open(os.getpid())
    except (AttributeError, OSError):
        return False
    os.close(fd)
    return True


def default_kind() -> str:
    """The kind of watcher ``childwatch.default_watcher(loop)`` makes on a stdlib loop.

    (Threaded since 0.2.0; before, Pidfd where pidfds work, else Threaded, the
    rule used when childwatch has no ``default_watcher``.)
    ``CHILDWATCH_BENCH_DEFAULT=Pidfd`` overrides it.
    """
    override = os.environ.get("CHILDWATCH_BENCH_DEFAULT")
    if override:
        return override
    w = _new_default_watcher(None)
    kind = type(w).__name__.replace("ChildWatcher", "")
    w.close()
    return kind


def _new_default_watcher(loop: Any) -> Any:
    import asyncio

    import childwatch

    override = os.environ.get("CHILDWATCH_BENCH_DEFAULT")
    if override:
        w = getattr(childwatch, override + "ChildWatcher")()
        if loop is not None:
            w.attach_loop(loop)
        return w
    own = loop is None
    if own:
        loop = asyncio.new_event_loop()
    try:
        if hasattr(childwatch, "default_watcher"):
            w = childwatch.default_watcher(loop)
        else:
            w = (childwatch.PidfdChildWatcher if has_pidfd() else childwatch.ThreadedChildWatcher)()
            w.attach_loop(loop)
    finally:
        if own:
            loop.close()
    return w


RAW_PIDFDS = "raw+pidfds"
"""The raw loop again, holding (not polling) a pidfd per idle child: the cost
curve's floor for any watcher with a pidfd per child (the kernel copies the fd
table at every spawn and closes the close-on-exec fds at every exec)."""
RAW_NAMES = ("raw", RAW_PIDFDS)


def watcher_names() -> List[str]:
    names = ["raw"] + ([RAW_PIDFDS] if has_pidfd() else [])
    for kind in KINDS:
        names.append("cw:" + kind)
        if STDLIB_HAS_WATCHERS:
            names.append("std:" + kind)
    return names


def e2e_configs() -> List[str]:
    configs = ["asyncio:default", "asyncio:childwatch"]
    if STDLIB_HAS_WATCHERS:
        configs.append("asyncio:std-pidfd")
    configs += ["uvloop", "trio"]
    return configs


# ============================================================================
# worker side: one measurement in a fresh process
# ============================================================================


def _spawn_true() -> int:
    return os.posix_spawn(TRUE, ["true"], {})


class Idle:
    """Long-lived children (``cat`` reading a pipe only we write to).

    If the worker dies, the pipe closes, every ``cat`` reads EOF and exits:
    nothing outlives a crashed worker.
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
        os.close(self._r)
        os.close(self._w)


def _make_watcher(name: str, loop: Any) -> Any:
    import asyncio

    family, kind = name.split(":")
    if family in ("cw", "alt"):  # alt: childwatch imported from --compare DIR
        import childwatch

        w = getattr(childwatch, kind + "ChildWatcher")()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            w = getattr(asyncio, kind + "ChildWatcher")()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        w.attach_loop(loop)
    return w


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _leftover_children() -> int:
    """Reap (after SIGKILL) and count any child still around: there should be none."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            count += 1
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    return count


# -- raw os.wait() loop ---------------------------------------------------------


def raw_curve(levels: List[int], n_by_level: Dict[int, int], hold_pidfds: bool = False) -> Dict[str, Any]:
    idle = Idle()
    held: List[int] = []
    out: Dict[str, Any] = {"rates": {}, "cpu": {}, "bad": 0}
    try:
        for level in levels:
            while len(idle.pids) < level:
                pid = idle.spawn()
                if hold_pidfds:
                    held.append(os.pidfd_open(pid))  # type: ignore[attr-defined,unused-ignore]
            n = n_by_level[level]
            if level == levels[0]:
                _raw_churn_warmup()
            c0, t0 = time.process_time(), time.perf_counter()
            started = finished = 0
            for _ in range(min(INFLIGHT, n)):
                _spawn_true()
                started += 1
            while finished < n:
                _, status = os.wait()
                finished += 1
                if status != 0:
                    out["bad"] += 1
                if started < n:
                    _spawn_true()
                    started += 1
            t1, c1 = time.perf_counter(), time.process_time()
            out["rates"][str(level)] = n / (t1 - t0)
            out["cpu"][str(level)] = (c1 - c0) / n
    finally:
        for fd in held:
            os.close(fd)
        idle.kill_all()
        for pid in idle.pids:
            os.waitpid(pid, 0)
        idle.close()
    return out


def _raw_churn_warmup() -> None:
    for _ in range(WARMUP // INFLIGHT):
        pids = [_spawn_true() for _ in range(INFLIGHT)]
        for pid in pids:
            os.waitpid(pid, 0)


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


def raw_latency(count: int) -> Dict[str, Any]:
    idle = Idle()
    lat = []
    for _ in range(count):
        pid = idle.spawn()
        time.sleep(0.002)
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        lat.append(time.perf_counter() - t0)
    idle.close()
    return {"lat": lat}


def raw_memory(live: int) -> Dict[str, Any]:
    idle = Idle()
    base = (_threads(), _fds(), _rss_kib())
    for _ in range(live):
        idle.spawn()
    time.sleep(0.3)
    now = (_threads(), _fds(), _rss_kib())
    idle.kill_all()
    for pid in idle.pids:
        os.waitpid(pid, 0)
    idle.close()
    return _memory_record(base, now, live)


def _memory_record(base: Tuple[int, int, int], now: Tuple[int, int, int], live: int) -> Dict[str, Any]:
    return {
        "threads": now[0],
        "threads_added": now[0] - base[0],
        "fds_added": now[1] - base[1],
        "rss_added_kib": now[2] - base[2],
        "bytes_per_child": (now[2] - base[2]) * 1024 / live,
    }


# -- watchers on an asyncio loop --------------------------------------------------


class Harness:
    """A watcher on a running asyncio loop, plus the idle children registered with it."""

    def __init__(self, name: str) -> None:
        import asyncio

        self.name = name
        self.loop = asyncio.get_running_loop()
        self.w = _make_watcher(name, self.loop)
        quiet_wakeup_fd()
        self.idle = Idle()
        self.idle_dead = 0
        self.idle_done: Any = None
        # A callback from another thread (a watcher's waiter thread) hops to the
        # loop with call_soon_threadsafe, as asyncio's own subprocess callback
        # does; one already in the loop's thread runs directly.
        self.loop_thread = threading.get_ident()

    def _idle_exit(self, pid: int, rc: int) -> None:
        self.idle_dead += 1
        done = self.idle_done
        if self.idle_dead == len(self.idle.pids) and done is not None and not done.done():
            done.set_result(None)

    def _idle_cb(self, pid: int, rc: int) -> None:
        if threading.get_ident() != self.loop_thread:
            self.loop.call_soon_threadsafe(self._idle_exit, pid, rc)
        else:
            self._idle_exit(pid, rc)

    def add_idle(self, count: int) -> None:
        while len(self.idle.pids) < count:
            with self.w:
                self.w.add_child_handler(self.idle.spawn(), self._idle_cb)

    async def churn(self, n: int) -> Tuple[float, float, int]:
        loop = self.loop
        done = loop.create_future()
        st = {"started": 0, "finished": 0, "bad": 0, "depth": 0}

        w = self.w

        def spawn() -> None:
            st["started"] += 1
            with w:  # the contract: start the child inside the watcher's context
                w.add_child_handler(_spawn_true(), cb)

        def on_exit(pid: int, rc: int) -> None:
            st["finished"] += 1
            if rc != 0:
                st["bad"] += 1
            if st["started"] < n:
                # A watcher may call back from inside add_child_handler (the
                # child exited already): bound the recursion.
                if st["depth"] > 20:
                    loop.call_soon(spawn)
                else:
                    st["depth"] += 1
                    try:
                        spawn()
                    finally:
                        st["depth"] -= 1
            elif st["finished"] == n and not done.done():
                done.set_result(None)

        loop_thread = self.loop_thread

        def cb(pid: int, rc: int) -> None:
            if threading.get_ident() == loop_thread:
                on_exit(pid, rc)
            else:
                loop.call_soon_threadsafe(on_exit, pid, rc)

        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(min(INFLIGHT, n)):
            spawn()
        await done
        t1, c1 = time.perf_counter(), time.process_time()
        return n / (t1 - t0), (c1 - c0) / n, st["bad"]

    async def latency(self, count: int) -> Tuple[List[float], int]:
        import asyncio

        loop = self.loop
        lat: List[float] = []
        bad = 0
        for _ in range(count):
            fut = loop.create_future()

            def cb(pid: int, rc: int, fut: Any = fut) -> None:
                t1 = time.perf_counter()
                loop.call_soon_threadsafe(_resolve, fut, (t1, rc))

            with self.w:
                pid = self.idle.spawn()
                self.idle.pids.remove(pid)  # not an idle child: it dies here
                self.w.add_child_handler(pid, cb)
            await asyncio.sleep(0.002)
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            t1, rc = await fut
            lat.append(t1 - t0)
            if rc != -signal.SIGKILL:
                bad += 1
        return lat, bad

    async def teardown(self) -> None:
        import asyncio

        if self.idle.pids:
            self.idle_done = self.loop.create_future()
            if self.idle_dead == len(self.idle.pids):
                self.idle_done.set_result(None)
            self.idle.kill_all()
            try:
                await asyncio.wait_for(self.idle_done, 60)
            except asyncio.TimeoutError:
                print(
                    f"{self.name}: {len(self.idle.pids) - self.idle_dead} idle children never reported",
                    file=sys.stderr,
                )
        # Let hops scheduled by the last callbacks run before closing.
        await asyncio.sleep(0.01)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.w.close()
        self.idle.close()


def _resolve(fut: Any, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _run_async(coro_fn: Callable[[], Awaitable[Dict[str, Any]]]) -> Dict[str, Any]:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.close()


def watcher_curve(name: str, levels: List[int], n_by_level: Dict[int, int]) -> Dict[str, Any]:
    async def main() -> Dict[str, Any]:
        h = Harness(name)
        out: Dict[str, Any] = {"rates": {}, "cpu": {}, "bad": 0}
        try:
            await h.churn(WARMUP)  # threads started, handlers installed, caches warm
            quiet_wakeup_fd()
            for level in levels:
                h.add_idle(level)
                rate, cpu, bad = await h.churn(n_by_level[level])
                out["rates"][str(level)] = rate
                out["cpu"][str(level)] = cpu
                out["bad"] += bad
        finally:
            await h.teardown()
        return out

    return _run_async(main)


def watcher_latency(name: str, count: int) -> Dict[str, Any]:
    async def main() -> Dict[str, Any]:
        h = Harness(name)
        try:
            await h.churn(WARMUP)
            quiet_wakeup_fd()
            lat, bad = await h.latency(count)
        finally:
            await h.teardown()
        return {"lat": lat, "bad": bad}

    return _run_async(main)


def watcher_memory(name: str, live: int) -> Dict[str, Any]:
    async def main() -> Dict[str, Any]:
        import asyncio
        import gc

        h = Harness(name)
        try:
            await h.churn(WARMUP)
            quiet_wakeup_fd()
            gc.collect()
            await asyncio.sleep(0.1)
            base = (_threads(), _fds(), _rss_kib())
            h.add_idle(live)
            await asyncio.sleep(0.3)
            gc.collect()
            now = (_threads(), _fds(), _rss_kib())
        finally:
            await h.teardown()
        return _memory_record(base, now, live)

    return _run_async(main)


# -- end to end -------------------------------------------------------------------


async def _asyncio_e2e(n: int) -> Tuple[float, int]:
    import asyncio

    st = {"next": 0, "bad": 0}

    async def worker() -> None:
        while st["next"] < n:
            st["next"] += 1
            proc = await asyncio.create_subprocess_exec(TRUE)
            if await proc.wait() != 0:
                st["bad"] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(INFLIGHT, n))))
    return n / (time.perf_counter() - t0), st["bad"]


def e2e(config: str, n: int) -> Dict[str, Any]:
    import asyncio

    warnings.simplefilter("ignore", DeprecationWarning)
    if config == "trio":
        import anyio

        async def trio_main() -> Tuple[float, int]:
            st = {"next": 0, "bad": 0}

            async def worker() -> None:
                while st["next"] < n:
                    st["next"] += 1
                    proc = await anyio.open_process([TRUE], stdin=None, stdout=None, stderr=None)
                    if await proc.wait() != 0:
                        st["bad"] += 1
                    await proc.aclose()

            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(min(INFLIGHT, n)):
                    tg.start_soon(worker)
            return n / (time.perf_counter() - t0), st["bad"]

        anyio.run(_anyio_warm, backend="trio")
        rate, bad = anyio.run(trio_main, backend="trio")
        return {"rate": rate, "bad": bad, "watcher": "trio (pidfd + wait_readable)"}

    if config == "uvloop":
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        used = "libuv"
    else:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        used = ""
        if config == "asyncio:childwatch":
            w = _new_default_watcher(loop)
            if STDLIB_HAS_WATCHERS:
                asyncio.set_child_watcher(w)
                w.attach_loop(loop)
            else:
                loop._watcher = w  # type: ignore[attr-defined]
        elif config == "asyncio:std-pidfd":
            w = asyncio.PidfdChildWatcher()
            asyncio.set_child_watcher(w)
            w.attach_loop(loop)
    try:
        loop.run_until_complete(_asyncio_e2e(WARMUP // 4))
        quiet_wakeup_fd()
        rate, bad = loop.run_until_complete(_asyncio_e2e(n))
        if not used:
            w = asyncio.get_child_watcher() if STDLIB_HAS_WATCHERS else getattr(loop, "_watcher", None)
            used = type(w).__module__.split(".")[0] + "." + type(w).__name__
    finally:
        loop.close()
    return {"rate": rate, "bad": bad, "watcher": used}


async def _anyio_warm() -> None:
    import anyio

    proc = await anyio.open_process([TRUE], stdin=None, stdout=None, stderr=None)
    await proc.wait()
    await proc.aclose()


def worker_main(spec: Dict[str, Any]) -> Dict[str, Any]:
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore", DeprecationWarning)
    task, name = spec["task"], spec["name"]
    if task == "curve":
        levels = spec["levels"]
        n_by_level = {int(k): v for k, v in spec["n"].items()}
        if name in RAW_NAMES:
            out = raw_curve(levels, n_by_level, hold_pidfds=name == RAW_PIDFDS)
        else:
            out = watcher_curve(name, levels, n_by_level)
    elif task == "latency":
        out = raw_latency(spec["count"]) if name == "raw" else watcher_latency(name, spec["count"])
    elif task == "memory":
        out = raw_memory(spec["live"]) if name == "raw" else watcher_memory(name, spec["live"])
    elif task == "e2e":
        out = e2e(name, spec["n"])
    else:
        raise ValueError(task)
    out["leftover_children"] = _leftover_children()
    return out


# ============================================================================
# driver side
# ============================================================================


class Plan:
    def __init__(self, quick: bool, repeats: Optional[int]) -> None:
        self.quick = quick
        if quick:
            self.repeats = repeats or 1
            self.levels = [0, 1000]
            self.n = {0: 500, 1000: 500}
            self.latency = 60
            self.live = 1000
            self.e2e_n = 300
        else:
            self.repeats = repeats or 5
            self.levels = [0, 100, 1000, 3000]
            self.n = {0: 2000, 100: 1000, 1000: 2000, 3000: 1000}
            self.latency = 200
            self.live = 1000
            self.e2e_n = 1000


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run_worker(spec: Dict[str, Any], alt_src: Optional[str] = None) -> Optional[Dict[str, Any]]:
    env = None
    if alt_src and spec["name"].startswith("alt:"):
        env = dict(os.environ, PYTHONPATH=alt_src)
        spec = dict(spec, name="cw:" + spec["name"][4:])
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
        env=env,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        log(f"TIMEOUT {spec}")
        return None
    if proc.returncode != 0:
        log(f"FAILED (exit {proc.returncode}) {spec}")
        return None
    try:
        out: Dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        log(f"no result from {spec}: {stdout[-500:]!r}")
        return None
    if out.get("leftover_children"):
        log(f"{spec['name']} {spec['task']}: {out['leftover_children']} children left behind")
    if out.get("bad"):
        log(f"{spec['name']} {spec['task']}: {out['bad']} wrong returncodes")
    return out


def collect(
    plan: Plan, tasks: List[str], configs: List[str], names: List[str], alt_src: Optional[str] = None
) -> Dict[str, Any]:
    data: Dict[str, Any] = {"curve": {}, "latency": {}, "memory": {}, "e2e": {}, "bad": {}, "failed": []}
    cells: List[Dict[str, Any]] = []
    for name in names:
        if "curve" in tasks:
            cells.append(
                {
                    "task": "curve",
                    "name": name,
                    "levels": plan.levels,
                    "n": {str(k): v for k, v in plan.n.items()},
                }
            )
        if "latency" in tasks and name != RAW_PIDFDS:
            cells.append({"task": "latency", "name": name, "count": plan.latency})
    if "e2e" in tasks:
        cells += [{"task": "e2e", "name": c, "n": plan.e2e_n} for c in configs]
    started = time.monotonic()
    for r in range(plan.repeats):
        order = list(cells)
        random.shuffle(order)
        for i, spec in enumerate(order):
            log(
                f"repeat {r + 1}/{plan.repeats} [{i + 1}/{len(order)}] {spec['task']} {spec['name']} "
                f"({time.monotonic() - started:.0f}s)"
            )
            data.setdefault("load", []).append(os.getloadavg()[0])
            out = run_worker(spec, alt_src)
            if out is None:
                data["failed"].append(f"{spec['task']} {spec['name']} (repeat {r + 1})")
                continue
            if out.get("bad"):
                data["bad"][f"{spec['task']} {spec['name']}"] = (
                    data["bad"].get(f"{spec['task']} {spec['name']}", 0) + out["bad"]
                )
            task, name = spec["task"], spec["name"]
            if task == "curve":
                data["curve"].setdefault(name, []).append(out["rates"])
                data.setdefault("cpu", {}).setdefault(name, []).append(out["cpu"])
            elif task == "latency":
                lat = sorted(out["lat"])
                data["latency"].setdefault(name, []).append(
                    {
                        "p50": _pct(lat, 50),
                        "p99": _pct(lat, 99),
                        "n": len(lat),
                        "samples": [round(x, 7) for x in lat],
                    }
                )
            elif task == "e2e":
                data["e2e"].setdefault(name, []).append(out["rate"])
                data.setdefault("e2e_watcher", {})[name] = out["watcher"]
    if "memory" in tasks:
        for name in [n for n in names if n != RAW_PIDFDS]:  # curve-only; the rest once each
            log(f"memory {name}")
            out = run_worker({"task": "memory", "name": name, "live": plan.live}, alt_src)
            if out is None:
                data["failed"].append(f"memory {name}")
            else:
                data["memory"][name] = out
    data["elapsed_s"] = time.monotonic() - started
    return data


def _pct(sorted_values: List[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


# -- figures and ratios -----------------------------------------------------------


class Figures:
    """Medians and within-repeat ratios from one run's data."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self.d = data

    def rates(self, name: str, level: int) -> List[Optional[float]]:
        return [r.get(str(level)) for r in self.d["curve"].get(name, [])]

    def churn(self, name: str, level: int = 0) -> Optional[float]:
        return _median([x for x in self.rates(name, level) if x is not None])

    def cpus(self, name: str, level: int) -> List[Optional[float]]:
        return [r.get(str(level)) for r in self.d.get("cpu", {}).get(name, [])]

    def cpu(self, name: str, level: int = 0) -> Optional[float]:
        return _median([x for x in self.cpus(name, level) if x is not None])

    def cpu_ratio(self, a: str, la: int, b: str, lb: int) -> Optional[float]:
        return _median(_ratios(self.cpus(a, la), self.cpus(b, lb)))

    def churn_ratio(self, a: str, la: int, b: str, lb: int) -> Optional[float]:
        """median over repeats of churn(a, la) / churn(b, lb) within one repeat."""
        return _median(self.churn_ratios(a, la, b, lb))

    def lat(self, name: str, key: str) -> Optional[float]:
        """p50/p99 over the samples of every repeat pooled (the repeats interleave
        with the other watchers' cells, so pooling is fair and steadies the p99)."""
        runs = self.d["latency"].get(name, [])
        pooled = sorted(x for r in runs for x in r.get("samples", []))
        if pooled:
            return _pct(pooled, {"p50": 50, "p99": 99}[key])
        return _median([r[key] for r in runs])  # data saved before samples were kept

    def lat_ratio(self, a: str, b: str, key: str) -> Optional[float]:
        va, vb = self.lat(a, key), self.lat(b, key)
        return None if va is None or not vb else va / vb

    def lat_ratios(self, a: str, b: str, key: str) -> List[float]:
        """The ratio of ``key`` (p50/p99) within each repeat (for the spread)."""
        p = {"p50": 50, "p99": 99}[key]

        def per_repeat(name: str) -> List[Optional[float]]:
            runs = self.d["latency"].get(name, [])
            return [_pct(sorted(r["samples"]), p) if r.get("samples") else r.get(key) for r in runs]

        return _ratios(per_repeat(a), per_repeat(b))

    def churn_ratios(self, a: str, la: int, b: str, lb: int) -> List[float]:
        return _ratios(self.rates(a, la), self.rates(b, lb))

    def e2e_ratios(self, a: str, b: str) -> List[float]:
        return _ratios(self.d["e2e"].get(a, []), self.d["e2e"].get(b, []))

    def e2e(self, name: str) -> Optional[float]:
        return _median(self.d["e2e"].get(name, []))

    def e2e_ratio(self, a: str, b: str) -> Optional[float]:
        return _median(self.e2e_ratios(a, b))

    def e2e_raw_ratio(self, a: str) -> Optional[float]:
        raw = self.churn("raw", 0)
        v = self.e2e(a)
        return None if raw is None or v is None else v / raw


def _median(values: List[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def _ratios(a: List[Any], b: List[Any]) -> List[float]:
    """``a[i] / b[i]`` for each repeat ``i`` where both figures exist."""
    return [x / y for x, y in zip(a, b) if x is not None and y]


def spread(values: List[float]) -> str:
    """``min–max`` of per-repeat ratios, or "—" with fewer than two."""
    return f"{min(values):.2f}–{max(values):.2f}" if len(values) > 1 else "—"


def fmt(v: Optional[float], spec: str = ".2f", suffix: str = "") -> str:
    if v is None:
        return "—"
    return format(v, spec) + suffix


def label(name: str, dflt: str) -> str:
    if name == "raw":
        return "raw `os.wait()` loop"
    if name == RAW_PIDFDS:
        return "raw loop + a pidfd per idle child"
    family, kind = name.split(":")
    text = {"cw": "childwatch ", "alt": "patched ", "std": "asyncio "}[family] + kind
    if family == "cw" and kind == dflt:
        text += " (default)"
    return text


def tables(data: Dict[str, Any]) -> str:
    f = Figures(data)
    meta = data["meta"]
    dflt = meta["default"]
    names = list(meta["watchers"])

    def std_of(name: str) -> Optional[str]:
        """The asyncio watcher of the same name, if this run measured it."""
        family, _, kind = name.partition(":")
        std = "std:" + kind
        return std if family in ("cw", "alt") and std in names else None

    measured = [n for n in names if n != RAW_PIDFDS]  # all but the curve-only row
    levels = meta["levels"]
    top = 1000 if 1000 in levels else levels[-1]
    out: List[str] = []
    a = out.append

    a(
        f"### 1. Churn: `/bin/true` children reaped per second ({meta['n'][str(0)]} children, "
        f"{INFLIGHT} in flight)\n"
    )
    a("CPU µs/child is the benchmark process's own CPU time (all threads) per reaped child:")
    a("less sensitive than throughput to other load on the machine.\n")
    a("| watcher | churn /s | ×raw | ×asyncio | CPU µs/child | ×raw | ×asyncio |")
    a("|---|---:|---:|---:|---:|---:|---:|")
    for n in measured:
        s = std_of(n)
        cpu = f.cpu(n)
        a(
            f"| {label(n, dflt)} | {fmt(f.churn(n), '.0f')} | {fmt(f.churn_ratio(n, 0, 'raw', 0))} | "
            f"{fmt(f.churn_ratio(n, 0, s, 0)) if s else ''} | {fmt(cpu and cpu * 1e6, '.0f')} | "
            f"{fmt(f.cpu_ratio(n, 0, 'raw', 0))} | {fmt(f.cpu_ratio(n, 0, s, 0)) if s else ''} |"
        )

    a(f"\n### 2. Scaling: the same with {top} idle registered children alive\n")
    a("| watcher | churn /s | ×own idle-free | ×raw | ×asyncio | CPU µs/child | ×own idle-free |")
    a("|---|---:|---:|---:|---:|---:|---:|")
    for n in names:
        s = std_of(n)
        cpu = f.cpu(n, top)
        a(
            f"| {label(n, dflt)} | {fmt(f.churn(n, top), '.0f')} | {fmt(f.churn_ratio(n, top, n, 0))} | "
            f"{fmt(f.churn_ratio(n, top, 'raw', top))} | {fmt(f.churn_ratio(n, top, s, top)) if s else ''} | "
            f"{fmt(cpu and cpu * 1e6, '.0f')} | {fmt(f.cpu_ratio(n, top, n, 0))} |"
        )

    a(
        f"\n### 3. Latency: SIGKILL sent → callback entered ({meta['latency']} children per repeat, "
        "percentiles of all repeats pooled)\n"
    )
    a("| watcher | p50 µs | ×raw | ×asyncio | p99 µs | ×raw | ×asyncio |")
    a("|---|---:|---:|---:|---:|---:|---:|")
    for n in measured:
        s = std_of(n)
        p50, p99 = f.lat(n, "p50"), f.lat(n, "p99")
        a(
            f"| {label(n, dflt)} | {fmt(p50 and p50 * 1e6, '.0f')} | {fmt(f.lat_ratio(n, 'raw', 'p50'))} | "
            f"{fmt(f.lat_ratio(n, s, 'p50')) if s else ''} | {fmt(p99 and p99 * 1e6, '.0f')} | "
            f"{fmt(f.lat_ratio(n, 'raw', 'p99'))} | {fmt(f.lat_ratio(n, s, 'p99')) if s else ''} |"
        )

    a(
        f"\n### 4. End to end: `create_subprocess_exec` + `wait` ({meta['e2e_n']} children, "
        f"{INFLIGHT} at once)\n"
    )
    a("| loop (watcher actually used) | /s | ×raw churn | ×asyncio default |")
    a("|---|---:|---:|---:|")
    e2e_labels = {
        "asyncio:default": "asyncio, its own default",
        "asyncio:childwatch": "asyncio + childwatch default",
        "asyncio:std-pidfd": "asyncio + asyncio.PidfdChildWatcher",
        "uvloop": "uvloop",
        "trio": "trio via anyio.open_process",
    }
    for c in meta["e2e_configs"]:
        used = data.get("e2e_watcher", {}).get(c, "?")
        a(
            f"| {e2e_labels[c]} ({used}) | {fmt(f.e2e(c), '.0f')} | {fmt(f.e2e_raw_ratio(c))} | "
            f"{fmt(f.e2e_ratio(c, 'asyncio:default'))} |"
        )

    a(f"\n### 5. Memory with {meta['live']} live registered children\n")
    a("| watcher | threads | ×asyncio | fds added | ×asyncio | RSS added KiB | ×asyncio | bytes per child |")
    a("|---|---:|---:|---:|---:|---:|---:|---:|")
    mem = data["memory"]
    for n in measured:
        m = mem.get(n)
        if m is None:
            a(f"| {label(n, dflt)} | — | | — | | — | | — |")
            continue
        s = std_of(n)
        ms = mem.get(s) if s else None

        def r(key: str, m: Dict[str, Any] = m, ms: Optional[Dict[str, Any]] = ms) -> str:
            if ms is None:
                return ""
            return fmt(m[key] / ms[key]) if ms[key] > 0 else "—"

        a(
            f"| {label(n, dflt)} | {m['threads']} | {r('threads')} | {m['fds_added']} | {r('fds_added')} | "
            f"{m['rss_added_kib']} | {r('rss_added_kib')} | {m['bytes_per_child']:.0f} |"
        )

    a("\n### 6. Cost curve: churn /s by idle registered children (×own idle-free rate)\n")
    a("| watcher | " + " | ".join(f"{lv} idle" for lv in levels) + " |")
    a("|---|" + "---:|" * len(levels))
    for n in names:
        cells = []
        for lv in levels:
            v = f.churn(n, lv)
            rr = f.churn_ratio(n, lv, n, 0)
            cells.append(f"{fmt(v, '.0f')} ({fmt(rr)})" if lv else fmt(v, ".0f"))
        a(f"| {label(n, dflt)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def targets(data: Dict[str, Any]) -> str:
    """The issue's targets, each judged on its median figure; "repeats" is the
    range of that figure over the repeats (one repeat's ratio each), and a
    verdict that some repeats contradict says "(median only)"."""
    f = Figures(data)
    meta = data["meta"]
    dflt = "cw:" + meta["default"]
    std = any(n.startswith("std:") for n in meta["watchers"])
    top = 1000 if 1000 in meta["levels"] else meta["levels"][-1]
    rows: List[Tuple[str, str, str, str]] = []

    def check(
        what: str, value: Optional[float], ok: Callable[[float], bool], show: str, per_repeat: List[float]
    ) -> None:
        rows.append((what, verdict(value, ok, per_repeat), show, spread(per_repeat)))

    def cpu_note(a: str, la: int, b: str, lb: int) -> str:
        c = f.cpu_ratio(a, la, b, lb)
        return "" if c is None else f" (CPU per child {c:.2f}×)"

    v = f.churn_ratio(dflt, 0, "raw", 0)
    check(
        f"default ({meta['default']}) churn ≥ 0.9× raw",
        v,
        lambda x: x >= 0.9,
        f"{fmt(v)}× raw" + cpu_note(dflt, 0, "raw", 0),
        f.churn_ratios(dflt, 0, "raw", 0),
    )
    if std:
        ratios = [(x, k) for k in KINDS for x in [f.churn_ratio(dflt, 0, "std:" + k, 0)] if x is not None]
        if ratios:
            worst = min(ratios)
            check(
                "default churn ≥ best asyncio watcher",
                worst[0],
                lambda x: x >= 1.0,
                f"{worst[0]:.2f}× asyncio {worst[1]}, the best asyncio watcher here"
                + cpu_note(dflt, 0, "std:" + worst[1], 0),
                f.churn_ratios(dflt, 0, "std:" + worst[1], 0),
            )
    v = f.churn_ratio(dflt, top, dflt, 0)
    floor = f.churn_ratio(RAW_PIDFDS, top, RAW_PIDFDS, 0)
    check(
        f"default churn with {top} idle ≥ 0.9× its idle-free rate",
        v,
        lambda x: x >= 0.9,
        f"{fmt(v)}×"
        + (
            f"; the raw loop holding the same {top} pidfds: {floor:.2f}× (no watcher), raw alone "
            f"{fmt(f.churn_ratio('raw', top, 'raw', 0))}×"
            if floor is not None and meta["default"] in ("Pidfd", "Threaded")
            else ""
        ),
        f.churn_ratios(dflt, top, dflt, 0),
    )
    if std:
        v = f.lat_ratio(dflt, "std:Pidfd", "p99")
        check(
            "default p99 latency ≤ asyncio Pidfd's",
            v,
            lambda x: x <= 1.0,
            f"{fmt(v)}× ({fmt((f.lat(dflt, 'p99') or 0) * 1e6, '.0f')} vs "
            f"{fmt((f.lat('std:Pidfd', 'p99') or 0) * 1e6, '.0f')} µs)",
            f.lat_ratios(dflt, "std:Pidfd", "p99"),
        )
        for k in KINDS:
            v = f.churn_ratio("cw:" + k, 0, "std:" + k, 0)
            check(
                f"{k}: churn ≥ 0.95× asyncio {k}",
                v,
                lambda x: x >= 0.95,
                f"{fmt(v)}×" + cpu_note("cw:" + k, 0, "std:" + k, 0),
                f.churn_ratios("cw:" + k, 0, "std:" + k, 0),
            )
            v50 = f.lat_ratio("cw:" + k, "std:" + k, "p50")
            v99 = f.lat_ratio("cw:" + k, "std:" + k, "p99")
            worst_lat = None if v50 is None or v99 is None else max(v50, v99)
            worse = "p50" if worst_lat == v50 else "p99"
            check(
                f"{k}: latency no worse than asyncio {k}",
                worst_lat,
                lambda x: x <= 1.0,
                f"p50 {fmt(v50)}×, p99 {fmt(v99)}× (repeats: {worse})",
                f.lat_ratios("cw:" + k, "std:" + k, worse),
            )
    v = f.churn_ratio("cw:Safe", top, "cw:Safe", 0)
    check(
        f"Safe churn with {top} idle ≥ 0.85× its idle-free rate",
        v,
        lambda x: x >= 0.85,
        f"{fmt(v)}×",
        f.churn_ratios("cw:Safe", top, "cw:Safe", 0),
    )
    m = data["memory"].get("cw:Threaded")
    live = meta["live"]
    if m is not None:
        rows.append(
            (
                f"Threaded: fewer than one thread per live child ({live} live)",
                "met" if m["threads_added"] < live else "**MISSED**",
                f"{m['threads']} threads in all ({m['threads_added']:+d}), "
                f"{m['bytes_per_child']:.0f} B RSS and {m['fds_added'] / live:.2f} fd per idle child",
                "—",
            )
        )
    if meta["python"] in ("3.9", "3.10", "3.11"):
        v = f.e2e_ratio("asyncio:childwatch", "asyncio:default")
        theirs = f.e2e_ratio("asyncio:std-pidfd", "asyncio:default")
        check(
            "end to end: asyncio + childwatch default ≥ 1.3× asyncio's default",
            v,
            lambda x: x >= 1.3,
            f"{fmt(v)}×" + ("" if theirs is None else f" (asyncio's own Pidfd watcher: {theirs:.2f}×)"),
            f.e2e_ratios("asyncio:childwatch", "asyncio:default"),
        )
    text = ["| target | met? | figure (median) | repeats (min–max) |", "|---|---|---|---|"]
    for what, mark, show, per_repeat in rows:
        text.append(f"| {what} | {mark} | {show} | {per_repeat} |")
    return "\n".join(text)


def verdict(value: Optional[float], ok: Callable[[float], bool], per_repeat: List[float]) -> str:
    """Met or missed on the median; "(median only)" when the repeats
    fall on both sides of the target, so that the run's spread, not the
    watcher, decides the verdict."""
    if value is None:
        return "—"
    mark = "met" if ok(value) else "**MISSED**"
    if len({ok(x) for x in per_repeat}) > 1:
        mark += " (median only)"
    return mark


def plot(data: Dict[str, Any], paths: List[Path]) -> bool:
    """Small multiples, one column per watcher kind: churn/s (top) and CPU µs per child
    (bottom) against idle registered children; childwatch solid, asyncio dashed,
    the raw loop dotted black in every panel (and, gray in Threaded's and Pidfd's,
    the raw loop holding a pidfd per idle child, as they do).  Flat lines scale."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot")
        return False
    f = Figures(data)
    meta = data["meta"]
    levels = meta["levels"]
    names = meta["watchers"]
    kinds = [k for k in KINDS if any(n.split(":")[-1] == k for n in names if n != "raw")]
    xs = list(range(len(levels)))
    styles = {"cw": ("-", "o", "tab:blue"), "alt": (":", "^", "tab:green"), "std": ("--", "x", "tab:orange")}
    fig, axes = plt.subplots(2, len(kinds), figsize=(3.2 * len(kinds), 6.4), sharex=True, squeeze=False)
    churn_max = max([f.churn(n, lv) or 0 for n in names for lv in levels] + [1])
    for col, kind in enumerate(kinds):
        top, bottom = axes[0][col], axes[1][col]
        rows = [n for n in names if n == "raw" or n.split(":")[-1] == kind]
        if kind in ("Threaded", "Pidfd") and RAW_PIDFDS in names:
            rows.insert(1, RAW_PIDFDS)  # their floor: they too hold a pidfd per child
        for n in rows:
            if n == "raw":
                ls, marker, color = ":", "s", "black"
            elif n == RAW_PIDFDS:
                ls, marker, color = ":", "d", "gray"
            else:
                ls, marker, color = styles[n.split(":")[0]]
            lab = label(n, meta["default"]).replace("`", "")
            churn = [f.churn(n, lv) for lv in levels]
            cpu = [f.cpu(n, lv) for lv in levels]
            top.plot(
                xs,
                [v if v is not None else float("nan") for v in churn],
                ls,
                marker=marker,
                color=color,
                label=lab,
            )
            bottom.plot(
                xs,
                [v * 1e6 if v is not None else float("nan") for v in cpu],
                ls,
                marker=marker,
                color=color,
                label=lab,
            )
        top.set_title(kind + ("  (childwatch default)" if kind == meta["default"] else ""), fontsize=10)
        top.set_ylim(0, churn_max * 1.1)
        bottom.set_ylim(bottom=0)  # own scale per kind: MultiLoop's would flatten the rest
        for ax in (top, bottom):
            ax.grid(True, alpha=0.3)
            ax.set_xticks(xs)
            ax.set_xticklabels([str(lv) for lv in levels])
        bottom.set_xlabel("idle registered children")
        top.legend(fontsize=7, loc="lower left")
    axes[0][0].set_ylabel(f"children reaped /s ({INFLIGHT} in flight)")
    axes[1][0].set_ylabel("benchmark CPU µs per child")
    fig.suptitle(
        f"Cost curve, Python {meta['python']}, {meta['cpus']} CPUs ({meta['date']}): "
        "flat lines scale with idle children",
        fontsize=11,
    )
    fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=80)
    plt.close(fig)
    return True


def render_run(data: Dict[str, Any]) -> str:
    meta = data["meta"]
    table = targets(data)
    lines = [
        f"## Python {meta['python']} — {meta['date']}",
        "",
        f"- machine: {meta['machine']}",
        f"- Python: {meta['python_full']}; childwatch at {meta['commit']}; "
        f"{', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
        f"- command: `{meta['command']}` ({meta['repeats']} repeats, {data['elapsed_s']:.0f} s); "
        f"childwatch default here: {meta['default']}ChildWatcher",
        "- ×raw / ×asyncio / ×own: median over repeats of the ratio taken within one repeat;"
        " ×asyncio compares with the stdlib watcher of the same name; latency percentiles pool every"
        " repeat's samples",
    ]
    load = data.get("load") or []
    if load:
        lines.append(
            f"- machine load (1-min load average before each cell): median {statistics.median(load):.1f}, "
            f"max {max(load):.1f} on {meta['cpus']} CPUs"
            + (
                " — **the machine was busy: throughput figures are noisy, trust the ratios and "
                "CPU µs/child more**"
                if statistics.median(load) > meta["cpus"]
                else ""
            )
        )
    if data["failed"]:
        lines.append(f"- **failed cells**: {', '.join(data['failed'])}")
    if data["bad"]:
        lines.append(
            "- wrong returncodes seen (not timing, correctness): "
            + ", ".join(f"{k}: {v}" for k, v in data["bad"].items())
        )
    lines += ["", tables(data), "", "### Targets", "", table, ""]
    return "\n".join(lines)


def write_results_md() -> None:
    runs = []
    for p in sorted(RESULTS_DIR.glob("*.json")):
        with open(p) as fh:
            runs.append(json.load(fh))
    runs.sort(key=lambda d: d["meta"]["date"], reverse=True)
    runs.sort(key=lambda d: d["meta"]["python"] != PRIMARY_PYTHON)  # stable: primary first
    head = [
        "# childwatch benchmarks",
        "",
        "Written by `bench/run.py` (do not edit by hand): the latest full run on each Python,",
        f"Python {PRIMARY_PYTHON} first, then newest first.  Reproduce with one command from the",
        "repository root:",
        "",
        "```",
        "python3 bench/run.py                 # this Python; --python 3.9 for another pyenv one",
        "python3 bench/run.py --quick         # ~40 s smoke run, writes nothing",
        "python3 bench/run.py --watchers MultiLoop --tasks curve --compare /tmp/patched/src",
        "                                     # A/B a watcher patch in one run (writes nothing)",
        "```",
        "",
        "The first run makes `bench/.venv-X.Y` (childwatch editable + uvloop, trio, anyio,",
        "matplotlib); every measurement runs in a fresh worker process; cells run in a shuffled",
        "order, five repeats (three in runs before 2026-11-25 03:00), and every ratio is taken",
        "within one repeat; each target is judged on the median, and its row shows the range",
        'over the repeats; a verdict that some repeats contradict is marked "(median only)":',
        "there the machine's spread, not the watcher, decides.  The scaling table and the cost",
        "curve also time the raw loop holding one pidfd per idle child (as Pidfd and Threaded",
        "do): what those fds alone cost each spawn in the kernel.  Only compare ratios",
        "of one run: the machine is shared, and other work on it shows in the load line of each",
        "run.  `raw` is a blocking `os.wait()` loop, the practical limit.  Churn children are",
        "`/bin/true` started with `os.posix_spawn`, each callback starting the next one (the",
        "callback hops to the loop with `call_soon_threadsafe` when a watcher calls back from",
        "another thread, as asyncio itself does).  Idle children are `cat` processes blocked on",
        "a pipe.  Latency is measured from just before `os.kill(pid, SIGKILL)` to the first line",
        "of the callback.  CPU µs/child is the benchmark process's CPU time (all its threads)",
        "per reaped child: it moves far less than throughput when the machine is busy.",
        "The watchers' costs are analysed by hand in `bench/FINDINGS.md`, appended below the",
        "generated tables.",
        "",
        f"Cost curve on Python {PRIMARY_PYTHON}:",
        "",
        "![cost curve](cost_curve.png)",
        "",
    ]
    body = []
    for d in runs:
        body.append(render_run(d))
        py = d["meta"]["python"]
        if py != PRIMARY_PYTHON and (BENCH / f"cost_curve-{py}.png").exists():
            body.append(f"Cost curve on Python {py}:\n\n![cost curve {py}](cost_curve-{py}.png)\n")
    findings = BENCH / "FINDINGS.md"
    if findings.exists():
        # Hand-written analysis of the watchers' costs, kept beside the generated tables.
        body.append(findings.read_text())
    with open(BENCH / "RESULTS.md", "w") as fh:
        fh.write("\n".join(head + body))


def machine_line() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({model}), "
        f"load average {load:.2f} at start"
    )


def versions() -> Dict[str, str]:
    out = {}
    for mod in ("uvloop", "trio", "anyio", "matplotlib"):
        try:
            from importlib.metadata import version

            out[mod] = version(mod)
        except Exception:
            pass
    return out


def git_commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "src"], capture_output=True, text=True
        ).stdout.strip()
        return rev + ("+dirty src" if dirty else "")
    except OSError:
        return "?"


def available(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


def drive(args: argparse.Namespace, command: str) -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192 and hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    plan = Plan(args.quick, args.repeats)
    tasks = args.tasks.split(",")
    configs = [
        c
        for c in e2e_configs()
        if not (c == "uvloop" and not available("uvloop"))
        and not (c == "trio" and not (available("trio") and available("anyio")))
    ]
    log(
        f"Python {PY}, {os.cpu_count()} CPUs, default={default_kind()}, repeats={plan.repeats}, tasks={tasks}"
    )
    names = watcher_names()
    if args.watchers:
        wanted = args.watchers.split(",")
        names = [n for n in names if n in RAW_NAMES or n in wanted or n.split(":")[1] in wanted]
    alt_src = None
    if args.compare:
        alt_src = str(Path(args.compare).resolve())
        cw = [n for n in names if n.startswith("cw:")]
        for n in cw:
            names.insert(names.index(n) + 1, "alt:" + n[3:])
        log(f"rows 'patched X' import childwatch from {alt_src}")
    data = collect(plan, tasks, configs, names, alt_src)
    data["meta"] = {
        "python": PY,
        "python_full": platform.python_version(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine_line_at_start,
        "cpus": os.cpu_count(),
        "commit": git_commit(),
        "versions": versions(),
        "command": command,
        "repeats": plan.repeats,
        "levels": plan.levels,
        "n": {str(k): v for k, v in plan.n.items()},
        "latency": plan.latency,
        "live": plan.live,
        "e2e_n": plan.e2e_n,
        "e2e_configs": configs,
        "watchers": names,
        "compare": alt_src,
        "default": default_kind(),
        "quick": plan.quick,
    }
    dump = (
        Path(args.json)
        if args.json
        else Path(tempfile.gettempdir()) / f"childwatch-bench-{PY}-{os.getpid()}.json"
    )
    with open(dump, "w") as fh:
        json.dump(data, fh, indent=1)
    log(f"raw data: {dump} (re-render with --render {dump})")
    print()
    print(render_run(data))
    write = args.write if args.write is not None else not (args.quick or args.compare or args.watchers)
    if write and set(tasks) >= {"curve", "latency", "memory", "e2e"}:
        RESULTS_DIR.mkdir(exist_ok=True)
        with open(RESULTS_DIR / f"{PY}.json", "w") as fh:
            json.dump(data, fh, indent=1)
        plots = [BENCH / f"cost_curve-{PY}.png"] + (
            [BENCH / "cost_curve.png"] if PY == PRIMARY_PYTHON else []
        )
        plot(data, plots)
        write_results_md()
        written = ", ".join(str(p.relative_to(REPO)) for p in plots)
        log(f"wrote {RESULTS_DIR / (PY + '.json')}, {written}, bench/RESULTS.md")
    elif args.plot:
        plot(data, [Path(args.plot)])
    return 1 if data["failed"] else 0


machine_line_at_start = ""


# -- setup: the venv --------------------------------------------------------------


def find_python(version: str) -> Optional[str]:
    """The interpreter compat/matrix.py would use for ``version``: pyenv first, then PATH."""
    sys.path.insert(0, str(REPO / "compat"))
    try:
        from matrix import find_python as matrix_find_python
    finally:
        sys.path.pop(0)
    return matrix_find_python(version)  # type: ignore[no-any-return]


def ensure_venv(version: str) -> Path:
    venv = BENCH / f".venv-{version}"
    vpy = venv / "bin" / "python"
    if not vpy.exists():
        base = sys.executable if version == PY else find_python(version)
        if base is None:
            raise SystemExit(f"bench: no Python {version} found (pyenv or PATH)")
        log(f"creating {venv}")
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run(
        [str(vpy), "-c", "import childwatch, uvloop, trio, anyio, matplotlib"], capture_output=True, cwd="/"
    )
    if probe.returncode != 0:
        log(f"installing childwatch[uvloop,trio] + matplotlib into {venv}")
        res = subprocess.run(
            [str(vpy), "-m", "pip", "install", "-q", "-e", f"{REPO}[uvloop,trio]", "matplotlib"]
        )
        if res.returncode != 0:
            # Optional loops may not exist for this Python: childwatch alone is enough.
            subprocess.run([str(vpy), "-m", "pip", "install", "-q", "-e", str(REPO)], check=True)
            for extra in ("uvloop", "trio", "anyio", "matplotlib"):
                subprocess.run([str(vpy), "-m", "pip", "install", "-q", extra])
    return vpy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", help="X.Y: run on that Python (pyenv or PATH); default: this one")
    parser.add_argument("--quick", action="store_true", help="short smoke run; writes nothing")
    parser.add_argument("--repeats", type=int, help="repeats per cell (default 5; --quick 1)")
    parser.add_argument(
        "--tasks",
        default="curve,latency,memory,e2e",
        help="comma-separated subset of curve,latency,memory,e2e",
    )
    parser.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write results/RESULTS.md/plot (default: on for full runs)",
    )
    parser.add_argument("--plot", help="with --no-write: draw the cost curve to this path")
    parser.add_argument("--no-venv", action="store_true", help="use this interpreter as it is")
    parser.add_argument("--watchers", help="comma-separated subset, e.g. Safe,cw:Pidfd (raw always runs)")
    parser.add_argument(
        "--compare",
        metavar="SRC_DIR",
        help="add a 'patched X' row after each childwatch row, importing childwatch from "
        "SRC_DIR (a copy of src/ with a patch): A/B in one run; writes nothing",
    )
    parser.add_argument("--json", metavar="FILE", help="also save the raw data here")
    parser.add_argument("--render", metavar="FILE", help="print the tables of saved raw data; run nothing")
    parser.add_argument(
        "--regenerate",
        action="store_true",
        help="redraw the plots and rewrite RESULTS.md from results/*.json (and FINDINGS.md); run nothing",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--command", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 8192 and hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
        out = worker_main(json.loads(args.worker))
        sys.stdout.write("\n" + json.dumps(out) + "\n")
        return 0

    if args.render:
        with open(args.render) as fh:
            print(render_run(json.load(fh)))
        return 0
    if args.regenerate:
        for path in sorted(RESULTS_DIR.glob("*.json")):
            with open(path) as fh:
                saved = json.load(fh)
            py = saved["meta"]["python"]
            plot(
                saved,
                [BENCH / f"cost_curve-{py}.png"]
                + ([BENCH / "cost_curve.png"] if py == PRIMARY_PYTHON else []),
            )
        write_results_md()
        log("rewrote bench/RESULTS.md and the plots")
        return 0

    command = args.command or "python3 bench/run.py " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--command")
    )
    command = command.strip()
    version = args.python or PY
    in_venv = Path(sys.prefix).resolve() == (BENCH / f".venv-{version}").resolve()
    if not args.no_venv and not in_venv:
        vpy = ensure_venv(version)
        argv = [str(vpy), str(Path(__file__).resolve())] + [a for a in sys.argv[1:]] + ["--command", command]
        os.execv(str(vpy), argv)
    if version != PY:
        raise SystemExit(f"bench: --python {version} but running {PY}")
    global machine_line_at_start
    machine_line_at_start = machine_line()
    return drive(args, command)


if __name__ == "__main__":
    sys.exit(main())
