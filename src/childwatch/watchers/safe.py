"""SafeChildWatcher: SIGCHLD, then only our own pids."""

from __future__ import annotations

from ._sigchld import HIDDEN, LoopSigchldWatcher


class SafeChildWatcher(LoopSigchldWatcher):
    """Woken by SIGCHLD on the attached loop; reaps only the pids registered with it.

    It never reaps other code's children.  Per SIGCHLD it peeks at the exited
    children (``waitid(P_ALL, WNOWAIT)``, which reaps nothing) and delivers
    those that are its own: O(1) per exit.  Only when an exited child of
    someone else hides the view, or a signal revealed nothing (a child reaped
    behind its back), does it check its pids one by one.
    """

    def _scan(self) -> None:
        # Always (no unlocked "table is empty" shortcut): a registration in another
        # thread may hold the lock between reading its child's status and admitting
        # it; the scan waits for the lock and so sees that child's exit.
        if self._scan_visible_exits(self._deliver) is HIDDEN:
            self._check_all()
