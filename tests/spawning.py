"""Starting children for the tests, and for the scripts they run in processes of their own.

Kept free of pytest so that those scripts (``python tests/x.py``, whose
``sys.path[0]`` is this directory, or ``python -c`` with it put there) import it too.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import List

# Children start with default dispositions: a shell that started the tests in
# the background ignores SIGINT/SIGQUIT, and ignored signals survive exec.
DEFAULT_SIGNALS = [
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGABRT,
    signal.SIGSEGV,
    signal.SIGPIPE,
]

_kept: List[subprocess.Popen] = []  # type: ignore[type-arg]


def _stop_ignoring_inherited() -> None:
    """Where there is no posix_spawn (PyPy), children start through Popen,
    which resets only SIGPIPE (``restore_signals``): a signal this process
    ignores since it was started (SIGINT and SIGQUIT, by a shell that ran it
    in the background) would stay ignored in them.  So this process stops
    ignoring them (a handler, unlike SIG_IGN, does not survive exec); SIGPIPE
    stays as Python set it.  Runs at import, in the main thread.  Set whatever
    ``getsignal`` says: PyPy reports a signal ignored since start (``nohup``'s
    SIGHUP) as SIG_DFL."""
    for signum in DEFAULT_SIGNALS:
        if signum != signal.SIGPIPE:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)


if not hasattr(os, "posix_spawn"):
    _stop_ignoring_inherited()


def start(argv: List[str]) -> int:
    """Start ``argv`` (a full path first) as a child of this process; return its pid.

    With ``os.posix_spawn`` (the signals of DEFAULT_SIGNALS at their defaults);
    where the interpreter lacks it (PyPy), with a ``subprocess.Popen`` that is
    kept referenced forever and never asked about its child, so that it never
    reaps it (a collected Popen of a running child is polled by the next one)."""
    if hasattr(os, "posix_spawn"):
        return os.posix_spawn(argv[0], argv, os.environ, setsigdef=DEFAULT_SIGNALS)
    proc = subprocess.Popen(argv, restore_signals=True)
    _kept.append(proc)
    return proc.pid


def sh(script: str) -> int:
    """:func:`start` ``/bin/sh -c script``."""
    return start(["/bin/sh", "-c", script])
