"""Which OS mechanisms for waiting on children this process can use."""

from __future__ import annotations

import functools
import os
import signal

from . import _syscalls
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


@functools.cache
def exit_queue_works() -> bool:
    """True if a kqueue with a process's exit note can be had (macOS and the
    BSDs: :func:`childwatch._syscalls.open_exit_queue`, tried on this process)."""
    try:
        queue = _syscalls.open_exit_queue(os.getpid())
    except OSError:
        return False
    queue.close()
    return True


def available() -> dict[str, bool]:
    return {
        "pidfd": pidfd_works(),
        "waitid": "waitid" not in missing(),
        "kqueue": exit_queue_works(),
        "sigchld": hasattr(signal, "SIGCHLD"),
    }
