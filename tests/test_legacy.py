"""childwatch.legacy: code written for asyncio's old API runs unchanged on 3.14+."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A program written against Python 3.11's asyncio, untouched.
OLD_PROGRAM = textwrap.dedent(
    """
    import asyncio

    watcher = asyncio.SafeChildWatcher()
    asyncio.set_child_watcher(watcher)

    async def main():
        codes = []
        for code in (0, 5, 255):
            proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
            codes.append(await proc.wait())
        assert asyncio.get_child_watcher() is watcher
        assert isinstance(watcher, asyncio.AbstractChildWatcher)
        return codes

    print(asyncio.run(main()))
    asyncio.set_child_watcher(None)
    watcher.close()
    """
)

OPT_IN = "import childwatch.legacy\nprint(childwatch.legacy.install())\n"


def run(code: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(sys.version_info < (3, 14), reason="asyncio still has the names: legacy does nothing")
def test_old_program_runs_after_the_opt_in() -> None:
    out = run(OPT_IN + OLD_PROGRAM)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["True", "[0, 5, 255]"]


@pytest.mark.skipif(sys.version_info < (3, 14), reason="asyncio still has the names")
def test_old_program_fails_clearly_without_it() -> None:
    out = run(OLD_PROGRAM)
    assert out.returncode == 1
    assert "AttributeError: module 'asyncio' has no attribute 'SafeChildWatcher'" in out.stderr


@pytest.mark.skipif(sys.version_info < (3, 14), reason="asyncio still has the names")
def test_get_creates_the_default_and_set_reaches_the_running_loop() -> None:
    code = OPT_IN + textwrap.dedent(
        """
        import asyncio, childwatch
        async def main():
            default = asyncio.get_child_watcher()
            assert type(default).__name__ in ("PidfdChildWatcher", "ThreadedChildWatcher")
            assert asyncio.get_child_watcher() is default
            mine = asyncio.ThreadedChildWatcher()
            asyncio.set_child_watcher(mine)       # inside a running loop: this loop too
            assert childwatch.get_child_watcher() is mine
            proc = await asyncio.create_subprocess_exec("sh", "-c", "exit 9")
            print(await proc.wait())
            asyncio.set_child_watcher(None)
            mine.close(); default.close()
        asyncio.run(main())
        """
    )
    out = run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["True", "9"]


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="3.14+ lacks the names")
def test_does_nothing_where_asyncio_has_the_names() -> None:
    code = (
        "import asyncio\n"
        "before = (asyncio.SafeChildWatcher, asyncio.set_child_watcher)\n"
        + OPT_IN
        + "assert (asyncio.SafeChildWatcher, asyncio.set_child_watcher) == before\n"
    )
    out = run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["False"]


def test_nothing_changes_without_the_opt_in() -> None:
    code = (
        "import asyncio\nbefore = dict(vars(asyncio))\n"
        "import childwatch, childwatch.legacy\nprint(dict(vars(asyncio)) == before)\n"
    )
    out = run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


# trio-asyncio on 3.14+ (what the opt-in restores for it, and why that is not enough): test_legacy_trio_asyncio.py
