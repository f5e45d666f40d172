"""FastChildWatcher: SIGCHLD, then reap every exited child of the process."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from .._errors import logger
from .._syscalls import peek, reap
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

    def _status_at_registration(self, pid: int) -> Tuple[Optional[int], bool]:
        returncode = self._early.get(pid)
        if returncode is not None:
            try:
                peek(pid)
            except ChildProcessError:
                return returncode, False  # no such child now: the remembered status is this pid's
            # A live child has this pid: the memory belongs to an earlier process
            # that had the same pid, and must not be delivered to this one.
            del self._early[pid]
        return super()._status_at_registration(pid)

    def _claim(self, pid: int, entry: Optional[Entry] = None) -> Optional[Entry]:
        claimed = super()._claim(pid, entry)
        if claimed is not None:
            self._early.pop(pid, None)  # delivered now: remembered no more
        return claimed

    def _deliver_if_exited(self, pid: int, entry: Optional[Entry] = None) -> bool:
        # A remembered status is this pid's: Fast reaped the child already.
        with self._lock:
            returncode = self._early.get(pid)
            claimed = None if returncode is None else self._claim(pid, entry)
        if returncode is None:
            return super()._deliver_if_exited(pid, entry)
        if claimed is not None:
            self._deliver(claimed, returncode, reap=False)
        return True

    def _scan(self) -> None:
        self._scan_visible_exits(self._deliver)

    def _foreign_exit(self, pid: int, returncode: int) -> Optional[str]:
        reap(pid)
        self._early.pop(pid, None)
        self._early[pid] = returncode
        if len(self._early) > EARLY_EXITS_MAX:
            forgotten = next(iter(self._early))
            del self._early[forgotten]
            logger.debug("FastChildWatcher forgot the status of unregistered pid %d", forgotten)
        return None

    def _after_fork_in_child(self) -> None:
        self._early.clear()
        super()._after_fork_in_child()

    def _release_resources(self) -> None:
        super()._release_resources()
        with self._lock:
            self._early.clear()
