"""Which OS mechanisms for waiting on children this process can use."""

from __future__ import annotations

import functools
import os
import select
import signal

from ._syscalls import missing, open_pidfd


@functools.cache
def pidfd_works() -> bool:
    """True if ``pidfd_open`` can be called (through os or ctypes) and the
    kernel (and seccomp) allow it."""
    try:
        fd = open_pidfd(os.getpid())
    except OSError:
        return False
    os.close(fd)
    return True


def available() -> dict[str, bool]:
    return {
        "pidfd": pidfd_works(),
        "waitid": "waitid" not in missing(),
        "kqueue": hasattr(select, "kqueue"),
        "sigchld": hasattr(signal, "SIGCHLD"),
    }
