"""trio-asyncio on Python 3.14+: why no trio-asyncio loop runs there (releases up to 0.16).

Checked against trio-asyncio 0.16.0 (and its git master, the same code) on
CPython 3.14 and 3.15.  :func:`childwatch.legacy.install` restores
``asyncio.AbstractChildWatcher``, the one *public* asyncio name trio-asyncio
lacks there; the two obstacles left are trio-asyncio's own, and no asyncio name
childwatch could put back removes them:

1. ``trio_asyncio/_loop.py`` subclasses ``asyncio.events.BaseDefaultEventLoopPolicy``,
   which 3.14 renamed ``_BaseDefaultEventLoopPolicy``.  It was never public (not
   in 3.13's ``asyncio.events.__all__``, not documented; python/cpython#131148),
   so :mod:`childwatch.legacy` does not restore it.
2. Its ``TrioEventLoop`` runs asyncio callbacks (``BaseTrioEventLoop._main_loop_one``,
   ``trio_asyncio/_base.py`` line 776: ``obj._run()``) without making itself the
   running loop of the thread with ``asyncio._set_running_loop``; it only patches
   ``asyncio.get_running_loop``.  Since 3.14 (python/cpython#129898) a C-accelerated
   ``asyncio.Task`` refuses to take a step outside its running loop: ``enter_task()``
   in ``Modules/_asynciomodule.c`` compares the task's loop with the thread's
   running loop and raises ``RuntimeError: loop <TrioEventLoop ...> is not the
   running loop`` from the first step of every Task (``asyncio/events.py`` line 94,
   ``Handle._run``), so no coroutine completes, subprocesses' included.

The :data:`REASON` is what :func:`childwatch.capabilities` reports for such a loop
(its adapter's ``subprocess_refusal``) and what ``python -m childwatch`` reports
for trio-asyncio there, without importing it.
"""

from __future__ import annotations

import re
import sys
from typing import Optional, Tuple

from ._identity import distribution_version

LAST_CHECKED = (0, 16)
"""The newest trio-asyncio release (major, minor) known not to run on 3.14+."""

REASON = (
    "trio-asyncio 0.16 cannot run on Python 3.14+: it subclasses asyncio.events.BaseDefaultEventLoopPolicy, "
    "which 3.14 made private (never public, so childwatch.legacy does not restore it), and its TrioEventLoop "
    "runs asyncio callbacks without asyncio._set_running_loop(loop), so 3.14's asyncio.Task fails every step "
    "with 'RuntimeError: loop ... is not the running loop' and no coroutine or subprocess completes; "
    "trio-asyncio itself must change both"
)


def _release(version: str) -> Optional[Tuple[int, int]]:
    match = re.match(r"(\d+)\.(\d+)", version)
    return None if match is None else (int(match[1]), int(match[2]))


def refusal(python: Optional[Tuple[int, int]] = None, version: Optional[str] = None) -> Optional[str]:
    """:data:`REASON` if trio-asyncio ``version`` (default: the installed one) cannot
    run on ``python`` (default: this one), else None: on 3.9–3.13, where it is not
    installed, and for releases after :data:`LAST_CHECKED` (not known to fail)."""
    if python is None:
        python = (sys.version_info[0], sys.version_info[1])
    if version is None:
        version = distribution_version("trio-asyncio")
    if python < (3, 14) or version is None:
        return None
    release = _release(version)
    return REASON if release is not None and release <= LAST_CHECKED else None
