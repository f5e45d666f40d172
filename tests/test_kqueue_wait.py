"""``wait_pid`` through a real kqueue: macOS and the BSDs only (skipped on Linux).

Free of ``conftest.py`` (whose leak check reads ``/proc``), so that a macOS or
BSD runner can run it alone: ``pytest --noconftest tests/test_kqueue_wait.py``.
Never run here: no macOS or BSD machine can be had (see the README's "macOS
and the BSDs: simulated, not run"); ``test_simulated_kernels.py`` replays
those kernels' orderings instead.
"""

from __future__ import annotations

import asyncio
import select
import subprocess
import sys

import pytest

from childwatch import _syscalls, wait_pid

pytestmark = pytest.mark.skipif(
    not hasattr(select, "KQ_FILTER_PROC"),
    reason="no kqueue with EVFILT_PROC here (macOS and the BSDs have one)",
)


def test_the_exit_queue_turns_readable_when_the_child_exits() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        queue = _syscalls.open_exit_queue(child.pid)
        try:
            assert select.select([queue.fileno()], [], [], 0)[0] == []
            assert child.stdin is not None
            child.stdin.close()  # the child exits
            assert select.select([queue.fileno()], [], [], 10)[0] == [queue.fileno()]
        finally:
            queue.close()
    finally:
        assert child.wait(10) == 0


@pytest.mark.parametrize("code", [0, 3, 255])
def test_wait_pid_returns_the_exit_code_and_reaps(code: int) -> None:
    child = subprocess.Popen([sys.executable, "-c", f"import sys, time; time.sleep(0.2); sys.exit({code})"])

    async def main() -> int:
        return await asyncio.wait_for(wait_pid(child), 10)

    assert asyncio.run(main()) == code
    with pytest.raises(ChildProcessError):
        _syscalls.peek(child.pid)  # reaped
