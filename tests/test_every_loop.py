"""The cross-check: on every loop installed here, each claim of the report holds.

Each loop runs in a process of its own (loop_cross_check_child.py): several
patch asyncio for their whole process.  asyncio-gevent runs the way it is
meant to, after ``gevent.monkey.patch_all()``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from childwatch._probe_loop import THIRD_PARTY

CHILD = Path(__file__).with_name("loop_cross_check_child.py")

GEVENT_FIRST = (
    "import gevent.monkey; gevent.monkey.patch_all(); import runpy, sys; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def command(family: str) -> List[str]:
    if family == "asyncio_gevent":
        return [sys.executable, "-c", GEVENT_FIRST, str(CHILD), family]
    return [sys.executable, str(CHILD), family]


@pytest.mark.parametrize("family", ["asyncio", "uvloop", *THIRD_PARTY, "asyncio_gevent"])
def test_every_claim_holds_on(family: str) -> None:
    if family != "asyncio" and importlib.util.find_spec(family) is None:
        pytest.skip(f"{family} is not installed in this environment")
    out = subprocess.run(command(family), capture_output=True, text=True, timeout=300)
    print(out.stdout, out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith("all claims held")
