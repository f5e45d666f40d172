"""The capability record: every "supported" is exercised, every "unsupported" shown to fail."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
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
            assert support.status != "unknown", name  # childwatch knows these loops
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


def test_support_vocabulary() -> None:
    assert childwatch.Support("supported").supported
    assert childwatch.Support(True) == childwatch.Support("supported")  # the 0.2 spelling
    assert childwatch.Support(False, "why").status == "unsupported"
    assert not childwatch.Support("unknown", "why").supported
    assert childwatch.Support("unknown", "why").to_dict() == {
        "status": "unknown",
        "supported": False,
        "reason": "why",
    }
    for bad in ("yes", "no", "maybe"):
        with pytest.raises(ValueError, match="status must be one of supported, unsupported, unknown"):
            childwatch.Support(bad)
    for reasonless in ("unsupported", "unknown", False):
        with pytest.raises(ValueError, match="needs its reason"):
            childwatch.Support(reasonless)  # type: ignore[arg-type]


def test_a_loop_without_adapter_is_unknown_until_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module("childwatch.capabilities")
    monkeypatch.setattr(module, "adapter_for", lambda loop: None)
    loop = asyncio.new_event_loop()
    try:
        caps = childwatch.capabilities(loop)
        watchers = dict(caps.watchers)
        for name in ("SafeChildWatcher", "FastChildWatcher", "MultiLoopChildWatcher"):
            assert watchers[name].status == "unknown"
            assert "capabilities(probe=True)" in (watchers[name].reason or "")
        assert caps.subprocesses.status == "unknown"
        assert caps.custom_watcher.status == "unsupported"
        assert "no adapter" in (caps.custom_watcher.reason or "")
        probed = childwatch.capabilities(loop, probe=True)  # stdlib asyncio: all of them work
        assert {support.status for _, support in probed.watchers} == {"supported"}
        assert probed.subprocesses.status == "supported"

        async def inside() -> None:
            with pytest.raises(RuntimeError, match="runs the loop"):
                childwatch.capabilities(probe=True)

        loop.run_until_complete(inside())
    finally:
        loop.close()


class NoReaderLoop(asyncio.SelectorEventLoop):  # type: ignore[misc, valid-type, unused-ignore]
    """A loop whose public add_reader is missing, as asyncio's base class has it."""

    def add_reader(self, *args: Any) -> None:
        raise NotImplementedError


class NoSubprocessLoop(asyncio.SelectorEventLoop):  # type: ignore[misc, valid-type, unused-ignore]
    _make_subprocess_transport = asyncio.BaseEventLoop._make_subprocess_transport


def test_probed_refusals_hold() -> None:
    loop = NoReaderLoop()
    try:
        caps = childwatch.capabilities(loop)
        watchers = dict(caps.watchers)
        for name in ("PidfdChildWatcher", "MultiLoopChildWatcher"):
            assert watchers[name].status == "unsupported", name
            assert "has no add_reader (NotImplementedError)" in (watchers[name].reason or "")
        assert caps.recommended == "ThreadedChildWatcher"

        async def main() -> None:
            for name in ("PidfdChildWatcher", "MultiLoopChildWatcher"):
                watcher = getattr(childwatch, name)()
                pid = spawn_sleeper()
                try:
                    with pytest.raises(NotImplementedError):
                        watcher.add_child_handler(pid, Collector())
                finally:
                    watcher.close()
                    assert reap(pid) == -9
            default = childwatch.default_watcher()
            assert type(default) is childwatch.ThreadedChildWatcher
            got = Collector()
            pid = spawn_exit(5)
            default.add_child_handler(pid, got)
            assert await got.wait(1) == {pid: 5}
            default.close()

        loop.run_until_complete(main())
    finally:
        loop.close()
    loop = NoSubprocessLoop()
    try:
        caps = childwatch.capabilities(loop)
        assert caps.subprocesses.status == "unsupported"
        assert "does not implement _make_subprocess_transport" in (caps.subprocesses.reason or "")
        with pytest.raises(NotImplementedError):
            loop.run_until_complete(spawn_and_wait(3))
    finally:
        loop.close()


class NotALoop:
    """Something asyncio could be told runs, with none of a loop's methods."""

    def is_closed(self) -> bool:
        return False


class DuckLoop:
    """A loop that subclasses nothing, as rsloop's PyLoop: every method is a real
    loop's, called through the duck (callbacks run in the real loop)."""

    def __init__(self) -> None:
        self.real = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_duck_typed_loop_is_a_loop() -> None:
    duck = DuckLoop()
    assert not isinstance(duck, asyncio.AbstractEventLoop)
    try:
        caps = childwatch.capabilities(duck)  # type: ignore[arg-type]
        assert caps.loop_class.endswith("DuckLoop")
        assert caps.custom_watcher.status == "unsupported"
        assert "no adapter" in (caps.custom_watcher.reason or "")
        assert dict(caps.watchers)["ThreadedChildWatcher"].status == "supported"

        async def main() -> int:
            watcher = childwatch.ThreadedChildWatcher()
            watcher.attach_loop(duck)  # type: ignore[arg-type]
            try:
                exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                pid = spawn_exit(7)
                watcher.add_child_handler(pid, lambda _, rc: duck.call_soon_threadsafe(exited.set_result, rc))
                return await exited
            finally:
                watcher.close()

        assert duck.run_until_complete(asyncio.wait_for(main(), 30)) == 7
    finally:
        duck.close()


def test_a_running_object_that_is_no_loop() -> None:
    import asyncio.events

    asyncio.events._set_running_loop(NotALoop())  # type: ignore[arg-type]
    try:
        with pytest.raises(TypeError, match="loop must be an asyncio event loop or None, not NotALoop"):
            childwatch.capabilities()
    finally:
        asyncio.events._set_running_loop(None)
    with pytest.raises(TypeError, match="loop must be an asyncio event loop or None, not NotALoop"):
        childwatch.PidfdChildWatcher().attach_loop(NotALoop())  # type: ignore[arg-type]
