"""``python -m childwatch``: what every installed event loop allows, on this machine."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import subprocess
import sys
from typing import Any, Dict, List, Optional

from . import __version__, _mechanisms
from ._probe_loop import THIRD_PARTY
from .capabilities import WATCHER_NAMES, capabilities, trio_capabilities

Report = Dict[str, Any]


def _unavailable(reason: str) -> Report:
    return {"available": False, "reason": reason}


def _in_process(new_loop: Any, probe: bool) -> Report:
    loop = new_loop()
    try:
        return {"available": True, **capabilities(loop, probe).to_dict()}
    finally:
        loop.close()


def _in_subprocess(family: str, probe: bool) -> Report:
    out = subprocess.run(
        [sys.executable, "-m", "childwatch._probe_loop", family, *(["--probe"] if probe else [])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode == 0:
        return {"available": True, **json.loads(out.stdout)}
    return _unavailable(
        out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"probe exited {out.returncode}"
    )


def probe_all(probe: bool = False) -> Dict[str, Report]:
    """Capability records of every loop family, keyed by family name: asyncio,
    uvloop, trio-asyncio and trio always (unavailable, with the reason, if not
    installed), then each of :data:`THIRD_PARTY` that is installed, each in a
    process of its own.  ``probe``: settle unknown answers with children."""
    loops: Dict[str, Report] = {"asyncio": _in_process(asyncio.new_event_loop, probe)}
    try:
        import uvloop
    except ImportError as exc:
        loops["uvloop"] = _unavailable(f"not installed ({exc})")
    else:
        loops["uvloop"] = _in_process(uvloop.new_event_loop, probe)
    # trio-asyncio patches asyncio globally when imported: probe it elsewhere.
    loops["trio-asyncio"] = _in_subprocess("trio-asyncio", probe)
    try:
        loops["trio"] = {"available": True, **trio_capabilities().to_dict()}
    except ImportError as exc:
        loops["trio"] = _unavailable(f"not installed ({exc})")
    for family in THIRD_PARTY:
        if importlib.util.find_spec(family) is not None:
            loops[family] = _in_subprocess(family, probe)
    return loops


def _mark(support: Dict[str, Any]) -> str:
    """The answer's word, starred when a note gives its reason."""
    return str(support["status"]) + ("*" if support["reason"] else "")


def render(loops: Dict[str, Report]) -> str:
    """The table ``python -m childwatch`` prints: every answer is supported,
    unsupported or unknown; a star sends to the note with its reason."""
    mech = _mechanisms.available()
    first = next(r for r in loops.values() if r["available"])
    width = max(13, *(len(name) + 1 for name in loops))  # the loop column
    lines: List[str] = [
        f"childwatch {__version__} on Python {first['python']}, {first['platform']}",
        "OS mechanisms: " + ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in mech.items()),
        "",
        f"{'loop':<{width}} {'version':<9} {'subprocesses':<13} {'set_child_watcher':<18} reaped now by",
    ]
    notes: List[str] = []
    for name, r in loops.items():
        if not r["available"]:
            lines.append(f"{name:<{width}} {'-':<9} unavailable: {r['reason']}")
            continue
        for what, label in (("subprocesses", "subprocesses"), ("custom_watcher", "set_child_watcher")):
            if r[what]["reason"]:
                notes.append(f"{name}: {label} {r[what]['status']}: {r[what]['reason']}")
        lines.append(
            f"{name:<{width}} {r['loop_version'] or '-':<9} {_mark(r['subprocesses']):<13} "
            f"{_mark(r['custom_watcher']):<18} {r['current_watcher'] or '-'}"
        )
    short = [w.replace("ChildWatcher", "") for w in WATCHER_NAMES]
    lines += ["", "Watchers for pids you start yourself (os.fork, posix_spawn, Popen):", ""]
    lines.append(f"{'loop':<{width}} " + " ".join(f"{w:<12}" for w in short) + " recommended")
    for name, r in loops.items():
        if not r["available"]:
            continue
        cells = []
        for w in WATCHER_NAMES:
            support = r["watchers"][w]
            if support["reason"]:
                same = [v for v in WATCHER_NAMES if r["watchers"][v]["reason"] == support["reason"]]
                notes.append(f"{name}: {', '.join(same)} {support['status']}: {support['reason']}")
            cells.append(f"{_mark(support):<12}")
        lines.append(f"{name:<{width}} " + " ".join(cells) + " " + (r["recommended"] or "none"))
    if notes:
        lines += ["", "Notes (*):"] + [f"  - {n}" for n in dict.fromkeys(notes)]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="childwatch", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the capability records as JSON")
    parser.add_argument(
        "--probe", action="store_true", help="settle every unknown answer by watching a trivial child"
    )
    args = parser.parse_args(argv)
    loops = probe_all(args.probe)
    if args.json:
        print(json.dumps({"childwatch": __version__, "loops": loops}, indent=2))
    else:
        print(render(loops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
