"""The interface every loop adapter implements."""

from __future__ import annotations

import abc
import asyncio
from typing import Any, Callable, Optional, Tuple

from .._contract import AbstractChildWatcher, ChildCallback


class LoopAdapter(abc.ABC):
    """What one family of event loops allows child watchers to do.

    ``name`` names the family (``"asyncio"``, ``"uvloop"``, …).  An adapter
    whose loop forbids custom watchers returns a reason from
    :meth:`custom_watcher_refusal`; its :meth:`set_child_watcher` and
    :meth:`get_child_watcher` are then never called.
    """

    name: str = "?"

    @abc.abstractmethod
    def matches(self, loop: asyncio.AbstractEventLoop) -> bool:
        """True if ``loop`` belongs to this family."""

    def version(self) -> Optional[str]:
        """The installed version of the loop's package, if known."""
        return None

    def custom_watcher_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        """Why a custom watcher cannot drive ``loop``'s own subprocesses, or None."""
        return None

    def subprocess_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        """Why ``loop`` cannot start subprocesses at all, or None if it can."""
        return None

    def sigchld_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        """Why SIGCHLD-driven watchers (Safe, Fast, MultiLoop) cannot run on ``loop``, or None."""
        return None

    def signal_handler_refusal(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        """Why ``loop.add_signal_handler``/``remove_signal_handler`` cannot carry the
        SIGCHLD handler of Safe and Fast (MultiLoop sets its own), or None."""
        return None

    def signal_wakeup_fd(self, loop: asyncio.AbstractEventLoop) -> Optional[int]:
        """The fd that ``loop.add_signal_handler`` makes the process's signal
        wake-up fd (``signal.set_wakeup_fd``), or None if unknown or none."""
        return None

    def set_child_watcher(
        self, loop: asyncio.AbstractEventLoop, watcher: Optional[AbstractChildWatcher]
    ) -> None:
        """Make ``loop`` reap its subprocesses with ``watcher`` (None: its own default)."""
        raise NotImplementedError

    def get_child_watcher(self, loop: asyncio.AbstractEventLoop) -> Optional[AbstractChildWatcher]:
        """The childwatch watcher ``loop`` uses, or None while it uses its own."""
        raise NotImplementedError

    def current_watcher_name(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        """The class name of whatever reaps ``loop``'s subprocesses now, without side effects."""
        return None

    def reap_waits_for(
        self, callback: ChildCallback, args: Tuple[Any, ...]
    ) -> Optional[Tuple[asyncio.AbstractEventLoop, Callable[[], bool]]]:
        """For a child delivered to ``callback(pid, returncode, *args)``, where
        ``callback`` is this family's loop's own: ``(loop, learnt)`` if the
        child must stay a zombie until ``learnt()`` is true in ``loop``'s
        thread (the loop learns the status later than its callback runs), else
        None (reap at once)."""
        return None

    def own_exit_step(
        self, callback: ChildCallback, args: Tuple[Any, ...]
    ) -> Optional[Tuple[asyncio.AbstractEventLoop, Callable[[int], object], int]]:
        """``(loop, step, iterations)`` if ``callback`` is exactly this family's
        loop's own (no override), which does nothing but have ``loop`` run
        ``step(returncode)`` ``iterations`` loop iterations later; else None.
        A watcher delivering in ``loop``'s thread may then queue ``step``
        itself, with the reap right after it (:meth:`reap_waits_for`'s wait
        then has nothing to wait for)."""
        return None


def selector_wakeup_fd(loop: asyncio.AbstractEventLoop) -> Optional[int]:
    """The signal wake-up fd of asyncio's selector loops (and the loops derived
    from them): the write end of their self-pipe, ``_csock``."""
    sock = getattr(loop, "_csock", None)
    fileno = getattr(sock, "fileno", None)
    fd = fileno() if callable(fileno) else -1
    return fd if isinstance(fd, int) and fd >= 0 else None
