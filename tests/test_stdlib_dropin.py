"""childwatch watchers driving the stdlib loop's own subprocesses.

3.9–3.13: through asyncio's policy (``asyncio.set_child_watcher``).
3.14+:    through the loop's private ``_watcher``, the only hook left, which
          the loop calls with no ``with`` block and no ``attach_loop``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import warnings
import weakref
from pathlib import Path
from typing import Any, List, Optional

import pytest

import childwatch
from conftest import Collector, run, spawn_sleeper

NEW_STDLIB = sys.version_info >= (3, 14)


def recording(watcher_cls: Any, seen: List[int]) -> Any:
    class Recording(watcher_cls):  # type: ignore[misc,valid-type]
        def add_child_handler(self, pid: int, callback: Any, *args: Any) -> None:
            seen.append(pid)
            super().add_child_handler(pid, callback, *args)

    return Recording()


async def exercise() -> List[int]:
    codes = []
    for code in (0, 3, 255):
        proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
        codes.append(await asyncio.wait_for(proc.wait(), 30))
    proc = await asyncio.create_subprocess_exec("sleep", "1000")
    proc.kill()
    codes.append(await asyncio.wait_for(proc.wait(), 30))
    out = await asyncio.create_subprocess_exec("echo", "hi", stdout=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(out.communicate(), 30)
    codes.append(out.returncode)
    assert stdout == b"hi\n"
    return [c for c in codes if c is not None]


@pytest.mark.skipif(NEW_STDLIB, reason="asyncio has no set_child_watcher on 3.14+")
def test_asyncio_set_child_watcher_drives_subprocesses(watcher_cls: Any) -> None:
    seen: List[int] = []
    watcher = recording(watcher_cls, seen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12/3.13 deprecate the call itself
        asyncio.set_child_watcher(watcher)  # type: ignore[attr-defined]
    try:
        assert asyncio.run(exercise()) == [0, 3, 255, -9, 0]
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_child_watcher(None)  # type: ignore[attr-defined]
    assert len(seen) == 5
    assert "closed" in repr(watcher)  # the policy closed it


@pytest.mark.skipif(not NEW_STDLIB, reason="the loop's own watcher hook exists on 3.14+")
def test_loop_private_watcher_hook_on_new_stdlib(watcher_cls: Any) -> None:
    seen: List[int] = []
    watcher = recording(watcher_cls, seen)
    loop = asyncio.new_event_loop()
    try:
        assert hasattr(loop, "_watcher")
        loop._watcher = watcher  # type: ignore[attr-defined]
        assert loop.run_until_complete(exercise()) == [0, 3, 255, -9, 0]
    finally:
        loop.close()
        watcher.close()
    assert len(seen) == 5


# -- asyncio's watcher lifecycle, as its policy and CPython's own tests drive it ------------


@pytest.mark.skipif(NEW_STDLIB, reason="asyncio's policy has no child watcher on 3.14+")
def test_policy_flow_new_loop_new_watcher_three_rounds(watcher_cls: Any) -> None:
    """The flow drop-in code runs on 3.9-3.13: each round sets a new loop (the
    policy re-attaches the watcher it holds, closed by the previous round),
    attaches and sets a new watcher (the policy closes the old one, attached to
    this very loop), runs a subprocess and closes loop and watcher.  asyncio's
    own Safe and Fast hang here from round 2: closing the old watcher removes the
    new one's SIGCHLD handler from the shared loop."""
    policy = asyncio.get_event_loop_policy()
    watchers = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            for code in (3, 4, 5):
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
                watcher = watcher_cls()
                watchers.append(watcher)
                watcher.attach_loop(loop)
                asyncio.set_child_watcher(watcher)  # type: ignore[attr-defined]

                async def child(code: int = code) -> Optional[int]:
                    proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
                    return await asyncio.wait_for(proc.wait(), 10)

                assert loop.run_until_complete(child()) == code
                assert policy.get_child_watcher() is watcher  # type: ignore[attr-defined]
                loop.close()
                watcher.close()
            asyncio.set_child_watcher(None)  # type: ignore[attr-defined]
            watcher.attach_loop(None)
        finally:
            asyncio.set_event_loop(None)
            asyncio.set_child_watcher(None)  # type: ignore[attr-defined]
            for watcher in watchers:
                watcher.close()


@pytest.mark.skipif(NEW_STDLIB, reason="asyncio's policy has no child watcher on 3.14+")
def test_save_and_restore_through_the_policy(watcher_cls: Any) -> None:
    """``saved = get_child_watcher(); set_child_watcher(other); ...;
    set_child_watcher(saved)``: the policy closed ``saved`` when ``other`` came;
    set again, it is used again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        first = watcher_cls()
        asyncio.set_child_watcher(first)  # type: ignore[attr-defined]
        try:
            saved = asyncio.get_child_watcher()  # type: ignore[attr-defined]
            asyncio.set_child_watcher(childwatch.ThreadedChildWatcher())  # type: ignore[attr-defined]
            assert asyncio.run(exercise()) == [0, 3, 255, -9, 0]
            asyncio.set_child_watcher(saved)  # type: ignore[attr-defined]
            assert "closed" in repr(saved)  # the policy closed it when the other came
            assert asyncio.run(exercise()) == [0, 3, 255, -9, 0]
        finally:
            asyncio.set_child_watcher(None)  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize("spawn", [False, True], ids=["idle", "one-subprocess-each"])
def test_a_thousand_abandoned_watchers_leave_nothing(watcher_cls: Any, spawn: bool) -> None:
    """1,000 event loop policies each create a watcher and abandon it (policies
    never close theirs), in a fresh interpreter under RLIMIT_NOFILE 1024: no
    thread, fd or zombie is left, and no idle watcher held any while still
    referenced (3.14+: the watcher set on each loop instead)."""
    script = Path(__file__).with_name("abandoned_watchers_child.py")
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            "childwatch",
            watcher_cls.__name__[: -len("ChildWatcher")],
            "1000",
            str(int(spawn)),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert (report["threads"], report["fds"], report["zombies"]) == (0, 0, []), report
    assert report["held_while_idle"] == {"fds": 0, "threads": 0}, report


def test_a_dropped_watcher_delivers_its_children_then_goes(watcher_cls: Any) -> None:
    """A watcher dropped without close() while a child is registered still
    delivers it (what watches the child holds the watcher), and is then
    garbage-collected with nothing left behind (the leak check)."""
    got = Collector()
    ref: List[Any] = []

    async def main() -> None:
        watcher = watcher_cls()
        pid = spawn_sleeper()
        watcher.add_child_handler(pid, got)
        ref.append(weakref.ref(watcher))
        del watcher
        gc.collect()
        os.kill(pid, signal.SIGTERM)
        assert await got.wait(1, timeout=10) == {pid: -signal.SIGTERM}

    run("asyncio", main)
    gc.collect()
    assert ref[0]() is None, "the watcher outlived its last child and its loop"
    if watcher_cls is childwatch.MultiLoopChildWatcher:
        # Its process-wide handler stays (dispatching to nobody) until another
        # MultiLoop watcher is closed in the main thread.
        assert signal.getsignal(signal.SIGCHLD) is not signal.SIG_DFL
        other, loop = childwatch.MultiLoopChildWatcher(), asyncio.new_event_loop()
        other.attach_loop(loop)
        other.close()
        loop.close()
        assert signal.getsignal(signal.SIGCHLD) is signal.SIG_DFL
