"""pytest plugin for compat/matrix.py's free-threaded rows: the GIL stays off through the run.

    python -m pytest -p compat.gil_check

On a free-threaded build (``Py_GIL_DISABLED``) it asks ``sys._is_gil_enabled()`` when the session
starts and after every test (the stress tests among them), and adds one test, run last,
``compat/gil_check.py::test_gil_stayed_off``: it fails naming the first test after which the GIL
was on (a C extension not marked free-threading-safe turns it on when imported, unless
``PYTHON_GIL=0``).  On a build with a GIL that test is skipped, with the reason.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path
from typing import Any, List, Optional, Tuple

import pytest

FREE_THREADED = sysconfig.get_config_var("Py_GIL_DISABLED") == 1


def _gil_on() -> bool:
    return bool(getattr(sys, "_is_gil_enabled", lambda: True)())


class _Seen:
    checks = 0
    first_on: Optional[str] = None


def _check(where: str) -> None:
    if FREE_THREADED:
        _Seen.checks += 1
        if _Seen.first_on is None and _gil_on():
            _Seen.first_on = where


class GilStayedOff(pytest.Item):
    def runtest(self) -> None:
        if not FREE_THREADED:
            pytest.skip("not a free-threaded build (Py_GIL_DISABLED is not 1)")
        _check("all the tests")
        assert _Seen.first_on is None, f"the GIL was on after {_Seen.first_on}"

    def reportinfo(self) -> Tuple[Path, Optional[int], str]:
        return Path(__file__), None, self.name


def pytest_sessionstart(session: pytest.Session) -> None:
    _check("the start of the session")


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    _check(nodeid)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: Any, items: List[pytest.Item]) -> None:
    nodeid = "compat/gil_check.py::test_gil_stayed_off"
    items.append(GilStayedOff.from_parent(session, name="test_gil_stayed_off", nodeid=nodeid))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FREE_THREADED:
        state = "off" if _Seen.first_on is None else f"ON (first after {_Seen.first_on})"
        terminalreporter.write_line(
            f"gil_check: free-threaded {sys.version.split()[0]}; the GIL, asked {_Seen.checks} times "
            f"(the session's start, after each test): {state}"
        )
