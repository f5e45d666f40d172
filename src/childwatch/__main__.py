"""``python -m childwatch``: what every installed event loop allows, on this machine."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from typing import Any, Dict, List, Optional

from . import __version__, _mechanisms
from .capabilities import WATCHER_NAMES, capabilities, trio_capabilities

Report = Dict[str, Any]


def _unavailable(reason: str) -> Report:
    return {"available": False, "reason": reason}


def _probe_loop(new_loop: Any) -> Report:
    loop = new_loop()
    try:
        return {"available": True, **capabilities(loop).to_dict()}
    finally:
        loop.close()


def probe_all() -> Dict[str, Report]:
    """Capability records of every loop family, keyed by family name."""
    loops: Dict[str, Report] = {"asyncio": _probe_loop(asyncio.new_event_loop)}
    try:
        import uvloop
    except ImportError as exc:
        loops["uvloop"] = _unavailable(f"not installed ({exc})")
    else:
        loops["uvloop"] = _probe_loop(uvloop.new_event_loop)
    # trio-asyncio patches asyncio globally when imported: probe it elsewhere.
    out = subprocess.run(
        [sys.executable, "-m", "childwatch._probe_trio_asyncio"], capture_output=True, text=True, timeout=60
    )
    if out.returncode == 0:
        loops["trio-asyncio"] = {"available": True, **json.loads(out.stdout)}
    else:
        loops["trio-asyncio"] = _unavailable(
            out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"probe exited {out.returncode}"
        )
    try:
        loops["trio"] = {"available": True, **trio_capabilities().to_dict()}
    except ImportError as exc:
        loops["trio"] = _unavailable(f"not installed ({exc})")
    return loops


def _yes(support: Dict[str, Any]) -> str:
    return "yes" if support["supported"] else "no"


def render(loops: Dict[str, Report]) -> str:
    mech = _mechanisms.available()
    first = next(r for r in loops.values() if r["available"])
    lines: List[str] = [
        f"childwatch {__version__} on Python {first['python']}, {first['platform']}",
        "OS mechanisms: " + ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in mech.items()),
        "",
        f"{'loop':<13} {'version':<9} {'subprocesses':<13} {'set_child_watcher':<18} reaped now by",
    ]
    notes: List[str] = []
    for name, r in loops.items():
        if not r["available"]:
            lines.append(f"{name:<13} {'-':<9} unavailable: {r['reason']}")
            continue
        custom = _yes(r["custom_watcher"])
        if r["custom_watcher"]["reason"]:
            notes.append(f"{name}: set_child_watcher unsupported: {r['custom_watcher']['reason']}")
        lines.append(
            f"{name:<13} {r['loop_version'] or '-':<9} {_yes(r['subprocesses']):<13} {custom:<18} {r['current_watcher'] or '-'}"
        )
    short = [w.replace("ChildWatcher", "") for w in WATCHER_NAMES]
    lines += ["", "Watchers for pids you start yourself (os.fork, posix_spawn, Popen):", ""]
    lines.append(f"{'loop':<13} " + " ".join(f"{w:<10}" for w in short) + " recommended")
    for name, r in loops.items():
        if not r["available"]:
            continue
        cells = []
        for w in WATCHER_NAMES:
            support = r["watchers"][w]
            mark = "yes" if support["supported"] else "no"
            if support["reason"]:
                mark += "*"
                same = [v for v in WATCHER_NAMES if r["watchers"][v]["reason"] == support["reason"]]
                notes.append(f"{name}: {', '.join(same)}: {support['reason']}")
            cells.append(f"{mark:<10}")
        lines.append(f"{name:<13} " + " ".join(cells) + " " + r["recommended"])
    if notes:
        lines += ["", "Notes (*):"] + [f"  - {n}" for n in dict.fromkeys(notes)]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="childwatch", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the capability records as JSON")
    args = parser.parse_args(argv)
    loops = probe_all()
    if args.json:
        print(json.dumps({"childwatch": __version__, "loops": loops}, indent=2))
    else:
        print(render(loops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
