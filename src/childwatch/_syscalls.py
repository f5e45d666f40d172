"""The two Linux calls every watcher is built on: ``waitid`` and ``pidfd_open``.

They come from :mod:`os` where the interpreter has them (CPython on Linux)
and through :mod:`ctypes` from the C library where it does not (PyPy's
``os`` has neither ``waitid`` nor ``pidfd_open``, nor the ``W*``/``P_*``
constants), with the same signatures and errors as :mod:`os`'s: a failed call
raises the :class:`OSError` subclass for its errno (``ChildProcessError`` for
ECHILD); ``waitid(..., WNOHANG)`` returns None when no child has changed state.
The choice is made once, at import: :data:`waitid` is the very function
called (a watcher calls it a few times per child).  Importing this module never fails: a call that this interpreter
and platform cannot make raises :class:`OSError` (ENOSYS) saying so, and
:func:`missing` names what is missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import sys
from typing import Any, Callable, List, NamedTuple, Optional, Protocol

# The Linux values (the same on every architecture childwatch runs on), for
# interpreters whose os module lacks the names.
P_ALL: int = getattr(os, "P_ALL", 0)
P_PID: int = getattr(os, "P_PID", 1)
P_PIDFD: int = getattr(os, "P_PIDFD", 3)
WNOHANG: int = getattr(os, "WNOHANG", 1)
WEXITED: int = getattr(os, "WEXITED", 4)
WNOWAIT: int = getattr(os, "WNOWAIT", 0x01000000)
CLD_EXITED: int = getattr(os, "CLD_EXITED", 1)

_SYS_PIDFD_OPEN = 434
"""pidfd_open's syscall number: one number on every architecture (Linux 5.3+)."""


class WaitidLike(Protocol):
    """What childwatch reads of a waitid result (``os.waitid_result`` or :class:`WaitidResult`)."""

    @property
    def si_pid(self) -> int: ...
    @property
    def si_status(self) -> int: ...
    @property
    def si_code(self) -> int: ...


class WaitidResult(NamedTuple):
    """The fields of ``siginfo_t`` that ``os.waitid_result`` has and childwatch reads."""

    si_pid: int
    si_uid: int
    si_signo: int
    si_status: int
    si_code: int


class _Siginfo(ctypes.Structure):
    # siginfo_t for SIGCHLD on Linux: three ints, then (aligned to a pointer)
    # pid, uid and status; 128 bytes in all.
    _pad = ctypes.sizeof(ctypes.c_void_p) - ctypes.sizeof(ctypes.c_int)
    _fields_ = [
        ("si_signo", ctypes.c_int),
        ("si_errno", ctypes.c_int),
        ("si_code", ctypes.c_int),
        ("_align", ctypes.c_char * _pad),
        ("si_pid", ctypes.c_int),
        ("si_uid", ctypes.c_uint),
        ("si_status", ctypes.c_int),
        ("_rest", ctypes.c_char * (128 - 3 * ctypes.sizeof(ctypes.c_int) - _pad - 12)),
    ]


@functools.cache
def _libc() -> Optional[Any]:
    """The C library, through ctypes (Linux only), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _raise_errno(call: str) -> None:
    code = ctypes.get_errno()
    raise OSError(code, f"{call}: {os.strerror(code)}")


def _unavailable(name: str) -> OSError:
    return OSError(errno.ENOSYS, f"{name} is not available on {sys.implementation.name} {sys.platform}")


def c_waitid(idtype: int, ident: int, options: int) -> Optional[WaitidResult]:
    """libc's ``waitid``, as :func:`os.waitid` (for interpreters without it)."""
    libc = _libc()
    if libc is None:
        raise _unavailable("waitid")
    call = libc.waitid
    call.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_Siginfo), ctypes.c_int]
    call.restype = ctypes.c_int
    info = _Siginfo()  # zeroed: si_pid stays 0 when WNOHANG finds nothing
    while call(idtype, ident, ctypes.byref(info), options) != 0:
        if ctypes.get_errno() != errno.EINTR:
            _raise_errno("waitid")
    if info.si_pid == 0:
        return None
    return WaitidResult(info.si_pid, info.si_uid, info.si_signo, info.si_status, info.si_code)


def c_pidfd_open(pid: int, flags: int = 0) -> int:
    """The ``pidfd_open`` system call, as :func:`os.pidfd_open` (for interpreters without it)."""
    libc = _libc()
    if libc is None:
        raise _unavailable("pidfd_open")
    libc.syscall.restype = ctypes.c_long
    fd = int(libc.syscall(ctypes.c_long(_SYS_PIDFD_OPEN), ctypes.c_int(pid), ctypes.c_uint(flags)))
    if fd < 0:
        _raise_errno(f"pidfd_open({pid})")
    return fd


waitid: Callable[[int, int, int], Optional[WaitidLike]] = getattr(os, "waitid", None) or c_waitid
"""``waitid(idtype, id, options)``: :func:`os.waitid` where it exists, else :func:`c_waitid`."""


def pidfd_open(pid: int) -> int:
    """``pidfd_open(pid)``: :func:`os.pidfd_open` where it exists, else :func:`c_pidfd_open`."""
    call = getattr(os, "pidfd_open", None)
    if call is None:
        return c_pidfd_open(pid)
    fd: int = call(pid)
    return fd


def missing() -> List[str]:
    """The calls this interpreter and platform cannot make at all (each raises ENOSYS)."""
    if _libc() is not None:
        return []
    return [name for name in ("waitid", "pidfd_open") if not hasattr(os, name)]
