"""Every claim of ``childwatch.capabilities(probe=True)`` about one loop, checked
with real children: ``python loop_cross_check_child.py FAMILY``.

Run in a process of its own by test_every_loop.py (some loops patch asyncio
for the whole process).  Prints one line per check; exits 1 if any claim was
false: a ``supported`` that failed, an ``unsupported`` that worked or failed
otherwise than its reason says, an accepted ``set_child_watcher`` the loop's
subprocesses did not go through, a ``default_watcher()`` or ``wait_pid``
that failed.  Exits 3 if the loop cannot be imported or cannot run a coroutine
here at all (the test skips: the report calls it unavailable too).  Waits are unbounded: the parent's timeout catches a hang.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any, Callable, List, Optional

import childwatch
from childwatch._gevent import reaping_refusal
from childwatch._probe_loop import check_runs_a_coroutine, exit_now, factory_of

failures: List[str] = []


def check(what: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}")
    if not ok:
        failures.append(what)


def as_the_reason_says(reason: Optional[str], exc: BaseException) -> bool:
    """True if ``exc`` is the failure ``reason`` announced: its text, or its type."""
    reason = reason or ""
    text = str(exc)
    return bool(reason) and (
        (text != "" and (reason in text or text in reason)) or type(exc).__name__ in reason
    )


async def delivered(watcher: childwatch.AbstractChildWatcher, code: int) -> int:
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[int] = loop.create_future()

    def on_exit(pid: int, returncode: int, *_: Any) -> None:
        loop.call_soon_threadsafe(lambda: exited.done() or exited.set_result(returncode))

    child = subprocess.Popen(["sh", "-c", f"sleep 0.0{code % 10}; exit {code}"])
    try:
        watcher.add_child_handler(child.pid, on_exit, child)
    except BaseException:
        child.wait()
        raise
    return await exited


async def delivered_beside_the_loops_own(watcher: childwatch.AbstractChildWatcher, own: bool) -> bool:
    """16 children exiting at staggered times, each status exact, while (if
    ``own``) the loop runs subprocesses of its own, whose statuses must be exact
    too: a watcher must neither lose a status to the loop nor break the loop's
    own subprocesses (a SIGCHLD handler that replaces the loop's, a reap of
    the loop's children)."""
    codes = list(range(30, 46))
    theirs = [delivered(watcher, code) for code in codes]
    ours = [own_subprocess(code, quiet=True) for code in (60, 61, 62, 63)] if own else []
    results = await asyncio.gather(*theirs, *ours)
    exact = list(results) == codes + ([60, 61, 62, 63] if own else [])
    if not exact:
        print(f"     got {list(results)}")
    return exact


async def refused(what: str, reason: Optional[str], attempt: Callable[[], Any]) -> None:
    try:
        result = attempt()
        if asyncio.iscoroutine(result):
            await result
    except Exception as exc:
        check(f"{what} fails as its reason says", as_the_reason_says(reason, exc), f"{exc!r} vs {reason!r}")
    else:
        check(f"{what} fails as its reason says", False, f"it worked; reason was {reason!r}")


class Recorded(childwatch.ThreadedChildWatcher):
    def __init__(self) -> None:
        super().__init__()
        self.seen: List[int] = []

    def add_child_handler(self, pid: int, callback: Any, *args: Any) -> None:
        self.seen.append(pid)
        super().add_child_handler(pid, callback, *args)


async def own_subprocess(code: int, quiet: bool = False) -> int:
    proc = await asyncio.create_subprocess_exec("sh", "-c", f"sleep 0.0{code % 10}; exit {code}")
    returncode = await proc.wait()
    if not quiet:
        print(f"     (subprocess pid {proc.pid})")
        seen_pids.append(proc.pid)
    return returncode


seen_pids: List[int] = []


async def main(caps: childwatch.Capabilities) -> None:
    loop = asyncio.get_running_loop()
    own = caps.subprocesses.supported
    for name, support in caps.watchers:
        print(f"     {name}: {support.status} ({support.reason})")
        watcher = getattr(childwatch, name)()
        try:
            if support.status == "supported":
                try:
                    watcher.attach_loop(loop)
                    # (Fast reaps every child, the loop's own too, as its answer says)
                    beside = own and name != "FastChildWatcher"
                    check(
                        f"{name} delivers"
                        + (" beside the loop's own subprocesses (and leaves them intact)" if beside else ""),
                        await delivered_beside_the_loops_own(watcher, beside),
                    )
                except Exception as exc:
                    check(f"{name} delivers", False, repr(exc))
            elif support.reason and "was not delivered" in support.reason:
                print(f"     {name}: never delivered on this loop (not re-checked: that takes a wait)")
            else:

                async def attempt(watcher: Any = watcher) -> None:
                    watcher.attach_loop(loop)
                    await delivered(watcher, 17)
                    watcher.close()  # (a loop may fail only here: rloop 0.2's remove_signal_handler)

                await refused(name, support.reason, attempt)
        finally:
            if support.status == "supported":
                try:
                    watcher.close()
                except Exception as exc:
                    check(f"{name} closes", False, repr(exc))
    if caps.recommended is None:  # no watcher works here (under gevent's monkey-patching)
        reason = dict(caps.watchers)["ThreadedChildWatcher"].reason
        await refused("default_watcher()", reason, childwatch.default_watcher)
    else:
        default = childwatch.default_watcher()
        try:
            check(
                f"default_watcher() ({type(default).__name__}) delivers",
                await delivered_beside_the_loops_own(default, own),
            )
            check("it is the recommended one", type(default).__name__ == caps.recommended)
        finally:
            default.close()
    child = subprocess.Popen(["sh", "-c", "exit 19"])
    check("wait_pid", await childwatch.wait_pid(child) == 19)
    gevent_refusal = reaping_refusal()
    if gevent_refusal is not None:
        child = subprocess.Popen(["sh", "-c", "exit 18"])  # (gevent's Popen: it keeps the status)
        await refused("wait_pid() for a bare pid", gevent_refusal, lambda: childwatch.wait_pid(child.pid))
        check("its Popen still has the status", child.wait() == 18)
    if caps.subprocesses.supported:
        check("the loop's own create_subprocess_exec", await own_subprocess(20) == 20)
    elif caps.subprocesses.reason and "was not" in caps.subprocesses.reason:
        print("     its own subprocesses never finished (not re-checked: that takes a wait)")
    else:
        await refused(
            "the loop's own create_subprocess_exec", caps.subprocesses.reason, lambda: own_subprocess(20)
        )
    recorded = Recorded()
    try:
        if caps.custom_watcher.supported:
            childwatch.set_child_watcher(recorded)
            check("get_child_watcher() is the one set", childwatch.get_child_watcher() is recorded)
            if caps.subprocesses.supported:
                check("subprocess through the set watcher", await own_subprocess(21) == 21)
                check("the set watcher saw it", seen_pids[-1] in recorded.seen, f"{recorded.seen}")
            childwatch.set_child_watcher(None)
        else:
            await refused(
                "set_child_watcher",
                caps.custom_watcher.reason,
                lambda: childwatch.set_child_watcher(recorded),
            )
    finally:
        recorded.close()


def run(family: str) -> int:
    try:
        new_loop = asyncio.new_event_loop if family == "asyncio" else factory_of(__import__(family))
    except ImportError as exc:  # installed, but broken here (rloop 0.2.1's wheel on PyPy 3.9)
        print(f"unusable: cannot import {family} here: {exc}")
        return 3
    loop = new_loop()
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(
        lambda _, context: check("no error in the loop's callbacks", False, str(context))
    )
    try:
        try:
            check_runs_a_coroutine(loop)
        except RuntimeError as exc:
            print(f"unusable: {exc}")
            return 3
        cheap = childwatch.capabilities(loop)
        caps = childwatch.capabilities(loop, probe=True)
        print(f"     {caps.loop} {caps.loop_version} ({caps.loop_class}) on Python {caps.python}")
        for (name, before), (_, after) in zip(cheap.watchers, caps.watchers):
            check(f"{name}: the probe keeps a known answer", before.status in ("unknown", after.status))
        answers = [caps.custom_watcher, caps.subprocesses, *(s for _, s in caps.watchers)]
        check("no unknown after probing", all(a.status != "unknown" for a in answers))
        loop.run_until_complete(main(caps))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    print("FAILED: " + "; ".join(failures) if failures else "all claims held")
    return 1 if failures else 0


if __name__ == "__main__":
    exit_now(run(sys.argv[1]))
