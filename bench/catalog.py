"""What ``bench/run.py`` measures, by name: its rows, its loops, its paths.

The worker, the driver and the report agree through this module on the
watchers' names (``raw``, ``raw+pidfds``, ``cw:KIND``, ``alt:KIND``,
``std:KIND``), the end-to-end configurations, the loops of the scale run,
childwatch's default watcher and where results are written.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, List, Tuple

from common import KINDS, STDLIB_HAS_WATCHERS

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_DIR = BENCH / "results"
PY = "{}.{}".format(*sys.version_info[:2])
PRIMARY_PYTHON = "3.11"
"""Its latest full run leads RESULTS.md and draws ``cost_curve.png``; the others follow."""

RAW_PIDFDS = "raw+pidfds"
"""The raw loop again, holding (not polling) a pidfd per idle child: the cost
curve's floor for any watcher with a pidfd per child (the kernel copies the fd
table at every spawn and closes the close-on-exec fds at every exec)."""
RAW_NAMES = ("raw", RAW_PIDFDS)
SCANNING = ("std:Safe", "std:MultiLoop")
"""asyncio's watchers that call ``waitpid`` for every registered child at each
SIGCHLD: with 10,000 idle children the cost curve churns fewer through them."""


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def has_pidfd() -> bool:
    try:
        fd = os.pidfd_open(os.getpid())
    except (AttributeError, OSError):
        return False
    os.close(fd)
    return True


def default_kind() -> str:
    """The kind of watcher ``childwatch.default_watcher(loop)`` makes on a stdlib loop.

    (Threaded since 0.2.0; before, Pidfd where pidfds work, else Threaded, the
    rule used when childwatch has no ``default_watcher``.)
    ``CHILDWATCH_BENCH_DEFAULT=Pidfd`` overrides it.
    """
    override = os.environ.get("CHILDWATCH_BENCH_DEFAULT")
    if override:
        return override
    w = new_default_watcher(None)
    kind = type(w).__name__.replace("ChildWatcher", "")
    w.close()
    return kind


def new_default_watcher(loop: Any) -> Any:
    import asyncio

    import childwatch

    override = os.environ.get("CHILDWATCH_BENCH_DEFAULT")
    if override:
        w = getattr(childwatch, override + "ChildWatcher")()
        if loop is not None:
            w.attach_loop(loop)
        return w
    own = loop is None
    if own:
        loop = asyncio.new_event_loop()
    try:
        if hasattr(childwatch, "default_watcher"):
            w = childwatch.default_watcher(loop)
        else:
            w = (childwatch.PidfdChildWatcher if has_pidfd() else childwatch.ThreadedChildWatcher)()
            w.attach_loop(loop)
    finally:
        if own:
            loop.close()
    return w


def watcher_names() -> List[str]:
    names = ["raw"] + ([RAW_PIDFDS] if has_pidfd() else [])
    for kind in KINDS:
        names.append("cw:" + kind)
        if STDLIB_HAS_WATCHERS:
            names.append("std:" + kind)
    return names


def e2e_configs() -> List[str]:
    configs = ["asyncio:default", "asyncio:childwatch"]
    if STDLIB_HAS_WATCHERS:
        configs.append("asyncio:std-pidfd")
    configs += ["uvloop", "trio"]
    return configs


SCALE_LOOPS = ("asyncio", "uvloop", "trio-asyncio")


def scale_cells(names: List[str]) -> List[Tuple[str, str]]:
    """(watcher, loop) of the scale run: the raw loop once (no event loop), every
    childwatch watcher on each of :data:`SCALE_LOOPS`, asyncio's on asyncio's own."""
    cells: List[Tuple[str, str]] = []
    for name in names:
        if name == "raw":
            cells.append((name, ""))
        elif name.startswith(("cw:", "alt:")):
            cells += [(name, loop) for loop in SCALE_LOOPS]
        elif name.startswith("std:"):
            cells.append((name, "asyncio"))
    return cells
