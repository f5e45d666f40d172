"""FastChildWatcher: SIGCHLD, then reap every exited child of the process."""

from __future__ import annotations

from typing import Dict, Optional

from .._status import logger, peek, peek_any, release
from ._base import Entry
from ._sigchld import LoopSigchldWatcher

EARLY_EXITS_MAX = 4096
"""How many statuses of not-yet-registered children Fast remembers."""


class FastChildWatcher(LoopSigchldWatcher):
    """Woken by SIGCHLD on the attached loop; reaps **every** exited child.

    O(1) per exit, but it takes the statuses of children that other code
    started (``subprocess.run`` in another thread then sees returncode 0
    instead of the real one).  Use it only when this process starts no
    children except through this watcher.

    The status of a child that exits before it is registered is remembered
    (at most :data:`EARLY_EXITS_MAX`, oldest forgotten first) and delivered
    when it is registered; no ``with watcher:`` bracket is needed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._early: Dict[int, int] = {}

    def _probe(self, pid: int) -> bool:
        """Called with the lock held, at registration."""
        if pid in self._early:
            try:
                peek(pid)
            except ChildProcessError:
                return True  # no such child now: the remembered status is this pid's
            # A live child has this pid: the memory belongs to an earlier process
            # that had the same pid, and must not be delivered to this one.
            del self._early[pid]
        return super()._probe(pid)

    def _check(self, pid: int, entry: Optional[Entry] = None, pidfd: Optional[int] = None) -> bool:
        with self._lock:
            returncode = self._early.get(pid)
            claimed = None if returncode is None else self._claim(pid, entry)
            if claimed is not None:
                del self._early[pid]
        if returncode is None:
            return super()._check(pid, entry, pidfd)
        if claimed is not None:
            self._deliver(claimed, returncode, reap=False)
        return True

    def _scan(self) -> None:
        while True:
            found = peek_any()
            if found is None:
                return
            pid, returncode = found
            with self._lock:
                entry = self._claim(pid)
                if entry is None:
                    if pid in self._delivering:
                        if self._in_flight(pid):
                            return  # ours, its reap is due in a loop: that reap rescans
                        continue  # its loop closed: reaped just now
                    release(pid)
                    self._remember(pid, returncode)
            if entry is not None:
                self._deliver(entry, returncode)

    def _remember(self, pid: int, returncode: int) -> None:
        self._early.pop(pid, None)
        self._early[pid] = returncode
        if len(self._early) > EARLY_EXITS_MAX:
            forgotten = next(iter(self._early))
            del self._early[forgotten]
            logger.debug("FastChildWatcher forgot the status of unregistered pid %d", forgotten)

    def _after_fork_in_child(self) -> None:
        self._early.clear()
        super()._after_fork_in_child()

    def _release_resources(self) -> None:
        super()._release_resources()
        self._early.clear()
