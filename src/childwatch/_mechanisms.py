"""Which OS mechanisms for waiting on children this process can use."""

from __future__ import annotations

import functools
import os
import select
import signal


@functools.cache
def pidfd_works() -> bool:
    """True if ``os.pidfd_open`` exists and the kernel (and seccomp) allow it."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    os.close(fd)
    return True


def available() -> dict[str, bool]:
    return {
        "pidfd": pidfd_works(),
        "waitid": hasattr(os, "waitid"),
        "kqueue": hasattr(select, "kqueue"),
        "sigchld": hasattr(signal, "SIGCHLD"),
    }
