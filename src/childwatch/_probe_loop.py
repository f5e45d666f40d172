"""``python -m childwatch._probe_loop FAMILY [--probe]``: one loop's record as JSON.

Run in a process of its own by ``python -m childwatch``: some loops patch
asyncio for the whole process when imported (trio-asyncio installs its
policy).  Exit status 3, with the reason on stderr, if the loop cannot be
imported or created here; trio-asyncio up to 0.16 on 3.14+, which cannot run
there for reasons of its own, is reported instead, unsupported with the reason
(:mod:`childwatch.loops.trio_asyncio_3_14_plus`).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Callable

THIRD_PARTY = (
    "rloop",
    "veloxloop",
    "uringcore",
    "zuvloop",
    "talyn",
    "loopmini",
    "rsloop",
    "qasync",
    "asyncio_gevent",
)
"""Loops from PyPI (by module) that ``python -m childwatch`` reports on when they are installed."""


def factory_of(module: Any) -> Callable[[], Any]:
    """The module's ``new_event_loop``, else its policy's; qasync's loop runs in
    a ``QApplication`` (headless with ``QT_QPA_PLATFORM=offscreen``);
    asyncio-gevent's is made after ``gevent.monkey.patch_all()``, as that loop
    is meant to run (so this process is gevent's for good)."""
    if module.__name__ == "asyncio_gevent":
        from gevent import monkey  # type: ignore[import-untyped, import-not-found, unused-ignore]

        monkey.patch_all()
    if module.__name__ == "qasync":
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a probe needs no window
        app = module.QApplication.instance() or module.QApplication([])
        return lambda: module.QEventLoop(app)
    new_loop = getattr(module, "new_event_loop", None)
    if callable(new_loop):
        return new_loop  # type: ignore[no-any-return]
    return module.EventLoopPolicy().new_event_loop  # type: ignore[no-any-return]


async def _nothing() -> None:
    return None


def check_runs_a_coroutine(loop: Any) -> None:
    """Raise RuntimeError, saying why, if ``loop`` cannot run a trivial coroutine
    here (loopmini 0.1 on 3.10 passes 3.12's ``eager_start`` to ``Task()``): such a
    loop is unavailable on this Python, and nothing can be claimed about it."""
    coroutine = _nothing()
    try:
        loop.run_until_complete(coroutine)
    except Exception as exc:
        coroutine.close()  # (never started: no "never awaited" warning)
        raise RuntimeError(
            f"{type(loop).__name__} cannot run a coroutine on this Python ({type(exc).__name__}: {exc})"
        ) from exc


def exit_now(status: int) -> None:
    """End a probe process once its answer is printed, skipping the interpreter's
    teardown: a loop's extension may crash there (PySide6 on 3.10 aborts in
    ``munmap_chunk()``), which would turn a printed answer into a failure."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _record(family: str, probe: bool) -> str:
    from .capabilities import capabilities, unrunnable_capabilities
    from .loops import distribution_version, trio_asyncio_3_14_plus

    if family == "trio-asyncio":
        reason = trio_asyncio_3_14_plus.refusal()  # asked before the import, which fails there
        if reason is not None:
            version = distribution_version("trio-asyncio")
            return unrunnable_capabilities(
                family, "trio_asyncio._async.TrioEventLoop", version, reason
            ).to_json()
        import trio
        import trio_asyncio

        async def in_trio() -> str:
            async with trio_asyncio.open_loop() as loop:
                return capabilities(loop, probe).to_json()

        result: str = trio.run(in_trio)
        return result
    new_loop = factory_of(__import__(family))
    loop = new_loop()
    try:
        check_runs_a_coroutine(loop)
        if isinstance(loop, asyncio.AbstractEventLoop):  # (a duck-typed loop, rsloop's, is refused there)
            asyncio.set_event_loop(loop)
        return capabilities(loop, probe).to_json()
    finally:
        loop.close()


def main(argv: list[str]) -> int:
    family, probe = argv[0], "--probe" in argv[1:]
    try:
        print(_record(family, probe))
    except Exception as exc:  # ImportError, or whatever the loop raises on this Python
        print(f"cannot use {family} here: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
