"""The child watcher contract (:class:`AbstractChildWatcher`), and what childwatch
asks of an event loop and how it uses one (:func:`is_event_loop`,
:func:`check_loop`, :func:`running_loop`, :func:`call_in_loop`).

On Python 3.9–3.13 it is also a subclass of ``asyncio.AbstractChildWatcher``,
so ``asyncio.set_child_watcher()`` accepts every childwatch watcher and the
stdlib loop drives its subprocesses with it.  Python 3.12 and 3.13 warn when
that class is subclassed outside asyncio; childwatch silences that warning for
its own classes, so importing childwatch or constructing a watcher never warns.
"""

from __future__ import annotations

import abc
import asyncio
import warnings
from types import TracebackType
from typing import Any, Callable, Optional, Type, cast

ChildCallback = Callable[..., object]
"""``callback(pid, returncode, *args)``: called once when the child exits."""

_stdlib_base: type = getattr(asyncio, "AbstractChildWatcher", object)

LOOP_METHODS = ("call_soon", "call_soon_threadsafe", "call_later", "is_closed", "create_future")
"""What childwatch asks of an event loop: an :class:`asyncio.AbstractEventLoop`,
or any object with these methods (a duck-typed loop such as rsloop's, which
subclasses nothing).  What else a watcher needs of the loop (``add_reader``
with callback arguments, ``add_signal_handler``) each watcher checks, and
:func:`childwatch.capabilities` reports."""


def is_event_loop(obj: object) -> bool:
    """True if ``obj`` is an event loop childwatch can use (see :data:`LOOP_METHODS`)."""
    return isinstance(obj, asyncio.AbstractEventLoop) or all(
        callable(getattr(obj, name, None)) for name in LOOP_METHODS
    )


def check_loop(loop: object) -> Optional[asyncio.AbstractEventLoop]:
    """Return ``loop`` if it is None or an open event loop (an
    :class:`asyncio.AbstractEventLoop` or a duck-typed one: :func:`is_event_loop`)."""
    if loop is None:
        return None
    if not is_event_loop(loop):
        raise TypeError(f"loop must be an asyncio event loop or None, not {type(loop).__name__}")
    checked = cast(asyncio.AbstractEventLoop, loop)  # a duck-typed loop serves as one
    if checked.is_closed():
        raise RuntimeError(f"cannot attach to a closed event loop: {loop!r}")
    return checked


def running_loop() -> Optional[asyncio.AbstractEventLoop]:
    """The event loop running in this thread, or None.

    Through ``asyncio.get_running_loop()``, looked up at each call: trio-asyncio
    replaces asyncio's functions with its own, which raise RuntimeError in a Trio task."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def call_in_loop(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any, wake: bool = False
) -> bool:
    """Have ``callback(*args)`` run in ``loop``'s thread: the one way childwatch does.

    From the loop's own thread it is queued with ``call_soon`` (no wake-up
    write needed: the loop runs its queue next), from any other thread with
    ``call_soon_threadsafe``.  ``wake``: always the latter, for a caller that
    may have interrupted the loop's wait for I/O in its own thread (a signal
    handler).  Returns False, with nothing queued, if the loop is closed: each
    caller says what happens then (runs it itself, or drops it).
    """
    try:
        if not wake and loop is running_loop():
            loop.call_soon(callback, *args)
        else:
            loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # "Event loop is closed"
        return False
    return True


with warnings.catch_warnings():
    # 3.12/3.13: asyncio.AbstractChildWatcher.__init_subclass__ warns for any
    # subclass defined outside asyncio.  Ours is deliberate; silence it once
    # here and stop it for our own subclasses below.
    warnings.simplefilter("ignore", DeprecationWarning)

    class AbstractChildWatcher(_stdlib_base, metaclass=abc.ABCMeta):  # type: ignore[misc]
        """Watches child processes and reports each one's exit status once.

        The contract (that of asyncio's removed ``AbstractChildWatcher``):

        * ``add_child_handler(pid, callback, *args)`` arranges for
          ``callback(pid, returncode, *args)`` to be called once when child
          ``pid`` exits.  Registering the same pid again **replaces** the
          callback.  The callback may be called from another thread: it must
          be thread-safe.
        * ``remove_child_handler(pid)`` returns True if a handler was removed,
          False if there was none.
        * ``attach_loop(loop)`` attaches the watcher to ``loop`` (or detaches
          it when ``loop`` is None), detaching it from any previous loop first.
        * ``close()`` stops watching and releases every resource the watcher
          holds, any number of times.  The watcher stays usable, as asyncio's
          did: ``attach_loop(loop)`` or ``add_child_handler()`` reopens it
          (children registered before the close are never delivered).
        * ``is_active()`` tells whether a registration made now would be watched.
        * The watcher is a context manager: ``__enter__`` returns it.

        ``returncode`` is the exit code (0–255), or ``-N`` for a child killed
        by signal N, or 255 (with a logged warning) when someone else already
        collected the status.
        """

        def __init_subclass__(cls, **kwargs: Any) -> None:
            # Deliberately not chaining to asyncio's deprecation warning.
            object.__init_subclass__(**kwargs)

        @abc.abstractmethod
        def add_child_handler(self, pid: int, callback: ChildCallback, *args: Any) -> None:
            """Call ``callback(pid, returncode, *args)`` once child ``pid`` exits."""

        @abc.abstractmethod
        def remove_child_handler(self, pid: int) -> bool:
            """Forget ``pid``'s handler; True if there was one."""

        @abc.abstractmethod
        def attach_loop(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
            """Attach to ``loop`` (None detaches), detaching from the previous one."""

        @abc.abstractmethod
        def close(self) -> None:
            """Release the watcher's resources."""

        @abc.abstractmethod
        def is_active(self) -> bool:
            """True if the watcher is ready to watch children now."""

        def __enter__(self) -> AbstractChildWatcher:
            return self

        def __exit__(
            self,
            exc_type: Optional[Type[BaseException]],
            exc: Optional[BaseException],
            tb: Optional[TracebackType],
        ) -> None:
            return None
