"""One measurement of ``bench/run.py`` in a fresh process: the worker side.

    python bench/worker.py '{"task": "curve", "name": "cw:Safe", ...}'

The driver (``bench/driver.py``) starts this file once per cell, so that no
watcher inherits another's signal handlers, threads or fds; it prints the
cell's figures as one JSON line, the last on its standard output.  Tasks:
``curve`` (churn at each level of idle registered children), ``latency``
(SIGKILL to callback), ``memory`` (threads, fds and RSS with live children)
and ``e2e`` (``create_subprocess_exec`` + ``wait`` on a loop).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import sys
import threading
import time
import warnings
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Tuple

from catalog import RAW_NAMES, RAW_PIDFDS, new_default_watcher
from common import (
    INFLIGHT,
    STDLIB_HAS_WATCHERS,
    TRUE,
    WARMUP,
    Idle,
    make_watcher,
    quiet_wakeup_fd,
    raise_fd_limit,
    raw_churn,
    raw_warmup,
    spawn_true,
    start_next,
)


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
            if level == levels[0]:
                raw_warmup()
            rate, cpu, bad = raw_churn(n_by_level[level])
            out["rates"][str(level)] = rate
            out["cpu"][str(level)] = cpu
            out["bad"] += bad
    finally:
        for fd in held:
            os.close(fd)
        idle.kill_all()
        idle.end()
    return out


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
    idle.end()
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
        self.w = make_watcher(name, self.loop)
        quiet_wakeup_fd()
        self.idle = Idle()
        self.idle_dead = 0
        self.idle_done: Any = None
        self.idle_rcs: Dict[int, int] = {}  # pid -> returncode, as delivered
        self.idle_twice = 0  # idle children delivered more than once
        # A callback from another thread (a watcher's waiter thread) hops to the
        # loop with call_soon_threadsafe, as asyncio's own subprocess callback
        # does; one already in the loop's thread runs directly.
        self.loop_thread = threading.get_ident()

    def _idle_exit(self, pid: int, rc: int) -> None:
        self.idle_dead += 1
        self.idle_twice += pid in self.idle_rcs
        self.idle_rcs[pid] = rc
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
                w.add_child_handler(spawn_true(), cb)

        def on_exit(pid: int, rc: int) -> None:
            st["finished"] += 1
            if rc != 0:
                st["bad"] += 1
            if st["started"] < n:
                start_next(st, spawn)
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


def run_on(loop_name: str, main: Callable[[], Awaitable[Dict[str, Any]]]) -> Dict[str, Any]:
    """Run ``main()`` on a fresh loop: ``asyncio``, ``uvloop`` or ``trio-asyncio`` (an
    asyncio loop inside ``trio.run``; importing trio_asyncio patches asyncio, one
    more reason for a process of its own)."""
    import asyncio

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


def _on_warm_harness(name: str, measure: Callable[[Harness], Awaitable[Dict[str, Any]]]) -> Dict[str, Any]:
    """``measure`` a :class:`Harness` of watcher ``name`` on a fresh asyncio loop, once
    :data:`WARMUP` children have churned (threads started, handlers installed,
    caches warm); the harness is torn down however ``measure`` ends."""

    async def main() -> Dict[str, Any]:
        h = Harness(name)
        try:
            await h.churn(WARMUP)
            quiet_wakeup_fd()
            return await measure(h)
        finally:
            await h.teardown()

    return run_on("asyncio", main)


def watcher_curve(name: str, levels: List[int], n_by_level: Dict[int, int]) -> Dict[str, Any]:
    async def measure(h: Harness) -> Dict[str, Any]:
        out: Dict[str, Any] = {"rates": {}, "cpu": {}, "bad": 0}
        for level in levels:
            h.add_idle(level)
            rate, cpu, bad = await h.churn(n_by_level[level])
            out["rates"][str(level)] = rate
            out["cpu"][str(level)] = cpu
            out["bad"] += bad
        return out

    return _on_warm_harness(name, measure)


def watcher_latency(name: str, count: int) -> Dict[str, Any]:
    async def measure(h: Harness) -> Dict[str, Any]:
        lat, bad = await h.latency(count)
        return {"lat": lat, "bad": bad}

    return _on_warm_harness(name, measure)


def watcher_memory(name: str, live: int) -> Dict[str, Any]:
    async def measure(h: Harness) -> Dict[str, Any]:
        import asyncio
        import gc

        gc.collect()
        await asyncio.sleep(0.1)
        base = (_threads(), _fds(), _rss_kib())
        h.add_idle(live)
        await asyncio.sleep(0.3)
        gc.collect()
        now = (_threads(), _fds(), _rss_kib())
        return _memory_record(base, now, live)

    return _on_warm_harness(name, measure)


# -- scale: thousands of live children at a soft fd limit of 1024 ----------------

SCALE_SOFT_LIMIT = 1024
SCALE_DELIVERY_TIMEOUT = 60.0
SCALE_STALL = 5.0
SCALE_REGISTER_BUDGET = 120.0
"""Registration stops here (a thread per child on a busy machine): the table says at
which child, and the cell ends well within the driver's timeout."""


class _Registration:
    """The scale run's registration loop: :meth:`steps` yields each child's index
    until :data:`SCALE_REGISTER_BUDGET` is spent; ``limit`` says where it stopped."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.limit: Optional[str] = None

    def steps(self, count: int) -> Iterator[int]:
        for i in range(count):
            if time.perf_counter() - self.t0 >= SCALE_REGISTER_BUDGET:
                self.limit = f"{SCALE_REGISTER_BUDGET:.0f} s spent registering, stopped at child {i + 1}"
                return
            yield i

    def stop(self, exc: BaseException, i: int) -> None:
        self.limit = _limit_hit(exc, i)


def _scale_code(i: int) -> int:
    """The status child ``i`` of the scale run must end with: every tenth is
    killed by SIGTERM, the others exit 0 on EOF."""
    return -signal.SIGTERM if i % 10 == 9 else 0


def _limit_hit(exc: BaseException, i: int) -> str:
    """Where registration stopped, as the table says it: ``EMFILE at child 1013``."""
    code = getattr(exc, "errno", None)
    what = errno.errorcode.get(code, str(code)) if code else f"{type(exc).__name__}: {exc}"
    return f"{what} at child {i + 1}"


def _release(pids: List[int]) -> None:
    """End the registered idle children together: SIGTERM every tenth (before the
    pipe closes, so that none has exited 0 yet)."""
    for i, pid in enumerate(pids):
        if _scale_code(i):
            os.kill(pid, signal.SIGTERM)


def _scale_record(
    base: Tuple[int, int, int],
    now: Tuple[int, int, int],
    pids: List[int],
    got: Dict[int, int],
    twice: int,
    times: Tuple[float, float],
    limit: Optional[str],
) -> Dict[str, Any]:
    expected = {pid: _scale_code(i) for i, pid in enumerate(pids)}
    out = _memory_record(base, now, max(len(pids), 1))
    out.update(
        registered=len(pids),
        delivered=len(got),
        twice=twice,
        wrong=sum(1 for pid, rc in got.items() if expected.get(pid) != rc),
        exact=got == expected and twice == 0,
        register_s=times[0],
        deliver_s=times[1],
        limit=limit,
        soft_limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    )
    return out


def raw_scale(count: int) -> Dict[str, Any]:
    """The raw loop's figures for the same children: spawned, then ``os.wait()``."""
    idle = Idle()
    base = (_threads(), _fds(), _rss_kib())
    reg = _Registration()
    for i in reg.steps(count):
        try:
            idle.spawn()
        except OSError as exc:
            reg.stop(exc, i)
            break
    t1 = time.perf_counter()
    time.sleep(0.3)
    now = (_threads(), _fds(), _rss_kib())
    t2 = time.perf_counter()
    _release(idle.pids)
    idle.close()
    got: Dict[int, int] = {}
    twice = 0
    deadline = time.monotonic() + SCALE_DELIVERY_TIMEOUT
    while len(got) < len(idle.pids) and time.monotonic() < deadline:
        pid, status = os.wait()
        twice += pid in got
        got[pid] = os.waitstatus_to_exitcode(status)
    return _scale_record(base, now, idle.pids, got, twice, (t1 - reg.t0, time.perf_counter() - t2), reg.limit)


def watcher_scale(name: str, loop_name: str, count: int) -> Dict[str, Any]:
    """``count`` idle children registered from the running loop, then ended together;
    a watcher the loop refuses, or a loop not importable here, says so."""

    async def main() -> Dict[str, Any]:
        import asyncio
        import gc

        gc.collect()
        base = (_threads(), _fds(), _rss_kib())
        try:
            h = Harness(name)
        except Exception as exc:  # the loop refuses this watcher
            return {"refused": f"{type(exc).__name__}: {exc}"}
        spare = os.open(os.devnull, os.O_RDONLY)  # freed for the figures if registration hits EMFILE
        reg = _Registration()
        for i in reg.steps(count):
            with h.w:
                try:
                    pid = h.idle.spawn()
                except OSError as exc:
                    reg.stop(exc, i)
                    break
                try:
                    h.w.add_child_handler(pid, h._idle_cb)
                except (OSError, RuntimeError) as exc:  # EMFILE; no thread for it
                    reg.stop(exc, i)
                    h.idle.pids.pop()
                    os.kill(pid, signal.SIGKILL)
                    try:
                        os.waitpid(pid, 0)
                    except ChildProcessError:
                        pass  # a watcher that reaps every child took it
                    break
            if i % 64 == 63:
                await asyncio.sleep(0)
        t1 = time.perf_counter()
        os.close(spare)
        await asyncio.sleep(0.3)
        gc.collect()
        now = (_threads(), _fds(), _rss_kib())
        h.idle_done = asyncio.get_running_loop().create_future()
        quiet_wakeup_fd()  # as after the curve's warm-up: the loop may have set its own since
        t2 = time.perf_counter()
        _release(h.idle.pids)
        h.idle.close()
        deadline = time.monotonic() + SCALE_DELIVERY_TIMEOUT
        while h.idle_dead < len(h.idle.pids) and time.monotonic() < deadline:
            seen = h.idle_dead
            try:
                await asyncio.wait_for(asyncio.shield(h.idle_done), SCALE_STALL)
            except asyncio.TimeoutError:
                if h.idle_dead == seen:
                    break  # nothing delivered for SCALE_STALL seconds: the rest is lost
        t3 = time.perf_counter()
        await asyncio.sleep(0.01)  # the hops scheduled by the last callbacks
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h.w.close()
        times = (t1 - reg.t0, t3 - t2)
        return _scale_record(base, now, h.idle.pids, h.idle_rcs, h.idle_twice, times, reg.limit)

    try:
        return run_on(loop_name, main)
    except ImportError as exc:
        return {"unavailable": f"{loop_name} cannot be imported here: {exc}"}


def scale(name: str, loop_name: str, count: int) -> Dict[str, Any]:
    """The scale run of one watcher on one loop, at a soft RLIMIT_NOFILE of 1024
    whatever this machine allows."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(SCALE_SOFT_LIMIT, hard), hard))
    return raw_scale(count) if name == "raw" else watcher_scale(name, loop_name, count)


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
            w = new_default_watcher(loop)
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
    elif task == "scale":
        out = scale(name, spec["loop"], spec["children"])
    else:
        raise ValueError(task)
    out["leftover_children"] = _leftover_children()
    return out


def main() -> int:
    raise_fd_limit()
    out = worker_main(json.loads(sys.argv[1]))
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
