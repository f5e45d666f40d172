"""Exit statuses, read without releasing the pid.

Every watcher learns a child's status with ``waitid(..., WNOWAIT)``, which
leaves the child a zombie, calls the user's callback, and only then reaps the
child with :func:`release`.  So the pid cannot be reused by a new process
while the callback runs: a ``kill()`` issued from the callback (or before it)
can never reach a stranger.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Optional, Tuple

from ._syscalls import CLD_EXITED, P_ALL, P_PID, P_PIDFD, WEXITED, WNOHANG, WNOWAIT, WaitidLike, waitid

logger = logging.getLogger("childwatch")

PID_MAX = 2**31 - 1
"""The largest value a ``pid_t`` can hold."""

UNKNOWN_STATUS = 255
"""Returncode reported when someone else collected the child's status."""

_PEEK = WEXITED | WNOHANG | WNOWAIT


def _returncode(result: WaitidLike) -> int:
    if result.si_code == CLD_EXITED:
        return result.si_status
    # CLD_KILLED or CLD_DUMPED: the child died of signal si_status.
    return -result.si_status


def peek(pid: int) -> Optional[int]:
    """The returncode of child ``pid`` if it has exited, else None.

    The child is not reaped.  Raises :class:`ChildProcessError` if ``pid`` is
    not a child of this process or its status was already collected.
    """
    result = waitid(P_PID, pid, _PEEK)
    if result is None or result.si_pid == 0:
        return None
    return _returncode(result)


def peek_pidfd(pidfd: int) -> Optional[int]:
    """Like :func:`peek`, for the process a pidfd names (never a later process
    that reused its pid): ChildProcessError once someone else reaped it."""
    result = waitid(P_PIDFD, pidfd, _PEEK)
    if result is None or result.si_pid == 0:
        return None
    return _returncode(result)


def peek_any(block: bool = False) -> Optional[Tuple[int, int]]:
    """``(pid, returncode)`` of some exited child of this process, or None
    (none has exited; with ``block``, only if this process has no child at all:
    it waits for one to exit).

    The child is not reaped: the same child is returned until someone reaps it.
    """
    try:
        result = waitid(P_ALL, 0, WEXITED | WNOWAIT if block else _PEEK)
    except ChildProcessError:
        return None
    if result is None or result.si_pid == 0:
        return None
    return result.si_pid, _returncode(result)


def release(pid: int) -> None:
    """Reap the exited child ``pid`` (no-op if someone else already did)."""
    try:
        os.waitpid(pid, WNOHANG)
    except ChildProcessError:
        pass


def reaped_elsewhere(pid: int) -> int:
    """Log that ``pid``'s status was collected by someone else; return 255."""
    logger.warning(
        "child process pid %d was reaped by someone else; reporting returncode %d",
        pid,
        UNKNOWN_STATUS,
    )
    return UNKNOWN_STATUS


def not_a_child(pid: int) -> ChildProcessError:
    """The error for registering a pid whose status this process cannot collect."""
    return ChildProcessError(
        errno.ECHILD,
        f"pid {pid} is not a child of this process, or its exit status was already collected",
    )
