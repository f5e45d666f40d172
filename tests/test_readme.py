"""The README is the manual: its examples run, its commands are the ones CI uses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

import childwatch

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> List[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("code", blocks("python"), ids=lambda c: c.strip().splitlines()[-1][:40])
def test_python_example_runs(code: str) -> None:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr


def test_there_are_examples() -> None:
    assert len(blocks("python")) >= 3


def test_exactly_two_commands_and_ci_runs_the_test_command() -> None:
    commands = [b.strip() for b in blocks("sh")]
    assert len(commands) == 2, commands
    install_and_report, tests = commands
    assert "pip install" in install_and_report and install_and_report.endswith("childwatch")
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines(), "the README's test command must be what .ci/run runs"


def test_first_example_prints_the_real_status() -> None:
    out = subprocess.run(
        [sys.executable, "-c", blocks("python")[0]], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.stdout.strip() == "exit status: 3"


def test_loop_table_matches_capabilities() -> None:
    """The "What each loop allows" rows agree with capabilities() for the loops installed here
    (the third-party ones probed, each in a process of its own, as python -m childwatch does)."""
    import asyncio
    import importlib.util
    import json

    from childwatch._probe_loop import THIRD_PARTY

    rows = {}
    for line in README.split("## What each loop allows", 1)[1].split("##", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] not in ("loop", "---"):
            rows[cells[0].split()[0]] = [c.split(":")[0].split()[0] for c in cells[1:]]
    assert {"asyncio", "uvloop", "trio-asyncio", "trio", "rloop", "veloxloop"} <= set(rows)
    for words in rows.values():
        assert set(words) <= {"supported", "unsupported", "unknown"}, words
    loops = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop

        loops["uvloop"] = uvloop.new_event_loop
    except ImportError:
        pass
    for name, factory in loops.items():
        loop = factory()
        try:
            caps = childwatch.capabilities(loop)
        finally:
            loop.close()
        assert rows[name] == statuses(caps.to_dict()), name
    try:
        from childwatch.capabilities import trio_capabilities

        assert rows["trio"] == statuses(trio_capabilities().to_dict())
    except ImportError:
        pass
    for family in THIRD_PARTY:
        if family in rows and importlib.util.find_spec(family) is not None:
            out = subprocess.run(
                [sys.executable, "-m", "childwatch._probe_loop", family, "--probe"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert out.returncode == 0, out.stderr
            assert rows[family] == statuses(json.loads(out.stdout)), family
    # trio-asyncio runs in its own process: test_loops checks the same claims there.
    assert rows["trio-asyncio"] == ["unsupported", *["supported"] * 5]


def statuses(record: Dict[str, Any]) -> List[str]:
    return [record["custom_watcher"]["status"]] + [answer["status"] for answer in record["watchers"].values()]
