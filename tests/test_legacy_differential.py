"""3.13 against 3.14+: the API flows of compat/legacy_scenarios.py, line by line.

compat/legacy_scenarios.expected is what 3.13 prints with asyncio's own
watchers.  On 3.13 this test holds the file to the interpreter (so it stays
3.13's truth); on 3.14+ it holds ``childwatch.legacy.install()``'s output to
it, every difference being one of :data:`DIFFERENCES`, with its reason (each
must still appear: a fixed difference is taken off the list).
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

COMPAT = Path(__file__).resolve().parent.parent / "compat"
SCRIPT = COMPAT / "legacy_scenarios.py"
EXPECTED = COMPAT / "legacy_scenarios.expected"

pytestmark = pytest.mark.skipif(
    platform.python_implementation() != "CPython" or sys.version_info[:2] < (3, 13),
    reason="the reference is 3.13's asyncio; 3.14+ is held to it",
)


DIFFERENCES = {
    "bad-watcher: TypeError": (
        "3.13's policy checks with an assert (AssertionError, or nothing under -O); "
        "childwatch's raises TypeError naming what was given"
    ),
}
"""Lines of 3.14+'s output (with ``--legacy``) that differ from 3.13's, and why."""


ASYNCIO_OWN_RACE = "will report returncode 255"
"""What 3.13's watchers log when their own races lose a status (DESIGN: Safe
registering from a worker thread, MultiLoop's handler): that run says
nothing about the reference and is run again."""


def scenarios(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240, check=False
    )
    assert out.returncode == 0, out.stderr
    return out


@pytest.mark.skipif(sys.version_info[:2] != (3, 13), reason="the reference is 3.13's")
def test_the_reference_is_what_3_13_prints() -> None:
    expected = EXPECTED.read_text().splitlines()
    for _ in range(3):
        out = scenarios()
        if out.stdout.splitlines() == expected or ASYNCIO_OWN_RACE not in out.stderr:
            break
    assert out.stdout.splitlines() == expected, out.stderr


@pytest.mark.skipif(sys.version_info < (3, 14), reason="asyncio has the API before 3.14")
def test_3_14_plus_with_legacy_prints_what_3_13_prints() -> None:
    run = scenarios("--legacy")
    assert run.stderr == "", run.stderr  # childwatch logs no lost status
    out = run.stdout.splitlines()
    assert out[0] == "install: True"
    got, expected = out[1:], EXPECTED.read_text().splitlines()
    allowed = DIFFERENCES
    unexplained = [
        f"3.13: {want!r} / here: {line!r}"
        for want, line in zip(expected, got)
        if line != want and line not in allowed
    ]
    assert not unexplained and len(got) == len(expected), "\n".join(unexplained) or (got, expected)
    assert set(allowed) <= set(got), f"a listed difference is gone (fixed?): {set(allowed) - set(got)}"
