"""The cross-check: on every loop installed here, each claim of the report holds.

Each loop runs in a process of its own (loop_cross_check_child.py): several
patch asyncio for their whole process (asyncio-gevent's after
``gevent.monkey.patch_all()``, as that loop runs).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from childwatch._probe_loop import THIRD_PARTY

CHILD = Path(__file__).with_name("loop_cross_check_child.py")


@pytest.mark.parametrize("family", ["asyncio", "uvloop", *THIRD_PARTY])
def test_every_claim_holds_on(family: str) -> None:
    if family != "asyncio" and importlib.util.find_spec(family) is None:
        pytest.skip(f"{family} is not installed in this environment")
    out = subprocess.run([sys.executable, str(CHILD), family], capture_output=True, text=True, timeout=300)
    print(out.stdout, out.stderr)
    if out.returncode == 3 and out.stdout.startswith("unusable: "):
        pytest.skip(out.stdout.strip())  # the loop itself is broken on this Python
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith("all claims held")
