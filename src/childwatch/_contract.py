"""The child watcher contract: :class:`AbstractChildWatcher`.

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
from typing import Any, Callable, Optional, Type

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
