"""What running tests on an isolated loop (trio-asyncio) costs the pytest plugin.

A generated suite of trivial subprocess tests (``--tests`` passing ones, each
spawning ``sh -c 'exit 0'`` on ``run_on_loop``, and ``--failing`` failing
ones) is run with ``python -m pytest --loop-impls=LOOP`` for asyncio and for
each other loop given (default: uvloop and trio-asyncio, those installed), in
a fresh pytest process each time, ``--repeats`` times in turn; the median wall
time of each is printed side by side with asyncio's, with the extra cost per
session and the budget of issue 15 (2 s per session plus 10 ms per test)::

    python bench/plugin_overhead.py --tests 40 --failing 1 --repeats 5
    python bench/plugin_overhead.py --xdist 2   # the same under pytest-xdist -n 2

The tests of ``tests/test_pytest_plugin.py`` run :data:`SUITE` too (for the
outcomes; this script is for the timings).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

SUITE = """
import asyncio
import sys

import pytest


async def spawn(code):
    proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
    return await proc.wait()


@pytest.mark.parametrize("n", range(PASSING))
def test_passes(run_on_loop, loop_impl, n):
    assert run_on_loop(spawn, 0, timeout=60) == 0
    assert ("trio_asyncio" in sys.modules) == (loop_impl == "trio-asyncio")  # isolated


@pytest.mark.parametrize("n", range(FAILING))
def test_fails(run_on_loop, n):
    assert run_on_loop(spawn, 3, timeout=60) == 0
"""
"""The generated test module; ``PASSING`` and ``FAILING`` are replaced by the counts."""

INI = "[pytest]\naddopts = -p no:randomly -p no:cacheprovider\ntimeout = 300\n"

SESSION_BUDGET = 2.0
TEST_BUDGET = 0.010


def write_suite(directory: Path, passing: int, failing: int) -> Path:
    """Write :data:`SUITE` (as ``test_overhead.py``) and a pytest.ini into ``directory``."""
    code = SUITE.replace("range(PASSING)", f"range({passing})").replace("range(FAILING)", f"range({failing})")
    (directory / "test_overhead.py").write_text(textwrap.dedent(code))
    (directory / "pytest.ini").write_text(INI)
    return directory / "test_overhead.py"


def run_once(directory: Path, loop: str, extra: Sequence[str]) -> Tuple[float, Dict[str, int]]:
    """Wall time of one pytest run of the suite on ``loop``, and its outcome counts."""
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", f"--loop-impls={loop}", *extra],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = time.perf_counter() - start
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|error|skipped)", out.stdout)}
    return elapsed, counts


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tests", type=int, default=40, help="passing tests (default 40)")
    parser.add_argument("--failing", type=int, default=1, help="failing tests (default 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--xdist", type=int, default=0, help="run under pytest-xdist -n N")
    parser.add_argument(
        "loops", nargs="*", help="loops to compare with asyncio (default: uvloop, trio-asyncio)"
    )
    args = parser.parse_args(list(argv) or None)
    modules = {"uvloop": "uvloop", "trio-asyncio": "trio_asyncio"}
    loops = ["asyncio"] + [
        loop for loop in (args.loops or list(modules)) if importlib.util.find_spec(modules.get(loop, loop))
    ]
    extra = ["-n", str(args.xdist)] if args.xdist else []
    total = args.tests + args.failing
    times: Dict[str, List[float]] = {loop: [] for loop in loops}
    outcomes: Dict[str, Dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="childwatch-plugin-overhead-") as tmp:
        write_suite(Path(tmp), args.tests, args.failing)
        for _ in range(args.repeats):
            for loop in loops:
                elapsed, outcomes[loop] = run_once(Path(tmp), loop, extra)
                times[loop].append(elapsed)
    base = statistics.median(times["asyncio"])
    budget = SESSION_BUDGET + TEST_BUDGET * total
    print(
        f"{total} tests ({args.tests} passing, {args.failing} failing), median of {args.repeats} runs"
        + (f", -n {args.xdist}" if args.xdist else "")
        + f"; budget for the extra cost: {budget:.2f} s"
    )
    print(f"{'loop':<14} {'outcomes':<22} {'median s':>9} {'extra s':>8} {'extra/test ms':>14}  within")
    ok = True
    for loop in loops:
        median = statistics.median(times[loop])
        extra_s = median - base
        within = loop == "asyncio" or extra_s <= budget
        ok = ok and within and outcomes[loop] == outcomes["asyncio"]
        counts = ", ".join(f"{n} {word}" for word, n in sorted(outcomes[loop].items()))
        print(
            f"{loop:<14} {counts:<22} {median:>9.2f} {extra_s:>8.2f} {1000 * extra_s / total:>14.1f}  "
            + ("-" if loop == "asyncio" else "yes" if within else "NO")
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
