"""What the running (or given) loop allows, as a frozen, JSON-serialisable record.

Cheap and side-effect free: no process is spawned, no watcher created (unless
asked to probe).  Every answer is ``supported``, ``unsupported`` (with the
reason) or ``unknown`` (with the reason).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import select
import subprocess
import sys
import threading
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

from . import _gevent, _mechanisms, _syscalls
from ._contract import check_loop, running_loop
from .loops import adapter_for, class_name, distribution_version, family, no_adapter_reason, sigchld_refusal

WATCHER_NAMES = (
    "SafeChildWatcher",
    "FastChildWatcher",
    "MultiLoopChildWatcher",
    "ThreadedChildWatcher",
    "PidfdChildWatcher",
)


SUPPORTED = "supported"
UNSUPPORTED = "unsupported"
UNKNOWN = "unknown"
STATUSES = (SUPPORTED, UNSUPPORTED, UNKNOWN)
"""The only answers a :class:`Support` gives."""


@dataclasses.dataclass(frozen=True)
class Support:
    """One answer: ``status`` is ``"supported"``, ``"unsupported"`` or ``"unknown"``.

    ``reason`` says why (always given for ``unsupported`` and ``unknown``; for
    ``supported``, an optional caveat).  ``Support(True)`` and
    ``Support(False, reason)``, the 0.2 spelling, still mean supported and
    unsupported.  Raises ValueError for any other status, or a missing reason.
    """

    status: str
    reason: Optional[str] = None

    def __post_init__(self) -> None:
        status: object = self.status
        if isinstance(status, bool):
            object.__setattr__(self, "status", SUPPORTED if status else UNSUPPORTED)
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        if self.status != SUPPORTED and not self.reason:
            raise ValueError(f"a {self.status!r} answer needs its reason")

    @property
    def supported(self) -> bool:
        """True only for ``"supported"`` (``"unknown"`` is not a promise)."""
        return self.status == SUPPORTED

    def to_dict(self) -> Dict[str, Any]:
        """``status``, ``reason`` and, as in 0.2, the boolean ``supported``."""
        return {"status": self.status, "supported": self.supported, "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What one event loop allows child watchers to do, on this Python and OS."""

    loop: str
    """Loop family: ``asyncio``, ``uvloop``, ``trio-asyncio``, ``trio``, or the class's package."""
    loop_class: str
    loop_version: Optional[str]
    python: str
    platform: str
    mechanisms: Tuple[Tuple[str, bool], ...]
    """OS mechanisms here: pidfd, waitid, kqueue, sigchld."""
    custom_watcher: Support
    """Can a custom watcher drive this loop's own subprocesses (set_child_watcher)?"""
    subprocesses: Support
    """Can this loop start subprocesses at all?"""
    watchers: Tuple[Tuple[str, Support], ...]
    """Which childwatch watchers can watch arbitrary pids on this loop."""
    current_watcher: Optional[str]
    """What reaps this loop's subprocesses now."""
    recommended: Optional[str]
    """The watcher :func:`childwatch.default_watcher` picks for this loop; None
    where no watcher can work (``default_watcher()`` refuses there)."""

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mechanisms"] = dict(self.mechanisms)
        data["custom_watcher"] = self.custom_watcher.to_dict()
        data["subprocesses"] = self.subprocesses.to_dict()
        data["watchers"] = {name: support.to_dict() for name, support in self.watchers}
        return data

    def to_json(self, **kwargs: Any) -> str:
        import json  # (here: only the report needs it)

        return json.dumps(self.to_dict(), **kwargs)


def _yes(caveat: Optional[str] = None) -> Support:
    return Support(SUPPORTED, caveat)


def _no(reason: str) -> Support:
    return Support(UNSUPPORTED, reason)


def _no_if(reason: Optional[str]) -> Optional[Support]:
    """Unsupported for ``reason``, or None (no objection)."""
    return None if reason is None else _no(reason)


def _unknown(reason: str) -> Support:
    return Support(UNKNOWN, reason)


def _noop(*args: object) -> None:
    pass


def _overrides(loop: object, method: str, base: type) -> bool:
    """True if ``loop``'s class defines ``method`` itself, not just inherits ``base``'s."""
    return getattr(type(loop), method, None) is not getattr(base, method, None)


def _reader_probe(loop: asyncio.AbstractEventLoop) -> Optional[Support]:
    """Whether ``loop``'s public ``add_reader(fd, callback)`` works, tried on a
    pipe of ours and undone at once; None if it does.  Not tried on a loop
    running in another thread (its reader table is that thread's)."""
    if loop.is_running() and loop is not running_loop():
        return _unknown(f"{class_name(loop)} runs in another thread: its add_reader was not tried from here")
    r, w = os.pipe()
    try:
        loop.add_reader(r, _noop)
    except NotImplementedError:
        return _no(f"{class_name(loop)} has no add_reader (NotImplementedError)")
    except Exception as exc:
        return _no(f"{class_name(loop)}.add_reader(fd, callback) fails: {type(exc).__name__}: {exc}")
    else:
        loop.remove_reader(r)
    finally:
        os.close(r)
        os.close(w)
    return None


def _subprocess_probe(loop: asyncio.AbstractEventLoop) -> Optional[Support]:
    """A refusal read off ``loop``'s class: it inherits asyncio's
    NotImplementedError for subprocesses.  None if it implements them."""
    if not _overrides(loop, "subprocess_exec", asyncio.AbstractEventLoop):
        return _no(f"{class_name(loop)} does not implement subprocess_exec (asyncio's NotImplementedError)")
    if isinstance(loop, asyncio.BaseEventLoop) and not _overrides(
        loop, "_make_subprocess_transport", asyncio.BaseEventLoop
    ):
        return _no(f"{class_name(loop)} does not implement _make_subprocess_transport (NotImplementedError)")
    return None


_UNSETTLED = "capabilities(probe=True) or python -m childwatch --probe settles it with a child"


def _watchers(
    loop: asyncio.AbstractEventLoop,
    sigchld: Tuple[Optional[Support], Optional[Support]],
    pidfd: bool,
    waitid: bool = True,
) -> Tuple[Tuple[str, Support], ...]:
    """Every watcher's answer on ``loop``.  ``sigchld`` holds the objections
    (unsupported from the adapter, unknown without one, or None) to Safe and
    Fast, whose handler goes through the loop, and to MultiLoop."""
    # Every watcher reads a status without reaping the child: waitid(WNOWAIT).
    nothing_works = (
        _gevent.reaping_refusal()
        if waitid
        else "no waitid() here (neither os.waitid nor the C library through ctypes)"
    )
    if nothing_works is not None:
        no = _no(nothing_works)
        return tuple((name, no) for name in WATCHER_NAMES)
    main = threading.current_thread() is threading.main_thread()
    reader = _reader_probe(loop)
    through_loop, own_handler = sigchld
    if _gevent.patched("threading"):
        safe = fast = multi = _no(
            "gevent's monkey-patching runs the loop in a greenlet that threading does not take for "
            "the main thread, where these watchers must be attached (RuntimeError)"
        )
    elif main:
        safe = through_loop or _yes()
        fast = through_loop or _yes("reaps every child of the process, other code's too")
        multi = own_handler or reader or _yes()
    else:
        safe = fast = _no("add_signal_handler needs a loop in the main thread")
        multi = own_handler or reader or _yes("must first be attached from the main thread")
    if "pidfd_open" in _syscalls.missing():
        pidfd_support = _no(
            f"no pidfd_open on {_kernel()}: pidfds are Linux's (macOS and the BSDs tell a child's exit "
            "through kqueue's EVFILT_PROC, which wait_pid uses)"
        )
    elif not pidfd:
        pidfd_support = _no("pidfd_open fails here (kernel < 5.3, or seccomp)")
    elif not hasattr(select, "epoll"):
        pidfd_support = _no("select.epoll is missing (AttributeError: gevent's monkey-patching removes it)")
    else:
        pidfd_support = reader or _yes()
    answers: Tuple[Support, ...] = (safe, fast, multi, _yes(), pidfd_support)
    untested = _untested_kernel()
    if untested is not None:
        answers = tuple(_unknown(untested) if answer.supported else answer for answer in answers)
    return tuple(zip(WATCHER_NAMES, answers))


def _kernel() -> str:
    """This kernel's name: the one whose ``waitid`` the syscall layer speaks."""
    native = _syscalls.NATIVE
    return sys.platform if native is None else native.system


def _untested_kernel() -> Optional[str]:
    """Why no watcher is promised on this kernel before a probe: childwatch
    has run on Linux only (None there).  Its ``waitid`` constants are known
    (:data:`childwatch._syscalls.NATIVE`); how its kernel orders a child's exit
    has only been simulated."""
    if _syscalls.NATIVE is _syscalls.LINUX:
        return None
    return (
        f"childwatch has never run on a real {_kernel()} kernel (tested on Linux; see the README's "
        f'"macOS and the BSDs"); {_UNSETTLED}'
    )


RECOMMENDATIONS = ("ThreadedChildWatcher", "PidfdChildWatcher")
"""What :func:`childwatch.default_watcher` picks, best first: the first supported here
(Threaded serves any number of children within a bounded share of the fd limit;
Pidfd needs a pidfd per child)."""


def _recommended(watchers: Tuple[Tuple[str, Support], ...]) -> Optional[str]:
    answers = dict(watchers)
    for wanted in (SUPPORTED, UNKNOWN):
        for name in RECOMMENDATIONS:
            if answers[name].status == wanted:
                return name
    return None


def _python_version() -> str:
    import platform

    return platform.python_version()


def _platform() -> str:
    import platform  # (here, as every use of it: only the report needs it)

    return f"{platform.system()} {platform.release()} {platform.machine()}"


def capabilities(loop: Optional[asyncio.AbstractEventLoop] = None, probe: bool = False) -> Capabilities:
    """The capability record of ``loop`` (default: the running loop, else a new stdlib loop).

    Cheap and spawn-free unless ``probe``: answers come from the loop's adapter
    and from what the loop object demonstrably does (its ``add_reader`` is tried
    on a pipe and undone; its class is read).  What only a child can tell is
    ``unknown``, with the reason.  With ``probe=True`` every unknown watcher
    (and unknown subprocess support) is settled by running the loop on a
    trivial child per answer (bounded by :data:`PROBE_TIMEOUT` seconds each;
    the Fast watcher reaps any other child that exits meanwhile): the loop
    must not be running then (RuntimeError).

    Raises TypeError for a non-loop and RuntimeError for a closed loop.
    """
    running = running_loop()
    mechanisms = _mechanisms.available()
    loop = check_loop(running if loop is None else loop)
    if loop is None:
        temporary = asyncio.new_event_loop()
        try:
            return capabilities(temporary, probe)
        finally:
            temporary.close()
    adapter = adapter_for(loop)
    current: Optional[str]
    version: Optional[str]
    sigchld: Tuple[Optional[Support], Optional[Support]]
    if adapter is None:
        loop_family = family(loop)
        custom = _no(no_adapter_reason(loop))
        subprocesses = _subprocess_probe(loop) or _unknown(
            f"{class_name(loop)} implements subprocesses itself; {_UNSETTLED}"
        )
        unknown = _unknown(
            f"whether {class_name(loop)} runs SIGCHLD handlers promptly cannot be read off the loop; {_UNSETTLED}"
        )
        sigchld = (unknown, unknown)
        current, version = None, distribution_version(loop_family)
    else:
        loop_family = adapter.name
        own_package = family(loop)  # a stdlib-derived loop (qasync's) is versioned by its own package
        version = adapter.version() if own_package == loop_family else distribution_version(own_package)
        refusal = _gevent.reaping_refusal() or adapter.custom_watcher_refusal(loop)
        custom = _yes() if refusal is None else _no(refusal)
        sub_refusal = adapter.subprocess_refusal(loop)
        subprocesses = _subprocess_probe(loop) or (_yes() if sub_refusal is None else _no(sub_refusal))
        sigchld = (
            _no_if(sigchld_refusal(adapter, loop, True)),
            _no_if(sigchld_refusal(adapter, loop, False)),
        )
        current = adapter.current_watcher_name(loop)
    watchers = _watchers(loop, sigchld, mechanisms["pidfd"], mechanisms["waitid"])
    if probe:
        watchers, subprocesses = _settle(loop, watchers, subprocesses)
    return Capabilities(
        loop=loop_family,
        loop_class=class_name(loop),
        loop_version=version,
        python=_python_version(),
        platform=_platform(),
        mechanisms=tuple(mechanisms.items()),
        custom_watcher=custom,
        subprocesses=subprocesses,
        watchers=watchers,
        current_watcher=current,
        recommended=_recommended(watchers),
    )


PROBE_TIMEOUT = 5.0
"""Seconds a deep probe waits for one child's exit to be delivered before it says unsupported."""


def _settle(
    loop: asyncio.AbstractEventLoop, watchers: Tuple[Tuple[str, Support], ...], subprocesses: Support
) -> Tuple[Tuple[Tuple[str, Support], ...], Support]:
    """Replace every unknown answer with what a real child shows on ``loop``."""
    if all(support.status != UNKNOWN for _, support in (*watchers, ("", subprocesses))):
        return watchers, subprocesses
    if loop.is_running():
        raise RuntimeError("capabilities(probe=True) runs the loop: call it where the loop is not running")

    async def settle_all() -> Tuple[Tuple[Tuple[str, Support], ...], Support]:
        settled = []
        for name, support in watchers:
            if support.status == UNKNOWN:
                support = await _try_watcher(name)
            settled.append((name, support))
        sub = await _try_subprocess() if subprocesses.status == UNKNOWN else subprocesses
        return tuple(settled), sub

    return loop.run_until_complete(settle_all())


def _child() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", ""], stdin=subprocess.DEVNULL)


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} raised"


def _settle_once(future: asyncio.Future[int], result: int) -> None:
    if not future.done():
        future.set_result(result)


async def _verdict(what: str, learnt: str, returncode_of: Callable[[], Awaitable[int]]) -> Support:
    """The answer a probe gives: ``returncode_of()`` is how the running loop
    learns the returncode of ``what`` (a trivial child, exiting 0), within
    :data:`PROBE_TIMEOUT` seconds (else it was not ``learnt``)."""
    name = class_name(asyncio.get_running_loop())
    try:
        returncode = await asyncio.wait_for(returncode_of(), PROBE_TIMEOUT)
    except asyncio.TimeoutError:
        return _no(f"probed: {what}'s exit was not {learnt} on {name} within {PROBE_TIMEOUT:g} s")
    except Exception as exc:
        return _no(f"probed on {name}: {_failure(exc)}")
    if returncode != 0:
        return _no(f"probed on {name}: {what} exiting 0 was reported as {returncode}")
    return _yes("probed with a child")


async def _try_watcher(name: str) -> Support:
    """Start a child, watch it with a new ``name`` watcher attached to the running loop."""
    from . import watchers

    loop = asyncio.get_running_loop()
    watcher = getattr(watchers, name)()
    exited: asyncio.Future[int] = loop.create_future()

    def on_exit(pid: int, returncode: int) -> None:
        loop.call_soon_threadsafe(_settle_once, exited, returncode)

    async def delivered() -> int:
        watcher.attach_loop(loop)
        watcher.add_child_handler(child.pid, on_exit)
        return await exited

    child = _child()
    try:
        verdict = await _verdict("a child", "delivered", delivered)
    finally:
        try:
            watcher.close()
        except Exception as exc:  # a loop that cannot undo what the watcher set (rloop 0.2's signal handler)
            verdict = _no(f"probed on {class_name(loop)}: closing the watcher failed: {_failure(exc)}")
        child.wait()  # reaped already (returncode 0 then) or reaped now
    return verdict


async def _try_subprocess() -> Support:
    async def waited() -> int:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "", stdin=subprocess.DEVNULL)
        return await proc.wait()

    return await _verdict("a subprocess", "seen", waited)


def unrunnable_capabilities(loop: str, loop_class: str, version: Optional[str], reason: str) -> Capabilities:
    """The record of loop family ``loop``, installed here but unable to run on this
    Python (trio-asyncio 0.16 on 3.14+): no loop of it can be made, so every
    answer is unsupported, for ``reason``."""
    no = _no(reason)
    return Capabilities(
        loop=loop,
        loop_class=loop_class,
        loop_version=version,
        python=_python_version(),
        platform=_platform(),
        mechanisms=tuple(_mechanisms.available().items()),
        custom_watcher=no,
        subprocesses=no,
        watchers=tuple((name, no) for name in WATCHER_NAMES),
        current_watcher=None,
        recommended=None,
    )


def trio_capabilities() -> Capabilities:
    """The record for plain trio, which has no asyncio loop and no child watcher."""
    import trio

    mechanisms = _mechanisms.available()
    no_loop = "needs an asyncio event loop; trio has none"
    return Capabilities(
        loop="trio",
        loop_class="trio",
        loop_version=trio.__version__,
        python=_python_version(),
        platform=_platform(),
        mechanisms=tuple(mechanisms.items()),
        custom_watcher=_no(
            "trio has no child watcher: trio.run_process waits with pidfd, kqueue or a waitid thread itself",
        ),
        subprocesses=_yes(),
        watchers=(
            ("SafeChildWatcher", _no(no_loop)),
            ("FastChildWatcher", _no(no_loop)),
            ("MultiLoopChildWatcher", _yes("callbacks run in the main thread's signal handler")),
            (
                "ThreadedChildWatcher",
                _yes(
                    "callbacks run in its waiter thread: hand them to trio with trio.from_thread or a TrioToken",
                ),
            ),
            ("PidfdChildWatcher", _no(no_loop)),
        ),
        current_watcher=None,
        recommended="ThreadedChildWatcher",
    )


__all__ = [
    "STATUSES",
    "SUPPORTED",
    "UNKNOWN",
    "UNSUPPORTED",
    "Capabilities",
    "Support",
    "capabilities",
    "trio_capabilities",
]
