"""childwatch watchers driving the stdlib loop's own subprocesses.

3.9–3.13: through asyncio's policy (``asyncio.set_child_watcher``).
3.14+:    through the loop's private ``_watcher``, the only hook left, which
          the loop calls with no ``with`` block and no ``attach_loop``.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
from typing import Any, List

import pytest

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
