"""trio-asyncio on 3.14+: what childwatch.legacy cannot restore, and how it is reported.

trio-asyncio 0.16 needs one public asyncio name that 3.14 removed,
``AbstractChildWatcher`` (``childwatch.legacy.install()`` restores it), and two
things only trio-asyncio can change (childwatch.loops.trio_asyncio_3_14_plus):
a private base class, and making its loop the running loop while it runs
asyncio callbacks.  The programs run in child processes: importing trio-asyncio
patches asyncio for the whole process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, version
from typing import Tuple

import pytest

from childwatch.capabilities import WATCHER_NAMES
from childwatch.loops import trio_asyncio_3_14_plus
from childwatch.loops.trio_asyncio_3_14_plus import REASON, refusal

try:
    TRIO_ASYNCIO = version("trio-asyncio")
except PackageNotFoundError:
    TRIO_ASYNCIO = None

needs_broken_trio_asyncio = pytest.mark.skipif(
    sys.version_info < (3, 14) or TRIO_ASYNCIO is None or refusal() is None,
    reason="needs trio-asyncio <= 0.16 installed on Python 3.14+",
)

OPT_IN = "import childwatch.legacy\nassert childwatch.legacy.install()\n"

# The private name, aliased by hand (childwatch does not): how far trio-asyncio gets then.
BY_HAND = "import asyncio.events\nasyncio.events.BaseDefaultEventLoopPolicy = asyncio.events._BaseDefaultEventLoopPolicy\n"

# The change trio-asyncio must make in BaseTrioEventLoop._main_loop_one (trio_asyncio/_base.py, around
# "obj._run()"), done here from outside: each callback runs with the loop as the thread's running loop.
ITS_FIX = textwrap.dedent(
    """
    import asyncio, _asyncio
    from trio_asyncio._base import BaseTrioEventLoop
    _run = asyncio.Handle._run
    def run_as_running_loop(handle):
        if not isinstance(handle._loop, BaseTrioEventLoop):
            return _run(handle)
        previous = _asyncio._get_running_loop()
        _asyncio._set_running_loop(handle._loop)
        try:
            return _run(handle)
        finally:
            _asyncio._set_running_loop(previous)
    asyncio.Handle._run = run_as_running_loop
    """
)

# Three subprocess round trips under trio-asyncio; the first error its loop reports ends the process.
SUBPROCESSES = textwrap.dedent(
    """
    import asyncio, os, trio, trio_asyncio

    async def codes():
        out = []
        for code in (0, 5, 255):
            proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
            out.append(await proc.wait())
        return out

    def first_error(loop, context):
        print("error:", repr(context.get("exception")), flush=True)
        os._exit(2)  # its loop cannot shut down either: every Task step fails

    async def main():
        async with trio_asyncio.open_loop() as loop:
            loop.set_exception_handler(first_error)
            print(await trio_asyncio.run_aio_coroutine(codes()))

    trio.run(main)
    """
)


def run(code: str, *args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", *args, *(["-c", code] if code else [])],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("python", "release", "refused"),
    [
        ((3, 13), "0.16.0", False),
        ((3, 14), "0.16.0", True),
        ((3, 15), "0.16.0", True),
        ((3, 14), "0.15.0", True),
        ((3, 14), "0.16.0+dev", True),  # its git master
        ((3, 14), "0.17.0", False),  # not known to fail: asked of the release itself
        ((3, 14), "1.0", False),
    ],
)
def test_refusal_is_for_the_releases_known_to_fail(
    python: Tuple[int, int], release: str, refused: bool
) -> None:
    assert refusal(python, release) == (REASON if refused else None)
    assert trio_asyncio_3_14_plus.LAST_CHECKED == (0, 16)


def test_no_refusal_where_trio_asyncio_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trio_asyncio_3_14_plus, "distribution_version", lambda name: None)
    assert refusal((3, 14)) is None


@needs_broken_trio_asyncio
def test_the_opt_in_restores_the_public_name_it_needs_not_the_private_one() -> None:
    private_only = run(BY_HAND + "import trio_asyncio\n")
    assert private_only.returncode == 1
    assert "AttributeError: module 'asyncio' has no attribute 'AbstractChildWatcher'" in private_only.stderr
    opt_in_only = run(OPT_IN + "import trio_asyncio\n")
    assert opt_in_only.returncode == 1
    assert (
        "AttributeError: module 'asyncio.events' has no attribute 'BaseDefaultEventLoopPolicy'"
        in opt_in_only.stderr
    )
    both = run(OPT_IN + BY_HAND + "import trio_asyncio\nprint('imported')\n")
    assert both.returncode == 0, both.stderr
    assert both.stdout == "imported\n"


@needs_broken_trio_asyncio
def test_with_the_private_name_by_hand_no_task_can_step() -> None:
    out = run(OPT_IN + BY_HAND + SUBPROCESSES)
    assert out.returncode == 2, out.stderr
    assert out.stdout.startswith("error: RuntimeError('loop <TrioEventLoop running=yes at 0x")
    assert out.stdout.rstrip().endswith("is not the running loop')")


@needs_broken_trio_asyncio
def test_the_two_changes_of_trio_asyncio_are_enough_with_the_opt_in() -> None:
    """What the README says trio-asyncio must change, made from outside: subprocesses then run."""
    out = run(OPT_IN + BY_HAND + ITS_FIX + SUBPROCESSES)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == ["[0, 5, 255]"]


@needs_broken_trio_asyncio
def test_the_report_says_unsupported_with_the_reason() -> None:
    out = run("", "-m", "childwatch._probe_loop", "trio-asyncio")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert (record["loop"], record["loop_version"]) == ("trio-asyncio", TRIO_ASYNCIO)
    unsupported = {"status": "unsupported", "supported": False, "reason": REASON}
    assert record["subprocesses"] == record["custom_watcher"] == unsupported
    assert record["watchers"] == dict.fromkeys(WATCHER_NAMES, unsupported)
    assert record["recommended"] is None


@needs_broken_trio_asyncio
def test_capabilities_of_a_loop_made_anyway_refuses_subprocesses() -> None:
    code = (
        OPT_IN
        + BY_HAND
        + textwrap.dedent(
            """
            import trio, trio_asyncio, childwatch
            async def main():
                async with trio_asyncio.open_loop() as loop:
                    caps = childwatch.capabilities(loop)
                    print(caps.loop, caps.subprocesses.status, caps.custom_watcher.status)
                    print(caps.subprocesses.reason)
            trio.run(main)
            """
        )
    )
    out = run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["trio-asyncio unsupported unsupported", REASON]
