"""A flood of SIGCHLD cannot take the loop over (issue 28).

Eight threads churn ``subprocess.run`` beside an asyncio program whose own
children one watcher reaps, on the stdlib loop, with the application's own
``add_signal_handler`` added after the watcher (which makes the wake-up fd
warn again).  Python warns for each signal that finds the wake-up pipe full,
from the main thread; under such a flood the warnings cost more than the
interval between signals and the loop stalls (asyncio's own SafeChildWatcher
too).  Every watcher must finish every child with its exact status, and no
such warning may appear.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("flood_child.py")
FULL_PIPE_WARNING = "Exception ignored when trying to write to the signal wakeup fd"
THREADS, ROUNDS, CONCURRENCY = 8, 4, 32


@pytest.mark.timeout(300)
@pytest.mark.parametrize("watcher", ["Safe", "Fast", "MultiLoop", "Threaded", "Pidfd"])
def test_a_flood_of_exits_leaves_the_loop_working(watcher: str) -> None:
    out = subprocess.run(
        [sys.executable, str(CHILD), watcher, str(THREADS), str(ROUNDS), str(CONCURRENCY)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    warnings = out.stderr.count(FULL_PIPE_WARNING)
    assert warnings == 0, f"{warnings} full wake-up pipe warnings:\n{out.stderr[-2000:]}"
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["done"] == ROUNDS * CONCURRENCY and result["wrong"] == 0, result
