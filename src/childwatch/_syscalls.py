"""The syscall layer: every watcher, and ``wait_pid``, learns about children here.

Two calls carry it, ``waitid`` and (Linux only) ``pidfd_open``.  They come
from :mod:`os` where the interpreter has them (CPython on Linux, and on macOS
from 3.13) and through :mod:`ctypes` from the C library where it does not
(PyPy's ``os`` has neither ``waitid`` nor ``pidfd_open``, nor the
``W*``/``P_*`` constants; CPython up to 3.12 has no ``os.waitid`` on macOS),
with this kernel's constants and ``siginfo_t`` layout (:class:`WaitidABI`:
Linux, Darwin, FreeBSD and OpenBSD differ in both), with the
same signatures and errors as :mod:`os`'s: a failed call raises the
:class:`OSError` subclass for its errno (``ChildProcessError`` for ECHILD);
``waitid(..., WNOHANG)`` returns None when no child has changed state.  The
choice is made once, at import: :data:`waitid` is the very function called.
Importing this module never fails: a call that this interpreter and platform
cannot make raises :class:`OSError` (ENOSYS) saying so, and :func:`missing`
names what is missing.

The delivery rule, which every watcher and ``wait_pid`` follow through this
module alone: a child's status is read without reaping it (:func:`peek`,
:func:`peek_pidfd`, :func:`peek_any`: ``waitid(WNOWAIT)``), the callback (or
waiter) gets it, and only then is the child reaped (:func:`reap`).  So the
child stays a zombie, and its pid cannot be reused by a new process, while the
callback runs: a ``kill()`` issued from the callback (or before it) can never
reach a stranger.  A child whose status someone else collected first is
reported as :data:`UNKNOWN_STATUS` with a warning (:func:`reaped_elsewhere`).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import select
import sys
from typing import Any, Callable, List, NamedTuple, Optional, Protocol, Tuple, Type

from ._errors import logger


class WaitidABI(NamedTuple):
    """One kernel's ``waitid``: its constants and the ``siginfo_t`` it fills.

    The values are the C headers' (Linux ``linux/wait.h``; Darwin, FreeBSD and
    OpenBSD ``sys/wait.h`` and ``sys/signal.h`` or ``sys/siginfo.h``), for a
    C library called through ctypes where :mod:`os` lacks ``waitid``.  The
    ``CLD_*`` codes are the same on all four (1 exited, 2 killed, 3 dumped).
    """

    system: str
    """``sys.platform`` without its version digits."""
    P_ALL: int
    P_PID: int
    WNOHANG: int
    WEXITED: int
    WNOWAIT: int
    siginfo: Type[ctypes.Structure]
    """The ctypes structure of its ``siginfo_t`` (offsets and size computed by
    ctypes for this machine's alignment)."""
    id_t: Type[ctypes.c_uint32] | Type[ctypes.c_int64]
    """The C type of ``waitid``'s second argument (64 bits on FreeBSD)."""


class _LinuxSiginfo(ctypes.Structure):
    # Three ints, then (aligned to a pointer) pid, uid and status; 128 bytes in all.
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


class _BSDSiginfoHead(ctypes.Structure):
    # Darwin's and FreeBSD's siginfo_t up to si_value (a subclass's fields
    # follow): six ints with no union before them (si_pid at byte 12), a
    # pointer and ``union sigval``.
    _fields_ = [
        ("si_signo", ctypes.c_int),
        ("si_errno", ctypes.c_int),
        ("si_code", ctypes.c_int),
        ("si_pid", ctypes.c_int),
        ("si_uid", ctypes.c_uint),
        ("si_status", ctypes.c_int),
        ("si_addr", ctypes.c_void_p),
        ("si_value", ctypes.c_void_p),
    ]


class _DarwinSiginfo(_BSDSiginfoHead):
    # Then si_band and seven reserved longs.
    _fields_ = [("si_band", ctypes.c_long), ("_reserved", ctypes.c_ulong * 7)]


class _FreeBSDSpare(ctypes.Structure):
    # The largest member of FreeBSD's ``_reason`` union: a long and seven ints.
    _fields_ = [("_long", ctypes.c_long), ("_ints", ctypes.c_int * 7)]


class _FreeBSDSiginfo(_BSDSiginfoHead):
    # Then the ``_reason`` union.
    _fields_ = [("_reason", _FreeBSDSpare)]


class _OpenBSDChild(ctypes.Structure):
    _fields_ = [("si_utime", ctypes.c_int64), ("si_stime", ctypes.c_int64), ("si_status", ctypes.c_int)]


class _OpenBSDProcData(ctypes.Union):
    _fields_ = [("si_value", ctypes.c_void_p), ("cld", _OpenBSDChild)]


class _OpenBSDProc(ctypes.Structure):
    _fields_ = [("si_pid", ctypes.c_int), ("si_uid", ctypes.c_uint), ("pdata", _OpenBSDProcData)]


class _OpenBSDData(ctypes.Union):
    _fields_ = [("_pad", ctypes.c_int * 29), ("proc", _OpenBSDProc), ("_fault", ctypes.c_void_p * 2)]


class _OpenBSDSiginfo(ctypes.Structure):
    # si_code before si_errno; the rest in a union of 29 ints aligned to a
    # pointer, whose SIGCHLD member puts si_status after two 64-bit clock_t.
    _fields_ = [
        ("si_signo", ctypes.c_int),
        ("si_code", ctypes.c_int),
        ("si_errno", ctypes.c_int),
        ("data", _OpenBSDData),
    ]


# The fields in order: system, P_ALL, P_PID, WNOHANG, WEXITED, WNOWAIT, siginfo, id_t.
LINUX = WaitidABI("linux", 0, 1, 1, 4, 0x01000000, _LinuxSiginfo, ctypes.c_uint32)
DARWIN = WaitidABI("darwin", 0, 1, 1, 4, 0x20, _DarwinSiginfo, ctypes.c_uint32)
FREEBSD = WaitidABI("freebsd", 7, 0, 1, 16, 8, _FreeBSDSiginfo, ctypes.c_int64)
OPENBSD = WaitidABI("openbsd", 0, 2, 1, 4, 0x10, _OpenBSDSiginfo, ctypes.c_uint32)
ABIS = {abi.system: abi for abi in (LINUX, DARWIN, FREEBSD, OPENBSD)}
"""Every kernel whose ``waitid`` childwatch knows, by :func:`system`."""


def system(platform: str = sys.platform) -> str:
    """``sys.platform`` without its version digits (``freebsd14`` is ``freebsd``)."""
    return platform.rstrip("0123456789")


NATIVE: Optional[WaitidABI] = ABIS.get(system())
"""This kernel's ``waitid``, or None for a kernel childwatch does not know."""

_DEFAULTS = NATIVE or LINUX

# os's values where it has them (CPython), else this kernel's from its headers.
P_ALL: int = getattr(os, "P_ALL", _DEFAULTS.P_ALL)
P_PID: int = getattr(os, "P_PID", _DEFAULTS.P_PID)
P_PIDFD: int = getattr(os, "P_PIDFD", 3)  # (Linux only)
WNOHANG: int = getattr(os, "WNOHANG", _DEFAULTS.WNOHANG)
WEXITED: int = getattr(os, "WEXITED", _DEFAULTS.WEXITED)
WNOWAIT: int = getattr(os, "WNOWAIT", _DEFAULTS.WNOWAIT)
CLD_EXITED: int = getattr(os, "CLD_EXITED", 1)
CLD_KILLED: int = getattr(os, "CLD_KILLED", 2)
CLD_DUMPED: int = getattr(os, "CLD_DUMPED", 3)

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


def _field(info: ctypes.Structure, name: str) -> int:
    """A field of any :class:`WaitidABI`'s siginfo structure, wherever its union puts it."""
    if isinstance(info, _OpenBSDSiginfo) and name in ("si_pid", "si_uid", "si_status"):
        proc = info.data.proc
        value: int = proc.pdata.cld.si_status if name == "si_status" else getattr(proc, name)
        return value
    field: int = getattr(info, name)
    return field


def _result_of(info: ctypes.Structure) -> Optional[WaitidResult]:
    """What a filled siginfo structure of any :class:`WaitidABI` tells, or None
    if it names no process (``WNOHANG``, nothing to report)."""
    fields = [_field(info, name) for name in WaitidResult._fields]
    return None if fields[0] == 0 else WaitidResult(*fields)


def decode_siginfo(abi: WaitidABI, raw: bytes) -> Optional[WaitidResult]:
    """The result ``raw`` (a ``siginfo_t`` of ``abi``'s kernel, as ``waitid``
    filled it) tells, or None if it names no process."""
    return _result_of(abi.siginfo.from_buffer_copy(raw))


@functools.cache
def _libc() -> Optional[Any]:
    """The C library, through ctypes, on a kernel whose ``waitid`` is known; or None."""
    if NATIVE is None:
        return None
    import ctypes.util  # (here: it imports tempfile and shutil, which nothing else needs)

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
    """libc's ``waitid``, as :func:`os.waitid` (for interpreters without it),
    with this kernel's ``siginfo_t`` (:data:`NATIVE`)."""
    libc = _libc()
    if libc is None or NATIVE is None or not hasattr(libc, "waitid"):
        raise _unavailable("waitid")
    call = libc.waitid
    call.argtypes = [ctypes.c_int, NATIVE.id_t, ctypes.c_void_p, ctypes.c_int]
    call.restype = ctypes.c_int
    info = NATIVE.siginfo()  # zeroed: si_pid stays 0 when WNOHANG finds nothing
    while call(idtype, ident, ctypes.byref(info), options) != 0:
        if ctypes.get_errno() != errno.EINTR:
            _raise_errno("waitid")
    return _result_of(info)  # (read in place: no copy of the buffer per call)


def c_pidfd_open(pid: int, flags: int = 0) -> int:
    """The ``pidfd_open`` system call, as :func:`os.pidfd_open` (for interpreters without it)."""
    libc = _libc()
    if libc is None or NATIVE is not LINUX:
        raise _unavailable("pidfd_open")
    libc.syscall.restype = ctypes.c_long
    fd = int(libc.syscall(ctypes.c_long(_SYS_PIDFD_OPEN), ctypes.c_int(pid), ctypes.c_uint(flags)))
    if fd < 0:
        _raise_errno(f"pidfd_open({pid})")
    return fd


waitid: Callable[[int, int, int], Optional[WaitidLike]] = getattr(os, "waitid", None) or c_waitid
"""``waitid(idtype, id, options)``: :func:`os.waitid` where it exists, else :func:`c_waitid`."""


def open_pidfd(pid: int) -> int:
    """A pidfd for child ``pid`` (:func:`os.pidfd_open` where it exists, else
    :func:`c_pidfd_open`).

    The one failure answer is :class:`OSError`, whatever the cause: no such
    call here (ENOSYS), a kernel older than 5.3 or a seccomp filter (ENOSYS,
    EPERM), no fd left (EMFILE, ENFILE), no such process (ESRCH).  Each
    caller chooses its fallback: ``PidfdChildWatcher`` raises, the threaded
    watcher waits in its fd-less thread, ``wait_pid`` polls.
    """
    call = getattr(os, "pidfd_open", None)
    if call is None:
        return c_pidfd_open(pid)
    fd: int = call(pid)
    return fd


# -- kqueue (macOS and the BSDs) ------------------------------------------------

NOTE_EXIT: int = getattr(select, "KQ_NOTE_EXIT", 0x80000000)
"""The process-exit note of ``EVFILT_PROC`` (the same bit on Darwin, FreeBSD
and OpenBSD; PyPy's :mod:`select` does not export it)."""


class ExitQueue(Protocol):
    """A descriptor that turns readable once a child exits, and its closing."""

    def fileno(self) -> int: ...
    def close(self) -> None: ...


def _kqueue_exit(pid: int) -> ExitQueue:
    """A kqueue of its own with ``pid``'s ``EVFILT_PROC``/``NOTE_EXIT`` registered."""
    kqueue = getattr(select, "kqueue", None)
    if kqueue is None or not hasattr(select, "KQ_FILTER_PROC"):
        raise _unavailable("kqueue EVFILT_PROC")
    queue: ExitQueue = kqueue()
    event = select.kevent(  # type: ignore[attr-defined, unused-ignore]  # (not in Linux's typeshed)
        pid,
        filter=select.KQ_FILTER_PROC,  # type: ignore[attr-defined, unused-ignore]
        flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT,  # type: ignore[attr-defined, unused-ignore]
        fflags=NOTE_EXIT,
    )
    try:
        queue.control([event], 0)  # type: ignore[attr-defined]
    except BaseException:
        queue.close()
        raise
    return queue


open_exit_queue: Callable[[int], ExitQueue] = _kqueue_exit
"""``open_exit_queue(pid)``: a kqueue that turns readable when child ``pid``
exits (the kernel's exit note; never run here on a real macOS or BSD kernel).

Raises :class:`OSError`: ENOSYS where there is no kqueue with ``EVFILT_PROC``
(Linux); :class:`ProcessLookupError` (ESRCH) for a child *already exiting*
on macOS and OpenBSD, which refuse the registration and would never fire
(FreeBSD accepts it and fires at once).  Readable does not mean waitable:
macOS fires the note before ``waitid`` can see the exit, so a reader polls
:func:`peek` until it does.  (This name, like :data:`waitid`, is the seam a
simulated kernel replaces: ``tests/fake_kernels.py``.)"""


def missing() -> List[str]:
    """The calls this interpreter and platform cannot make at all (each raises ENOSYS)."""
    libc = _libc()
    calls = {
        "waitid": hasattr(os, "waitid") or (libc is not None and hasattr(libc, "waitid")),
        "pidfd_open": hasattr(os, "pidfd_open") or (libc is not None and NATIVE is LINUX),
    }
    return [name for name, there in calls.items() if not there]


# -- statuses ------------------------------------------------------------------

PID_MAX = 2**31 - 1
"""The largest value a ``pid_t`` can hold."""

UNKNOWN_STATUS = 255
"""Returncode reported when someone else collected the child's status."""

_PEEK = WEXITED | WNOHANG | WNOWAIT


def check_pid(pid: object) -> int:
    """Return ``pid`` if it is a valid pid; raise TypeError/ValueError otherwise."""
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    if pid <= 0:
        raise ValueError(f"pid must be a positive int, got {pid}")
    if pid > PID_MAX:
        raise ValueError(f"pid {pid} is out of range (max {PID_MAX})")
    return pid


def returncode_of(result: Optional[WaitidLike]) -> Optional[int]:
    """The returncode a ``waitid(WEXITED)`` result tells: the exit code, ``-N``
    for a child killed by signal N, or None if no child had exited."""
    if result is None or result.si_pid == 0:
        return None
    # Masked: FreeBSD (and Darwin) hand the full 32-bit value given to _exit(),
    # of which a wait status keeps 8 bits.
    if result.si_code == CLD_EXITED:
        return result.si_status & 0xFF
    if result.si_code in (CLD_KILLED, CLD_DUMPED):
        return -(result.si_status & 0x7F)  # the signal the child died of
    # CLD_STOPPED, CLD_TRAPPED, CLD_CONTINUED: not an exit (macOS's waitid has
    # been seen reporting a stopped child to WEXITED).
    return None


def peek(pid: int) -> Optional[int]:
    """The returncode of child ``pid`` if it has exited, else None.

    The child is not reaped.  Raises :class:`ChildProcessError` if ``pid`` is
    not a child of this process or its status was already collected.
    """
    return returncode_of(waitid(P_PID, pid, _PEEK))


def peek_pidfd(pidfd: int) -> Optional[int]:
    """Like :func:`peek`, for the process a pidfd names (never a later process
    that reused its pid): ChildProcessError once someone else reaped it."""
    return returncode_of(waitid(P_PIDFD, pidfd, _PEEK))


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
    if result is None:  # (no call when nothing shows: the end of every SIGCHLD scan)
        return None
    returncode = returncode_of(result)
    return None if returncode is None else (result.si_pid, returncode)


def read_exit(pid: int, pidfd: Optional[int] = None) -> Tuple[bool, Optional[int]]:
    """``(exited, returncode)`` of child ``pid``, read without reaping it
    (through ``pidfd`` if given); returncode None if someone else reaped it."""
    try:
        returncode = peek(pid) if pidfd is None else peek_pidfd(pidfd)
    except ChildProcessError:
        return True, None
    return returncode is not None, returncode


def child_status(pid: int) -> Optional[int]:
    """Is ``pid`` our child?  Its returncode if it has exited (not reaped),
    None while it runs; :func:`not_a_child` raised if it is not a child of
    this process, or its status was already collected."""
    try:
        result = waitid(P_PID, pid, _PEEK)
    except ChildProcessError:
        raise not_a_child(pid) from None
    return None if result is None else returncode_of(result)  # (a running child: no call)


def reap(pid: int) -> None:
    """Reap the exited child ``pid`` (no-op if someone else already did)."""
    try:
        waitid(P_PID, pid, WEXITED | WNOHANG)  # (through waitid, the one call that reads children)
    except ChildProcessError:
        pass


def reaped_elsewhere(pid: int) -> int:
    """The "someone else reaped it" rule: log that ``pid``'s status was
    collected by someone else, and return :data:`UNKNOWN_STATUS` (255)."""
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
