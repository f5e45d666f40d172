"""Each kernel's ``waitid`` as the syscall layer knows it, byte by byte.

The offsets and sizes below are read off the C headers by hand (Linux's
``siginfo_t``; Darwin's and FreeBSD's ``sys/signal.h``, OpenBSD's
``sys/siginfo.h``), independently of the ctypes structures in
``childwatch._syscalls``: a ``siginfo_t`` is built at those offsets, with
every other byte garbage, and decoded.  Only Linux's layout is also checked
against a real kernel here (``test_faults.py``, ``c_waitid`` against
``os.waitid``); the others have never been run on their kernels.  On a
machine whose ``os`` has the constants (Linux, macOS, FreeBSD), the table's
entry for it is checked against them.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
from typing import Dict, NamedTuple

import pytest

from childwatch import _syscalls as sc


class Layout(NamedTuple):
    signo: int
    errno: int
    code: int
    pid: int
    uid: int
    status: int
    size: int


LP64_LAYOUTS: Dict[str, Layout] = {
    # int signo, errno, code; the union aligned to 8: pid, uid, status.
    "linux": Layout(signo=0, errno=4, code=8, pid=16, uid=20, status=24, size=128),
    # six ints in a row, then addr, value, band and 7 longs of padding.
    "darwin": Layout(signo=0, errno=4, code=8, pid=12, uid=16, status=20, size=104),
    # six ints in a row, then addr, value and a 40-byte union.
    "freebsd": Layout(signo=0, errno=4, code=8, pid=12, uid=16, status=20, size=80),
    # signo, code, errno (in that order); the union aligned to 8: pid, uid, then
    # two 64-bit clock_t before status.
    "openbsd": Layout(signo=0, errno=8, code=4, pid=16, uid=20, status=40, size=136),
}

lp64 = pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="the offsets here are the 64-bit ones")


@lp64
@pytest.mark.parametrize("system", sorted(LP64_LAYOUTS))
def test_siginfo_is_decoded_at_the_headers_offsets(system: str) -> None:
    abi, layout = sc.ABIS[system], LP64_LAYOUTS[system]
    assert ctypes.sizeof(abi.siginfo) == layout.size
    raw = bytearray(b"\xa5" * layout.size)  # every byte no field covers is garbage
    for offset, value in (
        (layout.signo, 17),
        (layout.errno, 0),
        (layout.code, sc.CLD_KILLED),
        (layout.pid, 4242),
        (layout.uid, 1000),
        (layout.status, 9),
    ):
        struct.pack_into("=i", raw, offset, value)
    result = sc.decode_siginfo(abi, bytes(raw))
    assert result == sc.WaitidResult(
        si_pid=4242, si_uid=1000, si_signo=17, si_status=9, si_code=sc.CLD_KILLED
    )
    assert sc.returncode_of(result) == -9


@pytest.mark.parametrize("system", sorted(sc.ABIS))
def test_a_zeroed_siginfo_reports_nothing(system: str) -> None:
    """``waitid(WNOHANG)`` with nothing to report leaves the zeroed buffer as it was."""
    abi = sc.ABIS[system]
    assert sc.decode_siginfo(abi, bytes(ctypes.sizeof(abi.siginfo))) is None


def test_the_constants_that_differ_between_kernels() -> None:
    """The values the ctypes path passes where ``os`` has none: FreeBSD numbers
    ``idtype_t`` from P_PID = 0, OpenBSD puts P_PID third, and WNOWAIT and
    WEXITED are four different bits."""
    got = {
        name: (abi.P_ALL, abi.P_PID, abi.WNOHANG, abi.WEXITED, abi.WNOWAIT) for name, abi in sc.ABIS.items()
    }
    assert got == {
        "linux": (0, 1, 1, 4, 0x01000000),
        "darwin": (0, 1, 1, 4, 0x20),
        "freebsd": (7, 0, 1, 16, 8),
        "openbsd": (0, 2, 1, 4, 0x10),
    }


def test_this_kernels_entry_matches_os() -> None:
    """On a kernel whose ``os`` exports the names (CPython on Linux, macOS, FreeBSD),
    the table says what ``os`` says: the ctypes path would pass the same values."""
    if sc.NATIVE is None:
        pytest.skip(f"childwatch knows no waitid for {sys.platform}")
    names = [name for name in ("P_ALL", "P_PID", "WNOHANG", "WEXITED", "WNOWAIT") if hasattr(os, name)]
    if not names:
        pytest.skip("this interpreter's os has none of the waitid constants (PyPy)")
    assert {name: getattr(sc.NATIVE, name) for name in names} == {name: getattr(os, name) for name in names}
    for name in names:
        assert getattr(sc, name) == getattr(os, name)


def test_platform_names_lose_their_version() -> None:
    assert [sc.system(name) for name in ("linux", "darwin", "freebsd14", "openbsd7")] == [
        "linux",
        "darwin",
        "freebsd",
        "openbsd",
    ]
    assert sc.system() in sc.ABIS or sc.NATIVE is None


def result(code: int, status: int) -> sc.WaitidResult:
    return sc.WaitidResult(si_pid=77, si_uid=0, si_signo=17, si_status=status, si_code=code)


def test_statuses_are_masked_to_what_a_wait_status_holds() -> None:
    """FreeBSD (and Darwin) fill si_status with the full 32-bit value given to
    ``_exit()``; a returncode is its low 8 bits, as ``waitpid`` would tell."""
    assert sc.returncode_of(result(sc.CLD_EXITED, 0x12345)) == 0x45
    assert sc.returncode_of(result(sc.CLD_EXITED, 256)) == 0
    assert sc.returncode_of(result(sc.CLD_DUMPED, 0x100 | 11)) == -11


def test_a_stopped_child_is_not_an_exit() -> None:
    """macOS's ``waitid(WEXITED | WNOHANG | WNOWAIT)`` has been reported to
    return a stopped child: its si_code says so, and it is no returncode."""
    cld_trapped, cld_stopped, cld_continued = 4, 5, 6  # the same on all four kernels
    for code in (cld_trapped, cld_stopped, cld_continued):
        assert sc.returncode_of(result(code, 19)) is None


def test_waitids_id_argument_has_each_kernels_width() -> None:
    """``id_t`` is 64 bits on FreeBSD, 32 elsewhere: the ctypes call passes that width."""
    assert {name: ctypes.sizeof(abi.id_t) for name, abi in sc.ABIS.items()} == {
        "linux": 4,
        "darwin": 4,
        "freebsd": 8,
        "openbsd": 4,
    }
