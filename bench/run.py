#!/usr/bin/env python3
"""childwatch benchmarks: every watcher side by side with asyncio's, in one run.

    python3 bench/run.py                  # full run (~15-20 min) on this Python
    python3 bench/run.py --python 3.9     # full run on another pyenv Python
    python3 bench/run.py --quick          # ~2 min smoke run (writes nothing)

The command makes (once) a venv ``bench/.venv-X.Y`` with childwatch (editable),
uvloop, trio, anyio, trio-asyncio and matplotlib, and re-runs itself inside it.  Every
measurement runs in a fresh worker process (``bench/worker.py``), so no
watcher inherits another's signal handlers, threads or fds.  The cells of
each repeat run in a shuffled order; each figure is the median over repeats,
and each ratio is the median of the ratios taken within one repeat (so the
two measurements of a ratio are minutes apart at most, never runs apart).

Measured, for the raw ``os.wait()`` loop, every childwatch watcher and (on
3.9-3.13) every asyncio watcher:

1. churn: ``/bin/true`` children (``os.posix_spawn``) reaped per second, 32 in
   flight, each exit's callback starting the next child, and the benchmark
   process's CPU time per child (steadier than throughput on a busy machine);
2. scaling: the same with 1,000 idle registered children alive;
3. latency: SIGKILL sent -> callback entered, p50/p99 of every repeat pooled;
4. end to end: ``create_subprocess_exec`` + ``wait`` per second on stdlib
   asyncio (own default, childwatch's default, stdlib pidfd), uvloop, trio;
5. memory: threads, fds and RSS with 1,000 live registered children;
6. the cost curve: churn with 0/100/1,000/3,000/10,000 idle registered
   children, drawn to ``bench/cost_curve.png`` (10,000 in two of the repeats,
   with fewer children churned through asyncio's scanning watchers);
7. scale: 10,000 live registered children per watcher and loop (asyncio,
   uvloop, trio-asyncio) at a soft RLIMIT_NOFILE of 1024: every status
   checked, threads, fds and RSS per child, time to register and to deliver,
   or where the watcher stops (EMFILE, refused by the loop).

A full run writes ``bench/results/X.Y.json`` and ``bench/cost_curve-X.Y.png``
(and ``bench/cost_curve.png`` on Python 3.11, the primary), and regenerates
``bench/RESULTS.md`` from every ``results/*.json`` present (with ``bench/FINDINGS.md``, the hand-written
analysis, appended).  ``--compare SRC_DIR`` adds a "patched X" row after each
childwatch row, imported from a patched copy of ``src/``: an A/B in one run.
No timing is asserted anywhere: the targets are evaluated and printed, and the
exit status is 0 unless a measurement failed.

This file only reads the command line and sets up the venv; the work is done
by ``bench/driver.py`` (the cells), ``bench/worker.py`` (one measurement),
``bench/report.py`` (tables, plot, RESULTS.md), ``bench/catalog.py`` (the
rows' names) and ``bench/common.py`` (what every benchmark script shares).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from catalog import BENCH, PY, REPO, log
from driver import TASKS, drive, machine_line
from report import regenerate, render_run


def find_python(version: str) -> Optional[str]:
    """The interpreter compat/matrix.py would use for ``version``: pyenv first, then PATH."""
    sys.path.insert(0, str(REPO / "compat"))
    try:
        from matrix import find_python as matrix_find_python
    finally:
        sys.path.pop(0)
    return matrix_find_python(version)  # type: ignore[no-any-return]


def ensure_venv(version: str) -> Path:
    venv = BENCH / f".venv-{version}"
    vpy = venv / "bin" / "python"
    if not vpy.exists():
        base = sys.executable if version == PY else find_python(version)
        if base is None:
            raise SystemExit(f"bench: no Python {version} found (pyenv or PATH)")
        log(f"creating {venv}")
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run(
        [str(vpy), "-c", "import childwatch, uvloop, trio, anyio, trio_asyncio, matplotlib"],
        capture_output=True,
        cwd="/",
    )
    if probe.returncode != 0:
        log(f"installing childwatch[uvloop,trio,trio-asyncio] + matplotlib into {venv}")
        res = subprocess.run(
            [str(vpy), "-m", "pip", "install", "-q", "-e", f"{REPO}[uvloop,trio,trio-asyncio]", "matplotlib"]
        )
        if res.returncode != 0:
            # Optional loops may not exist for this Python: childwatch alone is enough.
            subprocess.run([str(vpy), "-m", "pip", "install", "-q", "-e", str(REPO)], check=True)
            for extra in ("uvloop", "trio", "anyio", "trio-asyncio", "matplotlib"):
                subprocess.run([str(vpy), "-m", "pip", "install", "-q", extra])
    return vpy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", help="X.Y: run on that Python (pyenv or PATH); default: this one")
    parser.add_argument("--quick", action="store_true", help="short smoke run; writes nothing")
    parser.add_argument("--repeats", type=int, help="repeats per cell (default 5; --quick 1)")
    parser.add_argument(
        "--tasks",
        default=",".join(TASKS),
        help="comma-separated subset of " + ",".join(TASKS),
    )
    parser.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write results/RESULTS.md/plot (default: on for full runs)",
    )
    parser.add_argument("--plot", help="with --no-write: draw the cost curve to this path")
    parser.add_argument("--no-venv", action="store_true", help="use this interpreter as it is")
    parser.add_argument("--watchers", help="comma-separated subset, e.g. Safe,cw:Pidfd (raw always runs)")
    parser.add_argument(
        "--compare",
        metavar="SRC_DIR",
        help="add a 'patched X' row after each childwatch row, importing childwatch from "
        "SRC_DIR (a copy of src/ with a patch): A/B in one run; writes nothing",
    )
    parser.add_argument("--json", metavar="FILE", help="also save the raw data here")
    parser.add_argument("--render", metavar="FILE", help="print the tables of saved raw data; run nothing")
    parser.add_argument(
        "--regenerate",
        action="store_true",
        help="redraw the plots and rewrite RESULTS.md from results/*.json (and FINDINGS.md); run nothing",
    )
    parser.add_argument("--command", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.render:
        with open(args.render) as fh:
            print(render_run(json.load(fh)))
        return 0
    if args.regenerate:
        regenerate()
        return 0

    command = args.command or "python3 bench/run.py " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--command")
    )
    command = command.strip()
    version = args.python or PY
    in_venv = Path(sys.prefix).resolve() == (BENCH / f".venv-{version}").resolve()
    if not args.no_venv and not in_venv:
        vpy = ensure_venv(version)
        argv = [str(vpy), str(Path(__file__).resolve())] + [a for a in sys.argv[1:]] + ["--command", command]
        os.execv(str(vpy), argv)
    if version != PY:
        raise SystemExit(f"bench: --python {version} but running {PY}")
    return drive(args, command, machine_line())


if __name__ == "__main__":
    sys.exit(main())
