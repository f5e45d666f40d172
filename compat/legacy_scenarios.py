#!/usr/bin/env python3
"""The flows real code runs against asyncio's child-watcher API, one line of output each.

    python3.13 compat/legacy_scenarios.py            # asyncio's own watchers (the reference)
    python3.14 compat/legacy_scenarios.py --legacy   # childwatch.legacy.install() first

Each scenario prints ``name: observation`` lines: exit statuses, which watcher
is in effect where, what raised.  Nothing here depends on timing except the
custom-watcher scenario, which reports whether the loop woke within a second.
``tests/test_legacy_differential.py`` holds 3.13's output to
``compat/legacy_scenarios.expected`` and 3.14+'s (with ``--legacy``) to the
same file, but for the differences it lists, each with its reason.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import warnings
from typing import Any, Callable, List

warnings.simplefilter("ignore", DeprecationWarning)  # 3.12/3.13 deprecate the API; 3.14 the policies

if "--legacy" in sys.argv[1:]:  # the one opt-in line, before anything uses the API
    import childwatch.legacy

    print("install:", childwatch.legacy.install(), flush=True)

SCENARIOS: List[Callable[[], None]] = []


def scenario(fn: Callable[[], None]) -> Callable[[], None]:
    SCENARIOS.append(fn)
    return fn


def say(name: str, *parts: Any) -> None:
    print(f"{name}: " + " ".join(str(p) for p in parts), flush=True)


def kind(obj: Any) -> str:
    return type(obj).__name__


async def exit_code(code: int) -> int:
    proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
    return await asyncio.wait_for(proc.wait(), 30)


async def killed() -> int:
    proc = await asyncio.create_subprocess_exec("sleep", "30")
    proc.kill()
    return await asyncio.wait_for(proc.wait(), 30)


def fresh_policy() -> Any:
    """Back to a new default policy, its watcher (if any) closed."""
    policy = asyncio.get_event_loop_policy()
    watcher = getattr(policy, "_watcher", None)
    if watcher is not None:
        watcher.close()
    asyncio.set_event_loop_policy(None)
    return asyncio.get_event_loop_policy()


@scenario
def each_watcher() -> None:
    """Each watcher class set as the policy's, then asyncio.run()."""
    for name in ("Safe", "Fast", "MultiLoop", "Threaded", "Pidfd"):
        fresh_policy()
        watcher = getattr(asyncio, f"{name}ChildWatcher")()
        asyncio.set_child_watcher(watcher)

        async def main(watcher: Any = watcher) -> List[Any]:
            return [
                await exit_code(0),
                await exit_code(7),
                await killed(),
                asyncio.get_child_watcher() is watcher,
            ]

        say("each-watcher", name, asyncio.run(main()))
        asyncio.set_child_watcher(None)
        watcher.close()


@scenario
def default_made_on_first_use() -> None:
    fresh_policy()
    first = asyncio.get_child_watcher()
    say("default", kind(first), asyncio.get_child_watcher() is first)

    async def main() -> List[Any]:
        return [await exit_code(3), asyncio.get_child_watcher() is first]

    say("default-in-loop", asyncio.run(main()))
    fresh_policy()

    async def inside() -> List[Any]:
        made = asyncio.get_child_watcher()  # first use inside a running loop
        return [kind(made), await exit_code(4), asyncio.get_child_watcher() is made]

    say("default-made-inside", asyncio.run(inside()))


@scenario
def policy_subclass() -> None:
    """A DefaultEventLoopPolicy subclass that sets its watcher in __init__, and one using super()."""
    fresh_policy()
    made: List[Any] = []

    class Policy(asyncio.DefaultEventLoopPolicy):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            watcher = asyncio.ThreadedChildWatcher()
            made.append(watcher)
            self.set_child_watcher(watcher)

    asyncio.set_event_loop_policy(Policy())

    async def main() -> List[Any]:
        return [await exit_code(5), asyncio.get_child_watcher() is made[0]]

    say("policy-subclass", asyncio.run(main()))

    class Counting(asyncio.DefaultEventLoopPolicy):  # type: ignore[misc,name-defined]
        sets = 0

        def set_child_watcher(self, watcher: Any) -> None:
            Counting.sets += 1
            super().set_child_watcher(watcher)

        def get_child_watcher(self) -> Any:
            return super().get_child_watcher()

    fresh_policy()
    asyncio.set_event_loop_policy(Counting())
    watcher = asyncio.SafeChildWatcher()
    asyncio.set_child_watcher(watcher)
    say("policy-super", Counting.sets, asyncio.get_child_watcher() is watcher, asyncio.run(exit_code(6)))
    asyncio.set_child_watcher(None)
    say("policy-super-closed", watcher.is_active())
    fresh_policy()


@scenario
def abstract_policy() -> None:
    class Bare(asyncio.AbstractEventLoopPolicy):  # type: ignore[misc,name-defined]
        pass

    for method, args in (("get_child_watcher", ()), ("set_child_watcher", (None,))):
        try:
            getattr(Bare(), method)(*args)
            say("abstract-policy", method, "returned")
        except NotImplementedError:
            say("abstract-policy", method, "NotImplementedError")


@scenario
def bad_watcher() -> None:
    fresh_policy()
    try:
        asyncio.set_child_watcher(object())  # type: ignore[arg-type]
        say("bad-watcher", "accepted")
    except (AssertionError, TypeError) as exc:
        say("bad-watcher", kind(exc))


@scenario
def loop_made_before_the_watcher() -> None:
    fresh_policy()
    loop = asyncio.new_event_loop()
    watcher = asyncio.ThreadedChildWatcher()
    asyncio.set_child_watcher(watcher)
    watcher.attach_loop(loop)

    async def main() -> List[Any]:
        return [await exit_code(8), asyncio.get_child_watcher() is watcher]

    say("loop-first", loop.run_until_complete(main()))
    loop.close()
    later = asyncio.new_event_loop()
    say("loop-later", later.run_until_complete(main()))
    later.close()
    fresh_policy()


@scenario
def loop_first_safe_attached_by_hand() -> None:
    fresh_policy()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # before any watcher: nothing to attach
    watcher = asyncio.SafeChildWatcher()
    watcher.attach_loop(loop)
    asyncio.set_child_watcher(watcher)
    say("safe-by-hand", loop.run_until_complete(exit_code(9)))
    asyncio.set_event_loop(None)
    loop.close()
    fresh_policy()


class ThreadCallbackWatcher(asyncio.AbstractChildWatcher):  # type: ignore[misc,name-defined]
    """A project's own watcher: waits in a thread, calls back from it."""

    def __init__(self) -> None:
        self.threads: List[threading.Thread] = []

    def add_child_handler(self, pid: int, callback: Any, *args: Any) -> None:
        def wait() -> None:
            _, status = os.waitpid(pid, 0)
            callback(pid, os.waitstatus_to_exitcode(status), *args)

        thread = threading.Thread(target=wait, daemon=True)
        self.threads.append(thread)
        thread.start()

    def remove_child_handler(self, pid: int) -> bool:
        return False

    def attach_loop(self, loop: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def is_active(self) -> bool:
        return True

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


@scenario
def custom_watcher_from_a_thread() -> None:
    fresh_policy()
    watcher = ThreadCallbackWatcher()
    asyncio.set_child_watcher(watcher)

    async def main() -> List[Any]:
        start = time.monotonic()
        code = await exit_code(11)
        return [code, time.monotonic() - start < 1.0, asyncio.get_child_watcher() is watcher]

    say("custom-thread", asyncio.run(main()))
    for thread in watcher.threads:
        thread.join(10)
    fresh_policy()


class Inactive(ThreadCallbackWatcher):
    def is_active(self) -> bool:
        return False


@scenario
def inactive_watcher() -> None:
    fresh_policy()
    watcher = Inactive()
    asyncio.set_child_watcher(watcher)

    async def main() -> str:
        try:
            await exit_code(0)
        except RuntimeError as exc:
            return f"RuntimeError {exc}"
        return "ran"

    outcome = asyncio.run(main())
    try:
        os.waitpid(-1, os.WNOHANG)
        spawned = "a child was spawned"
    except ChildProcessError:
        spawned = "no child spawned"  # 3.13 checks before the spawn
    say("inactive", outcome, len(watcher.threads), spawned)
    fresh_policy()


@scenario
def save_and_restore() -> None:
    fresh_policy()
    saved = asyncio.SafeChildWatcher()
    asyncio.set_child_watcher(saved)
    again = asyncio.get_child_watcher()
    other = asyncio.ThreadedChildWatcher()
    asyncio.set_child_watcher(other)  # closes `saved`
    first = asyncio.run(exit_code(12))
    asyncio.set_child_watcher(saved)  # closed, set again
    second = asyncio.run(exit_code(13))
    say("save-restore", again is saved, first, second, asyncio.get_child_watcher() is saved)
    asyncio.set_child_watcher(None)
    other.close()


@scenario
def closed_watcher_reattached() -> None:
    for name in ("Safe", "MultiLoop", "Pidfd", "Threaded"):
        fresh_policy()
        watcher = getattr(asyncio, f"{name}ChildWatcher")()
        watcher.close()
        asyncio.set_child_watcher(watcher)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # attaches the closed watcher (main thread)
        say("closed-reattached", name, loop.run_until_complete(exit_code(14)))
        asyncio.set_event_loop(None)
        loop.close()
        asyncio.set_child_watcher(None)


@scenario
def runner_and_loop_factory() -> None:
    fresh_policy()
    watcher = asyncio.ThreadedChildWatcher()
    asyncio.set_child_watcher(watcher)
    with asyncio.Runner() as runner:
        say("runner", runner.run(exit_code(15)), runner.run(exit_code(16)))
    say("run-loop-factory", asyncio.run(exit_code(17), loop_factory=asyncio.new_event_loop))
    say("runner-factory-watcher", asyncio.run(get_is(watcher), loop_factory=asyncio.SelectorEventLoop))
    fresh_policy()


async def get_is(watcher: Any) -> bool:
    return asyncio.get_child_watcher() is watcher


@scenario
def loops_in_other_threads() -> None:
    """The policy's SafeChildWatcher, attached to the main thread's loop, serves
    children started by loops in worker threads."""
    for name in ("Safe", "Threaded", "Pidfd", "MultiLoop"):
        fresh_policy()
        watcher = getattr(asyncio, f"{name}ChildWatcher")()
        asyncio.set_child_watcher(watcher)
        results: List[Any] = []

        def worker(code: int, results: List[Any] = results) -> None:
            try:
                results.append(asyncio.run(exit_code(code)))
            except Exception as exc:  # reported, not raised: the line says what happened
                results.append(kind(exc))

        async def main() -> None:
            threads = [threading.Thread(target=worker, args=(code,)) for code in (21, 22, 23)]
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads):
                await asyncio.sleep(0.01)

        asyncio.run(main())
        say("threads", name, sorted(map(str, results)))
        asyncio.set_child_watcher(None)


@scenario
def worker_thread_set_event_loop_does_not_attach() -> None:
    fresh_policy()
    attached: List[Any] = []

    class Recording(ThreadCallbackWatcher):
        def attach_loop(self, loop: Any) -> None:
            attached.append(loop is None)

    watcher = Recording()
    asyncio.set_child_watcher(watcher)

    def worker() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncio.set_event_loop(None)
        loop.close()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    say("attach-worker-thread", attached)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncio.set_event_loop(None)
    loop.close()
    say("attach-main-thread", attached)
    fresh_policy()


def main() -> int:
    for run in SCENARIOS:
        try:
            run()
        except Exception as exc:
            say(run.__name__, "FAILED", kind(exc), exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
