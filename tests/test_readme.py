"""The README is the manual: its examples run, its commands are the ones CI uses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

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


def readme_loop_table() -> Tuple[Dict[str, List[str]], Dict[str, str]]:
    """The rows of "What each loop allows" (loop -> its cells) and its numbered reasons."""
    section = README.split("<!-- loop table: written by compat/matrix.py -->", 1)[1]
    section = section.split("<!-- end of loop table -->", 1)[0]
    rows: Dict[str, List[str]] = {}
    notes: Dict[str, str] = {}
    for line in section.strip().splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0] not in ("loop", "---"):
                rows[cells[0].split()[0]] = cells
        elif re.match(r"\d+\. ", line):
            number, _, reason = line.partition(". ")
            notes[number] = reason
    return rows, notes


def test_loop_table_matches_the_report() -> None:
    """The "What each loop allows" rows written for this Python are what
    ``python -m childwatch --probe`` says here, word for word and reason for reason."""
    rows, notes = readme_loop_table()
    assert {"asyncio", "uvloop", "trio-asyncio", "trio", "rloop", "veloxloop", "zuvloop", "rsloop"} <= set(
        rows
    )
    for cells in rows.values():
        assert len(cells) == 10, cells
        for cell in cells[3:]:
            word, _, note = cell.partition(" ")
            assert word in ("supported", "unsupported", "unknown"), cells
            assert not note or note.strip("[]") in notes, cell
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    mine = {name: cells for name, cells in rows.items() if cells[2] == here}
    if sys.implementation.name != "cpython" or not mine:
        pytest.skip(f"no row of the table was written from CPython {here}")
    out = subprocess.run(
        [sys.executable, "-m", "childwatch", "--probe", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["loops"]
    checked = 0
    for name, cells in mine.items():
        record = report.get(name)
        if record is None or not record["available"]:
            continue  # not installed in this venv
        checked += 1
        answers = [record["subprocesses"], record["custom_watcher"], *record["watchers"].values()]
        for cell, answer in zip(cells[3:], answers):
            word, _, note = cell.partition(" ")
            assert word == answer["status"], (name, cells)
            assert notes.get(note.strip("[]")) == answer["reason"], (name, cell, answer["reason"])
    if not checked:
        pytest.skip(f"none of the loops whose row was written from {here} is installed here")
