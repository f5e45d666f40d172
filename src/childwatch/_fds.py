"""The process's file descriptors: its soft limit, how many it holds, and the
share of the limit a watcher may take."""

from __future__ import annotations

import os
import resource
from typing import Optional

DEFAULT_FD_SHARE = 0.25
"""The share of the soft ``RLIMIT_NOFILE`` that :class:`ThreadedChildWatcher`
(and so :func:`childwatch.default_watcher`) takes at most: 256 fds under the
usual soft limit of 1024.  The rest is the application's."""

_NR_OPEN = 1 << 20
"""Linux's default ``fs.nr_open``: no process holds more fds, whatever its limit says."""


def soft_limit() -> int:
    """The soft ``RLIMIT_NOFILE``: the lowest fd number ``open()`` and
    ``pidfd_open()`` refuse to return (EMFILE)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return _NR_OPEN if soft == resource.RLIM_INFINITY else soft


def check_share(share: object) -> float:
    """Return ``share`` if it is a number from 0 to 1 (TypeError, ValueError otherwise)."""
    if isinstance(share, bool) or not isinstance(share, (int, float)):
        raise TypeError(f"fd_share must be a number from 0 to 1, not {type(share).__name__}")
    if not 0 <= share <= 1:
        raise ValueError(f"fd_share must be from 0 to 1, got {share!r}")
    return float(share)


def budget(share: float) -> int:
    """How many fds a watcher with ``share`` of the soft limit may hold now."""
    return int(soft_limit() * share)


def held() -> Optional[int]:
    """How many fds this process holds, or None if it cannot even open one
    more to count them (``/proc/self/fd``)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir read them with
    except OSError:
        return None
