"""Pids reused at once: a pid namespace with a small pid space (tests/pid_reuse_child.py).

asyncio subprocesses signalled right around their exit (on 3.9-3.12
``Popen.send_signal()`` polls, and so reaps the child itself), with bystander
subprocesses starting on the freed pids, and children registered directly.
Needs root (``unshare -p``) and Linux 6.14+ (a pid namespace's own
``pid_max``); skipped with the reason elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from conftest import in_pid_namespace

SCRIPT = Path(__file__).with_name("pid_reuse_child.py")


def in_small_pid_space(watcher_cls: Any, mode: str, rounds: int) -> Dict[str, Any]:
    name = watcher_cls.__name__[: -len("ChildWatcher")]
    args = [str(SCRIPT), name, mode, str(rounds), "60"]
    return in_pid_namespace(args, mount_proc=True, timeout=120)


def test_asyncio_subprocesses_signalled_around_their_exit(watcher_cls: Any) -> None:
    """600 killer rounds: no wait hangs, every status is the exit code or
    -SIGUSR1, and no bystander is ever signalled through a reused pid."""
    report = in_small_pid_space(watcher_cls, "subprocesses", 600)
    assert report["rounds"] == 600, report
    assert report["pids_reused"] >= report["pids"] - report["free_pids"], report  # every pid came back
    assert (report["hung"], report["wrong"], report["loud_255"]) == (0, [], 0), report
    assert report["statuses"] == report["exact"] == 600, report
    assert report["bystanders"] > 0 and report["bystanders_hit"] == 0, report


def test_children_registered_directly(watcher_cls: Any) -> None:
    """1,000 children with random exit codes and signals, nearly every pid a reused one: all exact."""
    report = in_small_pid_space(watcher_cls, "direct", 125)
    assert report["pids"] == 1000 and report["pids_reused"] >= 1000 - report["free_pids"], report
    assert (report["hung"], report["wrong"], report["loud_255"]) == (0, [], 0), report
    assert report["statuses"] == report["exact"] == 1000, report
