"""``await wait_pid(pid)``: one child's returncode, on asyncio, uvloop, trio-asyncio or trio.

How it waits: a pidfd (Linux) or, where there is none, a kqueue of its own
with the child's exit note (macOS and the BSDs: :func:`~childwatch._syscalls.open_exit_queue`),
watched by the running library's own I/O wait (the asyncio loop's public
``add_reader``, or ``trio.lowlevel.wait_readable``).  Once that fd is readable,
or where neither can be had (old kernel, seccomp, no fds left, a child already
exiting that macOS and OpenBSD refuse to register with ESRCH) or the loop has
no ``add_reader``, it polls ``waitid(WNOHANG | WNOWAIT)`` from the loop itself
with a growing interval (1 ms up to 50 ms) until the exit shows (macOS fires
the exit note before ``waitid`` sees the exit): no thread, nothing left
running after a cancellation.

Who reaps: every waiter reads the status with ``waitid(WNOWAIT)``, so the child
stays a zombie while anyone still waits for it.  A process-wide table counts
the waiters of each pid; the last one to leave reaps the child, if and only if
some waiter received its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from . import _syscalls
from ._contract import running_loop
from ._gevent import refuse_under_gevent
from ._syscalls import ExitQueue, check_pid, child_status, open_pidfd, peek, reap, reaped_elsewhere
from .loops import reader_methods

WaitReadable = Callable[[int], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]

_FIRST_POLL = 0.001
_MAX_POLL = 0.05


class _Child:
    """The waiters of one pid, and its returncode once one of them has it."""

    __slots__ = ("returncode", "waiters")

    def __init__(self) -> None:
        self.waiters = 0
        self.returncode: int | None = None


_lock = threading.Lock()
_children: dict[int, _Child] = {}


def _forget_all() -> None:
    # A forked child inherits the table, but not the children it describes.
    global _lock
    _lock = threading.Lock()
    _children.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all)


async def wait_pid(pid: int | subprocess.Popen[Any]) -> int:
    """Wait for child process ``pid`` to exit, reap it and return its returncode.

    ``pid`` is the pid of a child of this process, started any way you like
    (``os.fork``, ``os.posix_spawn``, ...), or a :class:`subprocess.Popen`.
    Works in asyncio (stdlib, uvloop, trio-asyncio; also anyio on either
    backend) and trio code.  Children started through asyncio's own
    subprocess APIs are the loop's business: don't wait for them here.

    Returns the exit code (0-255), or ``-N`` if the child was killed by signal
    ``N``.  For a :class:`~subprocess.Popen`, the returncode is also stored in
    ``popen.returncode`` before the child is reaped, so a later ``wait()`` or
    ``poll()`` returns it; a Popen whose returncode is already known returns it
    at once.  (Don't also block in ``popen.wait()`` in another thread at the
    same time: that call would race with this one to reap the child.)

    Raises, before waiting at all: :class:`TypeError` unless ``pid`` is an int
    (not a bool) or a Popen; :class:`ValueError` for a pid outside
    1..2**31-1; :class:`ChildProcessError` if ``pid`` is not a child of this
    process or its status was already collected; :class:`RuntimeError` if
    not awaited from asyncio or trio; :class:`~childwatch.UnsupportedLoopError`
    for a bare pid under gevent's monkey-patching, whose libev reaps every
    child and keeps the status only for its own ``Popen``
    (:mod:`childwatch._gevent`): pass that Popen instead.

    Several calls may wait for the same pid at once, from any task, loop or
    thread: each gets the same returncode, and the child is reaped once, when
    the last of them is done.  If someone else reaps the child meanwhile
    (``os.waitpid``, a watcher calling ``waitpid(-1)``), the status is lost: the
    result is 255 and a warning is logged (or ``popen.returncode`` if the
    Popen collected it).

    Cancellation: a cancelled call leaves the child alone (alive, or an
    unreaped zombie) and releases everything it held (pidfd, reader), so you
    may wait for it again, kill it, or reap it yourself.  The one exception:
    if another ``wait_pid()`` for the same pid has already returned its
    status, the child is reaped when the last waiter leaves, cancelled or not
    (and a Popen's returncode is set).
    """
    popen: subprocess.Popen[Any] | None = None
    if isinstance(pid, subprocess.Popen):
        popen = pid
        if popen.returncode is not None:
            return popen.returncode
        pid = popen.pid
    elif isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"wait_pid() expects an int pid or a subprocess.Popen, not {type(pid).__name__}")
    else:
        refuse_under_gevent("wait_pid() for a bare pid")  # gevent's Popen keeps the status libev reaps
    check_pid(pid)
    wait_readable, sleep = _backend()
    child = _join(pid)
    try:
        return await _wait(pid, child, popen, wait_readable, sleep)
    finally:
        _leave(pid, child, popen)


async def _wait(
    pid: int, child: _Child, popen: subprocess.Popen[Any] | None, wait_readable: WaitReadable, sleep: Sleep
) -> int:
    notice = _exit_notice(pid)
    try:
        delay = _FIRST_POLL
        # A pidfd is readable at once for a child that already exited: its status is read then.
        look = not isinstance(notice, _Pidfd) or child.returncode is not None
        while True:
            if look:
                returncode = _status(pid, child, popen)
                if returncode is not None:
                    return returncode
            look = True
            if notice is not None:
                with contextlib.suppress(NotImplementedError):  # a loop without add_reader
                    await wait_readable(notice.fileno())
                # Readable means exiting, not yet waitable: a traced child's status
                # may still be on its way to us through the tracer, and macOS
                # fires the exit note before waitid sees the exit.  Poll from now on.
                notice.close()
                notice = None
            else:
                await sleep(delay)
                delay = min(delay * 2, _MAX_POLL)
    finally:
        if notice is not None:
            notice.close()


class _Pidfd:
    """A pidfd, as an :class:`~childwatch._syscalls.ExitQueue`."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        os.close(self.fd)


def _exit_notice(pid: int) -> ExitQueue | None:
    """What turns readable when ``pid`` exits: its pidfd, else a kqueue with its
    exit note; None where neither can be had (then ``_wait`` polls).  ESRCH from
    the kqueue is one of those: macOS and OpenBSD refuse a child already
    exiting, whose note would never come, and polling sees its exit."""
    try:
        return _Pidfd(open_pidfd(pid))
    except OSError:
        pass
    try:
        return _syscalls.open_exit_queue(pid)
    except OSError:
        return None


def _join(pid: int) -> _Child:
    with _lock:
        child = _children.get(pid)
        if child is None:
            child_status(pid)
            child = _children[pid] = _Child()
        child.waiters += 1
        return child


def _status(pid: int, child: _Child, popen: subprocess.Popen[Any] | None) -> int | None:
    """The child's returncode if it has exited (it stays unreaped), else None."""
    with _lock:
        if child.returncode is None:
            try:
                child.returncode = peek(pid)
            except ChildProcessError:
                if popen is not None and popen.returncode is not None:
                    child.returncode = popen.returncode
                else:
                    child.returncode = reaped_elsewhere(pid)
        return child.returncode


def _leave(pid: int, child: _Child, popen: subprocess.Popen[Any] | None) -> None:
    with _lock:
        child.waiters -= 1
        if child.returncode is not None and popen is not None and popen.returncode is None:
            popen.returncode = child.returncode
        if child.waiters == 0:
            del _children[pid]
            if child.returncode is not None:
                reap(pid)


# -- which async library is running ------------------------------------------------


def _backend() -> tuple[WaitReadable, Sleep]:
    library = _current_library()
    if library == "asyncio":
        return _asyncio_wait_readable, asyncio.sleep
    if library == "trio":
        import trio  # type: ignore[import-not-found, unused-ignore]

        wait_readable: WaitReadable = trio.lowlevel.wait_readable
        sleep: Sleep = trio.sleep
        return wait_readable, sleep
    raise RuntimeError(f"wait_pid() supports asyncio and trio, not {library}")


def _current_library() -> str:
    try:
        import sniffio  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        pass
    else:
        try:
            name: str = sniffio.current_async_library()
            return name
        except sniffio.AsyncLibraryNotFoundError:
            pass
    # Without sniffio (trio and trio-asyncio require it, anyio does not).
    if running_loop() is not None:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            return "trio"
    raise RuntimeError("wait_pid() must be awaited from asyncio or trio code")


async def _asyncio_wait_readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    add_reader, remove_reader = reader_methods(loop)  # (the fd is a fresh one of ours)
    add_reader(fd, functools.partial(_set_done, readable))  # some loops take no callback arguments
    try:
        await readable
    finally:
        remove_reader(fd)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
