"""``wait_pid`` on simulated macOS, FreeBSD and OpenBSD kernels (``fake_kernels.py``).

Simulated, never run on a real macOS or BSD kernel: each test replays one of
the orderings :class:`fake_kernels.Platform` lists, and childwatch's real
code above the syscall layer's seam meets it.  On every platform the rule is
the same as on Linux: the status is read without reaping (the kernel sees
that kernel's WNOWAIT), returned, and only then is the child reaped, once.
"""

from __future__ import annotations

import asyncio
from typing import List

import pytest
from fake_kernels import MACOS, PLATFORMS, FakeKernel

from childwatch import wait_pid
from conftest import run

TIMEOUT = 10.0


@pytest.fixture(params=sorted(PLATFORMS))
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    fake = FakeKernel(PLATFORMS[request.param])
    fake.install(monkeypatch)
    return fake


def reads_then_one_reap(kernel: FakeKernel, pid: int) -> List[str]:
    """``pid``'s events, checked to end with the status read, then its one reap."""
    events = [line for line in kernel.log if line.split()[1] == str(pid)]
    assert events[-2:] == [f"read {pid} exited", f"reaped {pid}"]
    assert events.count(f"reaped {pid}") == 1
    assert kernel.open_queues() == []
    return events


async def until_waiting(kernel: FakeKernel, pid: int, task: asyncio.Task[int]) -> None:
    """Let ``task`` (a ``wait_pid(pid)``) run until it waits on its exit queue."""
    while f"registered {pid}" not in kernel.log:
        assert not task.done()
        await asyncio.sleep(0.001)


def test_an_exit_while_waiting_is_delivered_then_reaped(kernel: FakeKernel) -> None:
    """The exit note wakes the waiter; on macOS it comes before waitid sees the
    exit (the simulated kernel answers "nothing" three times after it), and
    ``wait_pid`` polls until it does."""
    pid = kernel.spawn()

    async def main() -> int:
        task = asyncio.ensure_future(wait_pid(pid))
        await until_waiting(kernel, pid, task)
        kernel.exit(pid, 3)
        return await task

    assert run("asyncio", main, TIMEOUT) == 3
    events = reads_then_one_reap(kernel, pid)
    assert events.count(f"read {pid} nothing yet") == kernel.platform.empty_reads_after_note
    assert events.index(f"noted {pid}") < events.index(f"read {pid} exited")


def test_a_child_exiting_as_it_is_registered(kernel: FakeKernel) -> None:
    """The child exits between ``wait_pid``'s check that it is a child and its
    registration of the exit note: macOS and OpenBSD refuse it (ESRCH) and
    would never fire, so ``wait_pid`` polls; FreeBSD accepts it and fires at once."""
    pid = kernel.spawn()
    kernel.exit_after_reads(pid, 1, 9)

    assert run("asyncio", lambda: wait_pid(pid), TIMEOUT) == 9
    events = reads_then_one_reap(kernel, pid)
    answer = "refused" if kernel.platform.refuses_exiting else "registered"
    assert events[:3] == [f"read {pid} running", f"noted {pid}", f"{answer} {pid}"]


def test_the_whole_exit_value_is_masked_to_8_bits(kernel: FakeKernel) -> None:
    """FreeBSD's si_status holds all 32 bits given to ``_exit()``; a returncode is the low 8."""
    pid = kernel.spawn()
    kernel.exit(pid, 0x12345)
    assert run("asyncio", lambda: wait_pid(pid), TIMEOUT) == 0x45
    reads_then_one_reap(kernel, pid)


def test_a_stopped_child_is_waited_for_until_it_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS's ``waitid(WEXITED | WNOHANG | WNOWAIT)`` has been reported to
    return a stopped child: that is no exit, and ``wait_pid`` waits on."""
    kernel = FakeKernel(MACOS)
    kernel.install(monkeypatch)
    pid = kernel.spawn()
    kernel.stop(pid)

    async def main() -> int:
        task = asyncio.ensure_future(wait_pid(pid))
        await until_waiting(kernel, pid, task)
        for _ in range(20):
            await asyncio.sleep(0.001)
        assert not task.done()
        kernel.exit(pid, 0)
        return await task

    assert run("asyncio", main, TIMEOUT) == 0
    events = reads_then_one_reap(kernel, pid)
    assert f"read {pid} stopped" in events


def test_only_this_kernels_flags_are_passed(kernel: FakeKernel) -> None:
    """A flag of another kernel is EINVAL for the simulated one (Linux's WNOWAIT
    is no flag on Darwin): reading and reaping pass the installed kernel's."""
    from childwatch import _syscalls

    pid = kernel.spawn()
    kernel.exit(pid, 5)
    for _ in range(kernel.platform.empty_reads_after_note):
        assert _syscalls.peek(pid) is None
    assert _syscalls.peek(pid) == 5
    assert _syscalls.peek(pid) == 5  # not reaped by a read
    _syscalls.reap(pid)
    with pytest.raises(ChildProcessError):
        _syscalls.peek(pid)
    with pytest.raises(OSError, match="not"):
        kernel.waitid(_syscalls.LINUX.P_PID, pid, _syscalls.LINUX.WEXITED | _syscalls.LINUX.WNOWAIT)


def test_capabilities_answer_per_watcher_with_reasons(kernel: FakeKernel) -> None:
    """What this process can do on the simulated kernel: waitid and the kqueue
    exit note, no pidfd.  Pidfd is unsupported, for that reason; every other
    watcher is unknown until a probe with a real child, for never having run
    on such a kernel (childwatch's own reason, not the platform's name alone)."""
    from childwatch import capabilities

    loop = asyncio.new_event_loop()
    try:
        record = capabilities(loop)
    finally:
        loop.close()
    assert dict(record.mechanisms) == {"pidfd": False, "waitid": True, "kqueue": True, "sigchld": True}
    answers = dict(record.watchers)
    pidfd = answers.pop("PidfdChildWatcher")
    assert pidfd.status == "unsupported"
    system = kernel.abi.system
    assert pidfd.reason is not None and f"no pidfd_open on {system}: pidfds are Linux's" in pidfd.reason
    for name, answer in answers.items():
        assert answer.status == "unknown", name
        assert answer.reason is not None and f"never run on a real {system} kernel" in answer.reason, name
        assert "probe" in answer.reason
    assert record.recommended == "ThreadedChildWatcher"
    assert kernel.open_queues() == []
