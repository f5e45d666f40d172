"""pytest-timeout's limit, enforced from outside the loop, for the loops that swallow its signal.

The contract: pytest-timeout's default method (``signal``) fails a test by raising from a
``SIGALRM`` handler, and a loop that runs Python's signal handlers from its own machinery
(uvloop) swallows what they raise: a hung test there would hang the session.  So for a test
that runs in this process on one of the plugin's loops that swallow it (:data:`SWALLOWING_LOOPS`; an
isolated test's limit is the main process's, :mod:`.worker`), :func:`take_over` (called from
pytest-timeout's ``pytest_timeout_set_timer`` hook) replaces pytest-timeout's timer with a
:class:`Watchdog` thread.  When the limit passes, the watchdog

1. has each running loop made by the plugin (:func:`.runners.running_loops`) note the stack
   of each of its tasks and cancel them, from inside the loop (``call_soon_threadsafe``): a
   test waiting on the loop ends;
2. if no loop ran that within :data:`GRACE` seconds (the test is blocked in a synchronous
   call, where the loop runs no callback), sends ``SIGALRM`` to the main thread, whose
   handler fails the test with the main thread's stack.  (Not otherwise: a loop that
   swallows the handler's exception may not run its callbacks again.)

:func:`raise_if_stopped` then makes whatever the stopped test (its setup, call or teardown)
raised pytest-timeout's failure, with those stacks.  pytest-timeout's ``thread`` method (which ends the session), a test run in
another thread and the other loops are left to pytest-timeout.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import traceback
from types import FrameType
from typing import Any, List, Mapping, Optional

import pytest

from .catalog import LoopImpl
from .isolation import worker_for
from .runners import running_loops
from .selection import item_impl

_KEY = pytest.StashKey["Watchdog"]()

GRACE = 1.0
"""Seconds the watchdog waits for the loops to cancel the test's tasks before it signals the main thread."""


class Watchdog:
    """The timer of one test: stops it on ``impl`` after ``timeout`` seconds (see the module)."""

    def __init__(self, item: pytest.Item, impl: str, timeout: float) -> None:
        self.message: Optional[str] = None
        """Set when the limit has passed: the first line of the test's failure."""
        self.stacks: List[str] = []
        """The stacks of the tasks it cancelled, and of the main thread it interrupted."""
        self._impl = impl
        self._timeout = timeout
        self._done = threading.Event()
        self._cancelled = threading.Event()
        self._previous = signal.signal(signal.SIGALRM, self._interrupt)
        self._thread = threading.Thread(
            target=self._watch, name=f"childwatch timeout {item.nodeid}", daemon=True
        )
        self._thread.start()

    def _watch(self) -> None:
        if self._done.wait(self._timeout):
            return
        self.message = (
            f"Timeout (>{self._timeout}s) from pytest-timeout, enforced by childwatch on {self._impl} "
            "(whose signal handling swallows pytest-timeout's)"
        )
        for loop in running_loops():
            try:
                loop.call_soon_threadsafe(self._cancel_tasks, loop)
            except Exception:  # closed in the meantime, or not callable from here: the signal then
                pass
        if self._cancelled.wait(GRACE):
            return
        main = threading.main_thread().ident
        if main is not None and not self._done.is_set():
            signal.pthread_kill(main, signal.SIGALRM)

    def _cancel_tasks(self, loop: asyncio.AbstractEventLoop) -> None:
        for task in asyncio.all_tasks(loop):
            if not task.done():
                self.stacks.append(f"Stack of {task!r} (most recent call last):\n{_awaiting(task)}")
                task.cancel()
        self._cancelled.set()

    def _interrupt(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.message is None or self._done.is_set():
            return
        self.stacks.append(
            "Stack of the main thread (most recent call last):\n" + "".join(traceback.format_stack(frame))
        )
        pytest.fail(self.message, pytrace=False)

    def cancel(self) -> None:
        """Stop watching (the test ended), and give ``SIGALRM`` its handler back."""
        self._done.set()
        self._thread.join()
        signal.signal(signal.SIGALRM, self._previous)


def _awaiting(task: asyncio.Task[Any]) -> str:
    """The stack of suspended ``task``: its coroutine, and down the chain of what each awaits."""
    frames = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        frames.append((frame, frame.f_lineno))
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return "".join(traceback.StackSummary.extract(frames).format())


SWALLOWING_LOOPS = frozenset({"uvloop"})
"""The plugin's loops known to swallow what a Python signal handler raises: only their tests
get a watchdog (a thread during every test would make ``os.fork()`` in them warn on 3.12+,
which gevent's subprocesses do; the other loops let pytest-timeout's signal through)."""


def take_over(item: pytest.Item, settings: Any, loops: Mapping[str, LoopImpl], in_worker: bool) -> bool:
    """Start a :class:`Watchdog` for ``item`` in place of pytest-timeout's timer (``settings``:
    pytest-timeout's), where its signal cannot stop the test (see the module); False elsewhere."""
    impl = item_impl(item)
    if (
        impl not in SWALLOWING_LOOPS
        or impl not in loops
        or settings.method != "signal"
        or threading.current_thread() is not threading.main_thread()
        or (not in_worker and worker_for(item, loops) is not None)
    ):
        return False
    dog = item.stash[_KEY] = Watchdog(item, impl, float(settings.timeout))
    item.cancel_timeout = dog.cancel  # type: ignore[attr-defined]  # pytest-timeout's cancel hook calls it
    return True


def raise_if_stopped(item: pytest.Item, exc: BaseException) -> None:
    """If ``item``'s watchdog stopped it, raise pytest-timeout's failure with the stacks in place
    of ``exc``, what the stopped setup, call or teardown raised; else return."""
    dog = item.stash.get(_KEY, None)
    if dog is not None and dog.message is not None and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
        raise pytest.fail.Exception("\n\n".join([dog.message, *dog.stacks]), pytrace=False) from None
