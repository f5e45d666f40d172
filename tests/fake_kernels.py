"""Simulated macOS, FreeBSD and OpenBSD kernels, at the syscall layer's seam.

No macOS or BSD machine can be had here, and Debian's libkqueue has no
``EVFILT_PROC``: what childwatch does on those kernels is tested by replaying,
in this process, the orderings their kernels are documented (or were reported
by trio and libuv) to produce.  A :class:`FakeKernel` stands in for the two
calls of ``childwatch._syscalls`` that every reader of children goes through,
``waitid`` and ``open_exit_queue``, with its platform's constants (installed
in ``_syscalls`` in place of the running kernel's: a flag of another kernel is
EINVAL here, as it is for a real one) and its platform's quirks
(:class:`Platform`).  Its children are simulated too: pids above any real
one, whose ``exit()`` the test decides.  Everything above the seam -- the
delivery rule, ``wait_pid`` -- is childwatch's real code.

What this is not: a run on a real macOS or BSD kernel.  The orderings are the
ones listed on :class:`Platform`; a kernel that behaves otherwise is not
covered by these tests.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
from typing import Dict, List, NamedTuple, Optional

import pytest

from childwatch import _mechanisms, _syscalls
from childwatch._syscalls import WaitidABI, WaitidResult

FIRST_FAKE_PID = 2_000_000_000
"""Above any pid a real kernel here hands out (Linux's pid_max is at most 2**22)."""


class Platform(NamedTuple):
    """One kernel's behaviour, as far as watching children goes."""

    name: str
    abi: WaitidABI
    refuses_exiting: bool
    """Registering the exit note of a child already exiting fails with ESRCH,
    and no note ever comes (macOS, OpenBSD); else it is accepted and fires at
    once (FreeBSD)."""
    empty_reads_after_note: int
    """How many ``waitid`` reads after the exit note still see nothing (macOS
    fires the note before the child is waitable: trio and libuv both met it)."""
    full_exit_value: bool
    """``si_status`` holds the whole int given to ``_exit()`` (FreeBSD), not its low 8 bits."""
    reports_stopped: bool
    """``waitid(WEXITED | WNOHANG | WNOWAIT)`` returns a stopped child, with
    ``si_code`` CLD_STOPPED (reported for macOS)."""


# The fields in order: name, waitid ABI, refuses_exiting, empty_reads_after_note,
# full_exit_value, reports_stopped.
MACOS = Platform("macos", _syscalls.DARWIN, True, 3, False, True)
FREEBSD = Platform("freebsd", _syscalls.FREEBSD, False, 0, True, False)
OPENBSD = Platform("openbsd", _syscalls.OPENBSD, True, 0, False, False)
PLATFORMS = {platform.name: platform for platform in (MACOS, FREEBSD, OPENBSD)}

CLD_STOPPED = 5  # the same on all three


class FakeQueue:
    """One kqueue with one child's exit note: a pipe whose read end turns readable when it fires."""

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel
        self.read_end, self.write_end = os.pipe()
        self.closed = False

    def fire(self) -> None:
        os.write(self.write_end, b"x")

    def fileno(self) -> int:
        return self.read_end

    def close(self) -> None:
        assert not self.closed, "an exit queue was closed twice"
        self.closed = True
        os.close(self.read_end)
        os.close(self.write_end)


class FakeChild:
    __slots__ = ("empty_reads_left", "exit_after_reads", "pid", "queues", "state", "value")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.state = "running"  # running, stopped, exiting (noted, not yet waitable), zombie
        self.value = 0
        self.empty_reads_left = 0
        self.exit_after_reads: Optional[int] = None
        self.queues: List[FakeQueue] = []


class FakeKernel:
    """The seam's two calls, as ``platform``'s kernel answers them (see the module docstring)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.abi = platform.abi
        self.children: Dict[int, FakeChild] = {}
        self.queues: List[FakeQueue] = []
        self.log: List[str] = []
        """What happened, in order: ``read <pid> <what>``, ``reaped <pid>``,
        ``registered <pid>``, ``refused <pid>``, ``noted <pid>``."""

    # -- the test's side ------------------------------------------------------

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make this kernel the one ``childwatch._syscalls`` talks to."""
        abi = self.abi
        for name in ("P_ALL", "P_PID", "WNOHANG", "WEXITED", "WNOWAIT"):
            monkeypatch.setattr(_syscalls, name, getattr(abi, name))
        monkeypatch.setattr(_syscalls, "_PEEK", abi.WEXITED | abi.WNOHANG | abi.WNOWAIT)
        monkeypatch.setattr(_syscalls, "NATIVE", abi)
        monkeypatch.setattr(_syscalls, "waitid", self.waitid)
        monkeypatch.setattr(_syscalls, "open_exit_queue", self.open_exit_queue)
        monkeypatch.delattr(os, "pidfd_open", raising=False)  # no pidfd off Linux
        for name in (
            "pidfd_works",
            "exit_queue_works",
        ):  # what they found on the real kernel stays cached there
            monkeypatch.setattr(_mechanisms, name, functools.cache(getattr(_mechanisms, name).__wrapped__))

    def spawn(self) -> int:
        pid = FIRST_FAKE_PID + len(self.children)
        self.children[pid] = FakeChild(pid)
        return pid

    def exit(self, pid: int, value: int) -> None:
        """Child ``pid`` calls ``_exit(value)``: its exit note fires now."""
        child = self.children[pid]
        child.value = value
        child.empty_reads_left = self.platform.empty_reads_after_note
        child.state = "exiting" if child.empty_reads_left else "zombie"
        self.log.append(f"noted {pid}")
        for queue in child.queues:
            queue.fire()

    def exit_after_reads(self, pid: int, reads: int, value: int) -> None:
        """Child ``pid`` exits right after ``waitid`` read it ``reads`` more times:
        an exit racing with what is done between those reads."""
        child = self.children[pid]
        child.exit_after_reads, child.value = reads, value

    def stop(self, pid: int) -> None:
        self.children[pid].state = "stopped"

    def open_queues(self) -> List[FakeQueue]:
        return [queue for queue in self.queues if not queue.closed]

    # -- the seam -------------------------------------------------------------

    def waitid(self, idtype: int, ident: int, options: int) -> Optional[WaitidResult]:
        abi = self.abi
        if options & ~(abi.WEXITED | abi.WNOHANG | abi.WNOWAIT) or not options & abi.WEXITED:
            raise OSError(errno.EINVAL, f"waitid options {options:#x} are not {self.platform.name}'s")
        if idtype != abi.P_PID:
            raise OSError(errno.EINVAL, f"idtype {idtype} is not {self.platform.name}'s P_PID")
        child = self.children.get(ident)
        if child is None:
            raise ChildProcessError(errno.ECHILD, "No child processes")
        assert options & abi.WNOHANG, "a blocking waitid in the event loop's thread"
        result = self._read(child)
        if child.exit_after_reads is not None:
            child.exit_after_reads -= 1
            if child.exit_after_reads == 0:
                child.exit_after_reads = None
                self.exit(child.pid, child.value)
        if result is not None and result.si_code != CLD_STOPPED and not options & abi.WNOWAIT:
            del self.children[child.pid]
            self.log.append(f"reaped {child.pid}")
        return result

    def _read(self, child: FakeChild) -> Optional[WaitidResult]:
        if child.state == "exiting":
            child.empty_reads_left -= 1
            if child.empty_reads_left == 0:
                child.state = "zombie"
            self.log.append(f"read {child.pid} nothing yet")
            return None
        if child.state == "stopped" and self.platform.reports_stopped:
            self.log.append(f"read {child.pid} stopped")
            return WaitidResult(child.pid, 0, signal.SIGCHLD, signal.SIGSTOP, CLD_STOPPED)
        if child.state != "zombie":
            self.log.append(f"read {child.pid} running")
            return None
        status = child.value if self.platform.full_exit_value else child.value & 0xFF
        self.log.append(f"read {child.pid} exited")
        return WaitidResult(child.pid, 0, signal.SIGCHLD, status, _syscalls.CLD_EXITED)

    def open_exit_queue(self, pid: int) -> FakeQueue:
        if pid == os.getpid():  # (any process may be watched: this one never exits here)
            return self._new_queue()
        child = self.children.get(pid)
        exiting = child is None or child.state in ("exiting", "zombie")
        if exiting and (child is None or self.platform.refuses_exiting):
            self.log.append(f"refused {pid}")
            raise ProcessLookupError(errno.ESRCH, "No such process")
        assert child is not None
        queue = self._new_queue()
        child.queues.append(queue)
        self.log.append(f"registered {pid}")
        if exiting:
            queue.fire()  # FreeBSD: a child already exiting fires at once
        return queue

    def _new_queue(self) -> FakeQueue:
        queue = FakeQueue(self)
        self.queues.append(queue)
        return queue
