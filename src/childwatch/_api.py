"""get/set_child_watcher for the running (or given) loop, and the recommended default."""

from __future__ import annotations

import asyncio
from typing import Optional

from . import watchers
from ._contract import AbstractChildWatcher, check_loop, running_loop
from ._errors import UnsupportedLoopError
from ._gevent import refuse_under_gevent
from .capabilities import RECOMMENDATIONS, capabilities
from .loops import LoopAdapter, adapter_for, no_adapter_reason, stdlib_adapter
from .watchers import ThreadedChildWatcher
from .watchers._sigchld import LoopSigchldWatcher


def _adapter(loop: asyncio.AbstractEventLoop) -> LoopAdapter:
    refuse_under_gevent("a custom child watcher")  # (the loop's subprocesses work through gevent)
    adapter = adapter_for(loop)
    if adapter is None:
        raise UnsupportedLoopError(no_adapter_reason(loop))
    reason = adapter.custom_watcher_refusal(loop)
    if reason is not None:
        raise UnsupportedLoopError(f"{adapter.name}: {reason}")
    return adapter


def _check_watcher(watcher: object) -> None:
    if watcher is not None and not isinstance(watcher, AbstractChildWatcher):
        raise TypeError(
            f"watcher must be a childwatch.AbstractChildWatcher or None, not {type(watcher).__name__}"
        )


def set_default_child_watcher(watcher: Optional[AbstractChildWatcher]) -> None:
    """Set the process-wide default of stdlib loops, even from inside a running loop
    (what that default is on each Python: see :func:`set_child_watcher`)."""
    _check_watcher(watcher)
    stdlib_adapter().set_default(watcher)


def set_child_watcher(
    watcher: Optional[AbstractChildWatcher], loop: Optional[asyncio.AbstractEventLoop] = None
) -> None:
    """Make ``loop`` (default: the running loop) reap its own subprocesses with ``watcher``.

    With no loop given and none running, ``watcher`` becomes the process-wide
    default for stdlib asyncio loops: on 3.9–3.13 asyncio's policy watcher
    (setting it closes the previous one, as asyncio did), on 3.14+ the watcher
    of every stdlib loop created afterwards.  ``None`` restores the loop's own
    default.  The previous per-loop watcher is not closed.  A closed watcher
    may be set: it reopens on its first use (Safe and Fast at once, attached
    to ``loop``).

    Raises TypeError if ``watcher`` is not a :class:`childwatch.AbstractChildWatcher`
    (or None), RuntimeError for a closed loop, and
    :class:`UnsupportedLoopError` for a loop that forbids custom watchers
    (uvloop, trio-asyncio), has no adapter, or runs under gevent's
    monkey-patching (:mod:`childwatch._gevent`).
    """
    _check_watcher(watcher)
    loop = check_loop(loop) or running_loop()
    if loop is None:
        stdlib_adapter().set_default(watcher)
        return
    adapter = _adapter(loop)
    if isinstance(watcher, LoopSigchldWatcher):
        watcher.attach_loop(loop)  # Safe/Fast: SIGCHLD arrives through this loop
    adapter.set_child_watcher(loop, watcher)


def get_child_watcher(loop: Optional[asyncio.AbstractEventLoop] = None) -> Optional[AbstractChildWatcher]:
    """The childwatch watcher that reaps ``loop``'s subprocesses (default: the running loop).

    None when the loop reaps with a private watcher of its own (stdlib 3.14+
    before any :func:`set_child_watcher`).  With no loop given and none
    running: the process-wide default (on 3.9–3.13 asyncio's policy watcher,
    which asyncio creates on first use).  Raises :class:`UnsupportedLoopError`
    for loops that forbid custom watchers, rather than pretending.
    """
    loop = check_loop(loop) or running_loop()
    if loop is None:
        found = stdlib_adapter().get_default()
        return found if isinstance(found, AbstractChildWatcher) else None
    return _adapter(loop).get_child_watcher(loop)


def default_watcher(loop: Optional[asyncio.AbstractEventLoop] = None) -> AbstractChildWatcher:
    """A new instance of the best safe watcher that works here: with a loop (given
    or running), the one :func:`childwatch.capabilities` recommends for it,
    attached to that loop -- :class:`ThreadedChildWatcher` wherever it works
    (any number of children in at most two threads and a quarter of the soft
    ``RLIMIT_NOFILE``: pidfds while they fit in that share, one fd-less waiter
    beyond), else :class:`PidfdChildWatcher`; with none, the threaded one.

    Neither installs a signal handler nor reaps other code's children.  Raises
    :class:`UnsupportedLoopError`, with the record's reason, on a loop where
    neither works.
    """
    loop = check_loop(loop) or running_loop()
    if loop is None:
        return ThreadedChildWatcher()
    caps = capabilities(loop)
    if caps.recommended is None:
        answers = dict(caps.watchers)
        reasons = dict.fromkeys(str(answers[name].reason) for name in RECOMMENDATIONS)  # each once, in order
        raise UnsupportedLoopError(f"no watcher works on {caps.loop_class}: " + "; ".join(reasons))
    watcher: AbstractChildWatcher = getattr(watchers, caps.recommended)()
    watcher.attach_loop(loop)
    return watcher
