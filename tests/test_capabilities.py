"""The capability record: every "supported" is exercised, every "unsupported" shown to fail."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest
from test_loops import Recording, spawn_and_wait

import childwatch
from conftest import Collector, reap, run, spawn_exit, spawn_sleeper


def test_record_is_frozen_and_json_serialisable() -> None:
    caps = childwatch.capabilities()
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.loop = "other"  # type: ignore[misc]
    data = json.loads(caps.to_json())
    assert data == caps.to_dict()
    assert data["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(data["mechanisms"]) == {"pidfd", "waitid", "kqueue", "sigchld"}
    assert set(data["watchers"]) == {
        "SafeChildWatcher",
        "FastChildWatcher",
        "MultiLoopChildWatcher",
        "ThreadedChildWatcher",
        "PidfdChildWatcher",
    }


def test_cheap_no_process_spawned(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("capabilities() must not start a process")

    for name in ("fork", "posix_spawn", "posix_spawnp"):
        monkeypatch.setattr(os, name, forbidden, raising=False)
    monkeypatch.setattr(subprocess.Popen, "__init__", forbidden)

    async def main() -> None:
        childwatch.capabilities()

    asyncio.run(main())
    childwatch.capabilities()


def test_bad_loop_argument() -> None:
    with pytest.raises(TypeError, match="loop must be an asyncio event loop"):
        childwatch.capabilities("loop")  # type: ignore[arg-type]
    closed = asyncio.new_event_loop()
    closed.close()
    with pytest.raises(RuntimeError, match="closed event loop"):
        childwatch.capabilities(closed)


def test_every_claim_holds(loop_name: str) -> None:
    async def main() -> None:
        caps = childwatch.capabilities()
        assert caps.loop == loop_name
        assert (
            caps.loop_class
            == f"{type(asyncio.get_running_loop()).__module__}.{type(asyncio.get_running_loop()).__qualname__}"
        )
        for name, support in caps.watchers:
            watcher = getattr(childwatch, name)()
            try:
                if support.supported:
                    got = Collector()
                    pid = spawn_exit(17)
                    watcher.add_child_handler(pid, got)
                    assert await got.wait(1) == {pid: 17}, name
                else:
                    pid = spawn_sleeper()
                    with pytest.raises(
                        childwatch.UnsupportedLoopError, match=re.escape(support.reason or "")
                    ):
                        watcher.add_child_handler(pid, Collector())
                    assert reap(pid) == -9
            finally:
                watcher.close()
        rec = Recording(childwatch.ThreadedChildWatcher)
        try:
            if caps.custom_watcher.supported:
                childwatch.set_child_watcher(rec.watcher)
                assert await spawn_and_wait(21) == 21
                assert rec.seen
                childwatch.set_child_watcher(None)
            else:
                with pytest.raises(
                    childwatch.UnsupportedLoopError, match=re.escape(caps.custom_watcher.reason or "")
                ):
                    childwatch.set_child_watcher(rec.watcher)
        finally:
            rec.watcher.close()
        assert caps.subprocesses.supported
        assert await spawn_and_wait(22) == 22
        default = childwatch.default_watcher()
        assert type(default).__name__ == caps.recommended
        default.close()

    run(loop_name, main)


def test_default_watcher_choice() -> None:
    outside = childwatch.default_watcher()
    assert type(outside) is childwatch.ThreadedChildWatcher
    outside.close()

    async def main() -> Any:
        return childwatch.default_watcher()

    inside = asyncio.run(main())
    assert type(inside) is childwatch.ThreadedChildWatcher  # scales past the fd limit, on every loop
    inside.close()


def test_plain_trio_claims() -> None:
    trio = pytest.importorskip("trio")
    from childwatch.capabilities import trio_capabilities

    caps = trio_capabilities()
    watchers = dict(caps.watchers)

    async def main() -> None:
        token = trio.lowlevel.current_trio_token()
        for name, support in watchers.items():
            watcher = getattr(childwatch, name)()
            try:
                if support.supported:
                    done = trio.Event()
                    got = Collector()

                    def callback(pid: int, rc: int, got: Collector = got, done: Any = done) -> None:
                        got(pid, rc)
                        token.run_sync_soon(done.set)

                    pid = spawn_exit(23)
                    watcher.add_child_handler(pid, callback)
                    with trio.fail_after(30):
                        await done.wait()
                    assert got.results == {pid: 23}
                else:
                    pid = spawn_sleeper()
                    with pytest.raises(RuntimeError, match="needs an event loop"):
                        watcher.add_child_handler(pid, Collector())
                    assert reap(pid) == -9
            finally:
                watcher.close()
        # No custom watcher: one set for asyncio's loops does not touch trio's subprocesses.
        rec = Recording(childwatch.ThreadedChildWatcher)
        childwatch.set_child_watcher(rec.watcher, helper_loop)
        proc = await trio.run_process(["sh", "-c", "exit 4"], check=False)
        assert (proc.returncode, rec.seen) == (4, [])
        rec.watcher.close()

    assert not caps.custom_watcher.supported
    helper_loop = asyncio.new_event_loop()
    try:
        trio.run(main)
    finally:
        helper_loop.close()


def test_no_waitid_means_no_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where neither os nor the C library gives waitid (macOS's and the BSDs' Python,
    say), the record says so and calls every watcher unsupported, with the reason."""
    monkeypatch.setattr(childwatch._mechanisms, "missing", lambda: ["waitid", "pidfd_open"])
    caps = childwatch.capabilities()
    assert dict(caps.mechanisms)["waitid"] is False
    for name, support in caps.watchers:
        assert not support.supported and "waitid" in str(support.reason), name
