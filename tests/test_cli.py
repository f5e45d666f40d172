"""``python -m childwatch``: the table and the JSON, checked against the API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

import childwatch


def cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "childwatch", *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out.stdout


def api_record(new_loop: Any) -> Dict[str, Any]:
    loop = new_loop()
    try:
        return childwatch.capabilities(loop).to_dict()
    finally:
        loop.close()


def comparable(record: Dict[str, Any]) -> Dict[str, Any]:
    # What reaps the loop's subprocesses now depends on the process's history.
    return {k: v for k, v in record.items() if k not in ("available", "current_watcher")}


def test_json_matches_the_api() -> None:
    report = json.loads(cli("--json"))
    assert report["childwatch"] == childwatch.__version__
    loops = report["loops"]
    from childwatch._probe_loop import THIRD_PARTY

    assert set(loops) - set(THIRD_PARTY) == {"asyncio", "uvloop", "trio-asyncio", "trio"}
    assert loops["asyncio"]["available"] is True
    assert comparable(loops["asyncio"]) == comparable(api_record(asyncio.new_event_loop))
    try:
        import uvloop
    except ImportError:
        assert loops["uvloop"]["available"] is False
        assert "not installed" in loops["uvloop"]["reason"]
    else:
        assert comparable(loops["uvloop"]) == comparable(api_record(uvloop.new_event_loop))
    try:
        from childwatch.capabilities import trio_capabilities

        trio_record = trio_capabilities().to_dict()
    except ImportError:
        assert loops["trio"]["available"] is False
    else:
        assert comparable(loops["trio"]) == comparable(trio_record)
    trio_asyncio = loops["trio-asyncio"]
    if trio_asyncio["available"]:
        assert trio_asyncio["loop"] == "trio-asyncio"
        assert trio_asyncio["custom_watcher"]["status"] == "unsupported"
    else:
        assert trio_asyncio["reason"].startswith("cannot use trio-asyncio here")


def test_table_shows_every_loop_and_watcher() -> None:
    table = cli()
    report = json.loads(cli("--json"))["loops"]
    assert table.startswith(f"childwatch {childwatch.__version__} on Python ")
    assert "OS mechanisms: pidfd " in table
    for name, record in report.items():
        rows = [line for line in table.splitlines() if line.startswith(f"{name} ")]
        if record["available"]:
            assert len(rows) == 2, (name, rows)  # the loop row and the watchers row
            assert (record["recommended"] or "none") in rows[1]
            marks = rows[1].split()[1:6]
            expected = [
                record["watchers"][w]["status"]
                for w in (
                    "SafeChildWatcher",
                    "FastChildWatcher",
                    "MultiLoopChildWatcher",
                    "ThreadedChildWatcher",
                    "PidfdChildWatcher",
                )
            ]
            assert [m.rstrip("*") for m in marks] == expected
        else:
            assert len(rows) == 1 and "unavailable" in rows[0]


def test_console_script() -> None:
    script = Path(sys.executable).parent / "childwatch"
    if not script.exists():
        pytest.skip("childwatch is not installed as a console script in this environment")
    out = subprocess.run([str(script), "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["childwatch"] == childwatch.__version__


def every_answer(record: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    answers = {"custom_watcher": record["custom_watcher"], "subprocesses": record["subprocesses"]}
    answers.update(record["watchers"])
    return answers


def test_the_three_words_and_their_reasons() -> None:
    table = cli()
    available = set()
    for name, record in json.loads(cli("--json"))["loops"].items():
        if not record["available"]:
            continue
        available.add(name)
        for what, answer in every_answer(record).items():
            assert answer["status"] in ("supported", "unsupported", "unknown"), (name, what)
            assert answer["supported"] is (answer["status"] == "supported")
            if answer["status"] != "supported":
                assert answer["reason"], (name, what)
                assert f"{answer['status']}: {answer['reason']}" in table, (name, what)
    # The rows of the loops that are there (an unavailable one's row says why in prose).
    rows = [line.split() for line in table.split("\n\nNotes (*):")[0].splitlines()]
    words = {cell.rstrip("*") for cells in rows if cells and cells[0] in available for cell in cells[1:]}
    assert "supported" in words
    assert not words & {"yes", "no"}


def test_probe_settles_every_unknown() -> None:
    for name, record in json.loads(cli("--json", "--probe"))["loops"].items():
        if record["available"]:
            statuses = {answer["status"] for answer in every_answer(record).values()}
            assert "unknown" not in statuses, name
