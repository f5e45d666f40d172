"""get/set_child_watcher on every loop family, and the adapter registry."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from typing import Any, List, Optional

import pytest

import childwatch
from childwatch.loops import LoopAdapter, register_loop_adapter
from conftest import Collector, reap, spawn_sleeper

NEW_STDLIB = sys.version_info >= (3, 14)
THREAD_SAFE_WATCHERS = [
    childwatch.ThreadedChildWatcher,
    childwatch.PidfdChildWatcher,
    childwatch.MultiLoopChildWatcher,
]


class Recording:
    """Wraps a watcher class so each add_child_handler call is recorded."""

    def __init__(self, cls: Any) -> None:
        seen: List[int] = []

        class Recorded(cls):  # type: ignore[misc,valid-type]
            def add_child_handler(self, pid: int, callback: Any, *args: Any) -> None:
                seen.append(pid)
                super().add_child_handler(pid, callback, *args)

        self.seen = seen
        self.watcher = Recorded()


async def spawn_and_wait(code: int = 7) -> int:
    proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
    return await asyncio.wait_for(proc.wait(), 30)


def default_after_reset() -> Optional[childwatch.AbstractChildWatcher]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return childwatch.get_child_watcher()


@pytest.fixture(autouse=True)
def restore_process_default() -> Any:
    yield
    if NEW_STDLIB:
        childwatch.set_child_watcher(None)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_child_watcher(None)  # type: ignore[attr-defined]


def test_set_then_get_on_the_running_stdlib_loop(watcher_cls: Any) -> None:
    rec = Recording(watcher_cls)

    async def main() -> None:
        childwatch.set_child_watcher(rec.watcher)
        assert childwatch.get_child_watcher() is rec.watcher
        assert childwatch.get_child_watcher(asyncio.get_running_loop()) is rec.watcher
        assert await spawn_and_wait(7) == 7
        assert await spawn_and_wait(0) == 0
        childwatch.set_child_watcher(None)
        assert childwatch.get_child_watcher() is not rec.watcher
        rec.watcher.close()  # not closed by the reset (Fast would go on reaping everything)
        assert await spawn_and_wait(3) == 3  # the loop's own default again

    asyncio.run(main())
    assert len(rec.seen) == 2


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is new in 3.11")
@pytest.mark.parametrize(
    "cls", [childwatch.SafeChildWatcher, childwatch.ThreadedChildWatcher, childwatch.PidfdChildWatcher]
)
def test_runner_with_loop_factory(cls: Any) -> None:
    """asyncio.Runner(loop_factory=...) never attaches asyncio's watcher; ours still works."""
    rec = Recording(cls)

    async def main() -> int:
        childwatch.set_child_watcher(rec.watcher)
        return await spawn_and_wait(42)

    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:  # type: ignore[attr-defined]
        assert runner.run(main()) == 42
    rec.watcher.close()
    assert len(rec.seen) == 1


@pytest.mark.parametrize("cls", [childwatch.ThreadedChildWatcher, childwatch.PidfdChildWatcher])
def test_each_loop_in_its_own_thread_uses_its_own_watcher(cls: Any) -> None:
    recs = [Recording(cls) for _ in range(2)]
    results: List[Any] = []

    def in_thread(rec: Recording, code: int) -> None:
        async def main() -> int:
            childwatch.set_child_watcher(rec.watcher)
            return await spawn_and_wait(code)

        try:
            results.append(asyncio.run(main()))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=in_thread, args=(rec, 10 + n)) for n, rec in enumerate(recs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for rec in recs:
        rec.watcher.close()
    assert sorted(results) == [10, 11]
    assert [len(rec.seen) for rec in recs] == [1, 1]


def test_process_wide_default_without_a_loop() -> None:
    rec = Recording(childwatch.ThreadedChildWatcher)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        childwatch.set_child_watcher(rec.watcher)
        assert childwatch.get_child_watcher() is rec.watcher
        if not NEW_STDLIB:
            assert asyncio.get_child_watcher() is rec.watcher  # type: ignore[attr-defined]
    assert asyncio.run(spawn_and_wait(5)) == 5  # a loop created afterwards
    assert len(rec.seen) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        childwatch.set_child_watcher(None)
    assert asyncio.run(spawn_and_wait(6)) == 6
    assert len(rec.seen) == 1
    rec.watcher.close()


@pytest.mark.skipif(not NEW_STDLIB, reason="3.14+ loops start without a childwatch watcher")
def test_new_stdlib_loop_reports_none_until_set() -> None:
    async def main() -> None:
        assert childwatch.get_child_watcher() is None

    asyncio.run(main())


def test_uvloop_refuses_custom_watchers() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        watcher = childwatch.ThreadedChildWatcher()
        try:
            with pytest.raises(
                childwatch.UnsupportedLoopError, match="uvloop reaps its own subprocesses through libuv"
            ):
                childwatch.set_child_watcher(watcher)
            with pytest.raises(NotImplementedError, match="uvloop"):
                childwatch.get_child_watcher()
        finally:
            watcher.close()
        # Its own subprocesses still work, reaped by libuv.
        assert await spawn_and_wait(9) == 9

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 60))
    finally:
        loop.close()


TRIO_ASYNCIO_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, subprocess, sys
    sys.path.insert(0, TESTS_DIR)
    from spawning import sh
    try:
        import trio, trio_asyncio
    except Exception as exc:
        print(json.dumps({"import_error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(0)
    import childwatch

    async def main():
        async with trio_asyncio.open_loop() as loop:
            out = {"loop": type(loop).__module__}
            watcher = childwatch.ThreadedChildWatcher()
            for name, call in (("set", lambda: childwatch.set_child_watcher(watcher, loop)),
                               ("get", lambda: childwatch.get_child_watcher(loop))):
                try:
                    call()
                    out[name] = "no error"
                except childwatch.UnsupportedLoopError as exc:
                    out[name] = str(exc)
            async def sub():
                proc = await asyncio.create_subprocess_exec("sh", "-c", "exit 12")
                return await proc.wait()
            out["subprocess"] = await trio_asyncio.aio_as_trio(sub)()
            async def watch_with_each():
                results = {}
                for name, support in childwatch.capabilities(loop).watchers:
                    w = getattr(childwatch, name)()
                    pid = sh("exit 13")
                    try:
                        fut = loop.create_future()
                        w.add_child_handler(pid, lambda p, rc: loop.call_soon_threadsafe(fut.set_result, rc))
                        results[name] = await asyncio.wait_for(fut, 30)
                    except Exception as exc:
                        results[name] = repr(exc)
                        os.waitpid(pid, 0)
                    finally:
                        w.close()
                return results
            out["watchers"] = await trio_asyncio.aio_as_trio(watch_with_each)()
            out["caps"] = childwatch.capabilities(loop).to_dict()
            watcher.close()
            print(json.dumps(out))

    trio.run(main)
    """
).replace("TESTS_DIR", repr(os.path.dirname(os.path.abspath(__file__))))


def test_trio_asyncio_refuses_custom_watchers_in_its_own_process() -> None:
    out = subprocess.run(
        [sys.executable, "-c", TRIO_ASYNCIO_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    if "import_error" in report:
        assert sys.version_info >= (3, 14) or "No module named" in report["import_error"], report
        pytest.skip(f"trio-asyncio unavailable here: {report['import_error']}")
    assert report["loop"].startswith("trio_asyncio")
    assert report["set"].startswith("trio-asyncio: trio-asyncio waits for its subprocesses")
    assert report["get"] == report["set"]
    assert report["subprocess"] == 12
    caps = report["caps"]
    assert caps["loop"] == "trio-asyncio"
    assert caps["custom_watcher"]["supported"] is False
    # Every watcher the record calls supported really watches a child on trio-asyncio.
    for name, support in caps["watchers"].items():
        assert support["supported"] is True, name
        assert report["watchers"][name] == 13, name


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"watcher must be a childwatch\.AbstractChildWatcher"):
        childwatch.set_child_watcher("watcher")  # type: ignore[arg-type]
    closed = asyncio.new_event_loop()
    closed.close()
    watcher = childwatch.ThreadedChildWatcher()
    with pytest.raises(RuntimeError, match="closed event loop"):
        childwatch.set_child_watcher(watcher, closed)
    with pytest.raises(RuntimeError, match="closed event loop"):
        childwatch.get_child_watcher(closed)
    with pytest.raises(TypeError, match="loop must be an asyncio event loop"):
        childwatch.get_child_watcher("loop")  # type: ignore[arg-type]
    watcher.close()
    loop = asyncio.new_event_loop()
    try:
        childwatch.set_child_watcher(watcher, loop)  # a closed watcher may be set again (it reopens on use)
        assert childwatch.get_child_watcher(loop) is watcher
        childwatch.set_child_watcher(None, loop)
    finally:
        loop.close()


class ForeignLoop(asyncio.SelectorEventLoop):  # type: ignore[misc,valid-type]
    """Stands for a third-party loop family."""


ForeignLoop.__module__ = "foreignloop.core"


class ForeignAdapter(LoopAdapter):
    name = "foreignloop"

    def matches(self, loop: asyncio.AbstractEventLoop) -> bool:
        return isinstance(loop, ForeignLoop)

    def version(self) -> str:
        return "9.9"

    def custom_watcher_refusal(self, loop: asyncio.AbstractEventLoop) -> str:
        return "foreignloop keeps its children to itself"

    def sigchld_refusal(self, loop: asyncio.AbstractEventLoop) -> str:
        return "foreignloop owns SIGCHLD"


def test_registered_adapter_is_picked_up() -> None:
    from childwatch import loops

    register_loop_adapter(ForeignAdapter())
    try:
        loop = ForeignLoop()
        try:
            assert loops.adapter_for(loop).name == "foreignloop"  # type: ignore[union-attr]
            with pytest.raises(childwatch.UnsupportedLoopError, match="foreignloop keeps its children"):
                childwatch.set_child_watcher(childwatch.ThreadedChildWatcher(), loop)
            caps = childwatch.capabilities(loop)
            assert (caps.loop, caps.loop_version) == ("foreignloop", "9.9")
            assert dict(caps.watchers)["SafeChildWatcher"] == childwatch.Support(
                False, "foreignloop owns SIGCHLD"
            )
            with pytest.raises(childwatch.UnsupportedLoopError, match="foreignloop owns SIGCHLD"):
                childwatch.SafeChildWatcher().attach_loop(loop)
        finally:
            loop.close()
    finally:
        loops._registered.clear()
    with pytest.raises(TypeError, match="LoopAdapter"):
        register_loop_adapter(object())  # type: ignore[arg-type]


def test_entry_point_adapter_is_picked_up(tmp_path: Path) -> None:
    """A distribution exposing a ``childwatch.loops`` entry point is found, in a fresh process."""
    (tmp_path / "plugin_loop.py").write_text(
        textwrap.dedent(
            """
            import asyncio
            from childwatch.loops import LoopAdapter

            class PluginLoop(asyncio.SelectorEventLoop):
                pass

            class PluginAdapter(LoopAdapter):
                name = "plugin-loop"
                def matches(self, loop):
                    return isinstance(loop, PluginLoop)
                def custom_watcher_refusal(self, loop):
                    return "refused by the plugin"
            """
        )
    )
    dist = tmp_path / "plugin_loop-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-loop\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[childwatch.loops]\nplugin = plugin_loop:PluginAdapter\n")
    code = (
        "import childwatch, plugin_loop\n"
        "loop = plugin_loop.PluginLoop()\n"
        "try:\n"
        "    childwatch.set_child_watcher(childwatch.ThreadedChildWatcher(), loop)\n"
        "except childwatch.UnsupportedLoopError as exc:\n"
        "    print(exc)\n"
        "print(childwatch.capabilities(loop).loop)\n"
        "loop.close()\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["plugin-loop: refused by the plugin", "plugin-loop"]


def test_uvloop_would_silently_lose_stdlib_safe_watcher_statuses() -> None:
    """The failure childwatch's refusal prevents: asyncio's own SafeChildWatcher never fires on uvloop."""
    uvloop = pytest.importorskip("uvloop")
    if NEW_STDLIB:
        pytest.skip("asyncio has no SafeChildWatcher on 3.14+")

    async def main() -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            watcher = asyncio.SafeChildWatcher()  # type: ignore[attr-defined]
            watcher.attach_loop(asyncio.get_running_loop())
        got = Collector()
        pid = spawn_sleeper()
        try:
            watcher.add_child_handler(pid, got)
            os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(1.0)
            return got.count()
        finally:
            watcher.close()
            assert reap(pid, kill=False) == -signal.SIGKILL  # still unreaped: nobody saw it die

    loop = uvloop.new_event_loop()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            delivered = loop.run_until_complete(main())
    finally:
        loop.close()
    assert delivered == 0
