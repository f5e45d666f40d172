"""Thousands of live children under the usual soft RLIMIT_NOFILE of 1024.

Each case runs ``scale_child.py`` in a fresh interpreter (the limit is
lowered there, and trio-asyncio patches asyncio on import), which registers
every child from the running loop, releases them all at once and reports
what it saw.  Here: every status exact and delivered once, in the loop's
thread, to a child still a zombie; at most two watcher threads (one, the
fd-less waiter, when the children are registered from a loop); the watcher
within its share of the fd limit, so that the application can still open
files; nothing left behind (no child, thread or fd).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from childwatch._fds import DEFAULT_FD_SHARE

SCRIPT = Path(__file__).with_name("scale_child.py")
SOFT_LIMIT = 1024


def scale(watcher: str, loop: str, n: int, *flags: str) -> Dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), watcher, loop, str(n), *flags],
        capture_output=True,
        text=True,
        timeout=180,  # (PyPy under the matrix's load spawns 3,000 children in 60-90 s)
        check=False,
    )
    if done.returncode == 77:
        pytest.skip(done.stdout.strip())
    assert done.returncode == 0, done.stdout + done.stderr
    figures: Dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return figures


def check(figures: Dict[str, Any], n: int, fd_share: float) -> None:
    assert figures["soft_limit"] == SOFT_LIMIT
    assert figures["delivered"] == n, figures
    assert figures["exact"], figures["wrong"]
    assert figures["twice"] == 0, "a child delivered twice"
    assert figures["not_zombie"] == 0, "a child reaped before its callback"
    assert figures["off_loop_thread"] == 0, "a callback outside the registering loop's thread"
    assert figures["max_watcher_threads"] <= 2, figures
    assert figures["max_watcher_fds"] <= SOFT_LIMIT * fd_share, figures
    # The interpreter and its loop hold a few dozen fds; the rest is the application's.
    assert figures["free_fds_while_watching"] >= SOFT_LIMIT * (1 - fd_share) - 64, figures
    assert (figures["left_threads"], figures["left_fds"], figures["left_children"]) == (0, 0, []), figures


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "trio-asyncio"])
@pytest.mark.parametrize("watcher", ["default", "threaded"])
def test_thousands_of_children(watcher: str, loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    figures = scale(watcher, loop, 3000)
    check(figures, 3000, DEFAULT_FD_SHARE)
    # Registered from the running loop: pidfds read by the loop itself within the
    # share (no thread), the rest to the one fd-less waiter thread.
    assert figures["pidfds"] == 0, "no child in the pidfd waiter thread"
    assert figures["in_loop_pidfds"] >= SOFT_LIMIT * DEFAULT_FD_SHARE - 8, figures
    assert figures["max_watcher_threads"] == 1, "the fd-less waiter ran: the children beyond the share"


def test_a_foreign_zombie_hides_every_exit() -> None:
    """A child nobody registered, left an unreaped zombie throughout: the
    fd-less waiter's ``waitid(P_ALL)`` shows it first, again and again; the
    children beyond the pidfd share are found by checking them one by one,
    and the stranger is left alone, its status intact."""
    figures = scale("threaded", "asyncio", 1500, "--foreign")
    check(figures, 1500, DEFAULT_FD_SHARE)
    assert figures["foreign_status"] == 42


def test_no_fd_at_all() -> None:
    """``fd_share=0``: not one fd, every child to the fd-less waiter."""
    figures = scale("fdless", "asyncio", 1500)
    check(figures, 1500, 0)
    assert figures["max_watcher_threads"] == 1
