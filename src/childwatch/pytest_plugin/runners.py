"""Making loops of one implementation, and running coroutine functions on them.

The contract: :class:`LoopFactory` and :class:`LoopRunner` import nothing until they are
called; called for an implementation that cannot run here (unknown, not installed,
cannot run a coroutine: :func:`.catalog.unavailable_reason`), they skip the test with
the reason. They run in whatever process calls them: keeping a loop that patches asyncio
out of the main process is the plugin's routing (:mod:`.isolation`), not theirs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
import weakref
from typing import Any, Awaitable, Callable, List, Optional, Sequence, TypeVar, Union

import pytest

from . import catalog
from .catalog import LoopImpl

T = TypeVar("T")


def usable(impl: str, spec: Optional[LoopImpl] = None) -> LoopImpl:
    """The entry of ``impl`` (``spec``, else the built-in one); skips the test where it cannot run."""
    loops = catalog.BUILTIN if spec is None else {impl: spec}
    reason = catalog.reason_by_name(impl, loops)
    if reason is not None:
        pytest.skip(reason)
    return loops[impl]


@dataclasses.dataclass(frozen=True)
class LoopFactory:
    """A zero-argument callable making a fresh event loop of implementation ``impl``.

    Made lazily: nothing is imported until it is called.  Called where the
    implementation is unavailable, it skips the test with the reason.  The
    trio-asyncio loop it makes is trio-asyncio's synchronous loop (the one
    ``loop.run_until_complete`` works on); tests given one are run in the
    isolated worker.  ``spec`` is the entry of a loop given as ``NAME=module:factory``
    (the plugin passes it); a built-in name needs none.  With ``by_policy`` (the
    ``asyncio`` factory handed to pytest-asyncio), the loop is made by the event loop
    policy in place where that is not asyncio's default (a project's ``event_loop_policy``
    fixture, which pytest-asyncio puts in place around its loop factory), so that a
    project's own asyncio test loop is kept.

    Every loop made is remembered while it lives (:func:`running_loops`).
    """

    impl: str
    spec: Optional[LoopImpl] = None
    by_policy: bool = False

    def __call__(self) -> asyncio.AbstractEventLoop:
        entry = usable(self.impl, self.spec)
        policy = _own_policy() if self.by_policy else None
        loop: asyncio.AbstractEventLoop = entry.new_loop() if policy is None else policy.new_event_loop()
        _made.add(loop)
        return loop

    def __repr__(self) -> str:
        return f"LoopFactory({self.impl!r})"


class LoopRunner:
    """Runs coroutine functions on fresh loops of one implementation (the ``run_on_loop`` fixture)."""

    def __init__(self, impl: Union[str, LoopFactory]) -> None:
        self.factory = impl if isinstance(impl, LoopFactory) else LoopFactory(impl)
        self.impl = self.factory.impl

    def __repr__(self) -> str:
        return f"LoopRunner({self.impl!r})"

    def __call__(self, fn: Callable[..., Awaitable[T]], *args: Any, timeout: Optional[float] = None) -> T:
        """Run ``await fn(*args)`` on a new loop, bounded by ``timeout`` seconds; close the loop.

        Leftover tasks are cancelled and async generators and the default
        executor shut down before the loop is closed.  trio-asyncio runs the
        coroutine under ``trio.run`` inside ``trio_asyncio.open_loop()``.
        """

        async def main() -> T:
            if timeout is None:
                return await fn(*args)
            return await asyncio.wait_for(_awaited(fn, args), timeout)

        if usable(self.impl, self.factory.spec).name == "trio-asyncio":
            return _run_trio_asyncio(main)
        loop = self.factory()
        try:
            return loop.run_until_complete(main())
        finally:
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()


_made: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def running_loops() -> List[asyncio.AbstractEventLoop]:
    """The loops made by a :class:`LoopFactory` in this process that are running now."""
    return [loop for loop in list(_made) if loop.is_running()]


def _own_policy() -> Optional[asyncio.AbstractEventLoopPolicy]:
    """The event loop policy in place if it is not asyncio's default (nor trio-asyncio's,
    whose loops the plugin makes itself), else None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the policy system, 3.14+
        policy: Optional[asyncio.AbstractEventLoopPolicy] = asyncio.get_event_loop_policy()
        default = getattr(asyncio, "DefaultEventLoopPolicy", None)
    if type(policy) is default or type(policy).__module__.startswith("trio_asyncio"):
        return None
    return policy


async def _awaited(fn: Callable[..., Awaitable[T]], args: Sequence[Any]) -> T:
    return await fn(*args)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def _run_trio_asyncio(main: Callable[[], Awaitable[T]]) -> T:
    trio_asyncio = catalog.import_quietly("trio_asyncio")
    trio = catalog.import_quietly("trio")
    outcome: List[Any] = []

    async def in_trio() -> None:
        async with trio_asyncio.open_loop():
            # Caught here, so that it is not wrapped in the ExceptionGroup of open_loop's nursery.
            try:
                outcome.append((True, await trio_asyncio.aio_as_trio(main)()))
            except Exception as exc:
                outcome.append((False, exc))

    trio.run(in_trio)
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result
