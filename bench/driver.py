"""The driver of ``bench/run.py``: plans the cells, runs each in a fresh worker, saves the run.

:func:`drive` runs every cell of a :class:`Plan` in a fresh
``bench/worker.py`` process, the cells of each repeat in a shuffled order,
gathers the figures, prints the report and (on a full run) writes
``bench/results/X.Y.json``, the cost-curve plots and ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from catalog import (
    BENCH,
    PY,
    RAW_NAMES,
    RAW_PIDFDS,
    REPO,
    RESULTS_DIR,
    SCANNING,
    default_kind,
    e2e_configs,
    log,
    scale_cells,
    watcher_names,
)
from report import curve_paths, pct, plot, render_run, write_results_md

WORKER_TIMEOUT = 300.0  # a cell of the curve spawns 10,000 idle children
TASKS = ("curve", "latency", "memory", "e2e", "scale")


class Plan:
    """What a run measures, and how much of it.

    The cost curve churns ``n[level]`` children at each level of idle children
    (``n_scanning[level]`` for the :data:`~catalog.SCANNING` watchers, whose every
    SIGCHLD costs a ``waitpid`` per registered child), and measures a level of
    ``sparse`` only in its first ``sparse[level]`` repeats: spawning 10,000 idle
    children in every cell of every repeat would take most of the run.
    """

    def __init__(self, quick: bool, repeats: Optional[int]) -> None:
        self.quick = quick
        self.n_scanning: Dict[int, int] = {}
        self.sparse: Dict[int, int] = {}
        if quick:
            self.repeats = repeats or 1
            self.levels = [0, 1000]
            self.n = {0: 500, 1000: 500}
            self.latency = 60
            self.live = 1000
            self.e2e_n = 300
            self.scale_children = 2000
        else:
            self.repeats = repeats or 5
            self.levels = [0, 100, 1000, 3000, 10000]
            self.n = {0: 2000, 100: 1000, 1000: 2000, 3000: 1000, 10000: 500}
            self.n_scanning[10000] = 100
            self.sparse[10000] = 2
            self.latency = 200
            self.live = 1000
            self.e2e_n = 1000
            self.scale_children = 10000

    def level_repeats(self, level: int) -> int:
        return min(self.sparse.get(level, self.repeats), self.repeats)

    def churned(self, name: str) -> Dict[int, int]:
        """Children churned at each level by watcher ``name``."""
        return {**self.n, **self.n_scanning} if name in SCANNING else self.n

    def curve_spec(self, name: str, repeat: int) -> Dict[str, Any]:
        levels = [lv for lv in self.levels if repeat < self.level_repeats(lv)]
        n = self.churned(name)
        return {"task": "curve", "name": name, "levels": levels, "n": {str(lv): n[lv] for lv in levels}}


def run_worker(spec: Dict[str, Any], alt_src: Optional[str] = None) -> Optional[Dict[str, Any]]:
    env = None
    if alt_src and spec["name"].startswith("alt:"):
        env = dict(os.environ, PYTHONPATH=alt_src)
        spec = dict(spec, name="cw:" + spec["name"][4:])
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "worker.py"), json.dumps(spec)],
        env=env,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        log(f"TIMEOUT {spec}")
        return None
    if proc.returncode != 0:
        log(f"FAILED (exit {proc.returncode}) {spec}")
        return None
    try:
        out: Dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        log(f"no result from {spec}: {stdout[-500:]!r}")
        return None
    if out.get("leftover_children"):
        log(f"{spec['name']} {spec['task']}: {out['leftover_children']} children left behind")
    if out.get("bad"):
        log(f"{spec['name']} {spec['task']}: {out['bad']} wrong returncodes")
    return out


def collect(
    plan: Plan, tasks: List[str], configs: List[str], names: List[str], alt_src: Optional[str] = None
) -> Dict[str, Any]:
    data: Dict[str, Any] = {"curve": {}, "latency": {}, "memory": {}, "e2e": {}, "bad": {}, "failed": []}

    def cells(repeat: int) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        for name in names:
            if "curve" in tasks:
                out.append(plan.curve_spec(name, repeat))
            if "latency" in tasks and name != RAW_PIDFDS:
                out.append({"task": "latency", "name": name, "count": plan.latency})
        if "e2e" in tasks:
            out += [{"task": "e2e", "name": c, "n": plan.e2e_n} for c in configs]
        return out

    started = time.monotonic()
    for r in range(plan.repeats):
        order = cells(r)
        random.shuffle(order)
        for i, spec in enumerate(order):
            log(
                f"repeat {r + 1}/{plan.repeats} [{i + 1}/{len(order)}] {spec['task']} {spec['name']} "
                f"({time.monotonic() - started:.0f}s)"
            )
            data.setdefault("load", []).append(os.getloadavg()[0])
            out = run_worker(spec, alt_src)
            if out is None:
                data["failed"].append(f"{spec['task']} {spec['name']} (repeat {r + 1})")
                continue
            if out.get("bad"):
                data["bad"][f"{spec['task']} {spec['name']}"] = (
                    data["bad"].get(f"{spec['task']} {spec['name']}", 0) + out["bad"]
                )
            task, name = spec["task"], spec["name"]
            if task == "curve":
                data["curve"].setdefault(name, []).append(out["rates"])
                data.setdefault("cpu", {}).setdefault(name, []).append(out["cpu"])
            elif task == "latency":
                lat = sorted(out["lat"])
                data["latency"].setdefault(name, []).append(
                    {
                        "p50": pct(lat, 50),
                        "p99": pct(lat, 99),
                        "n": len(lat),
                        "samples": [round(x, 7) for x in lat],
                    }
                )
            elif task == "e2e":
                data["e2e"].setdefault(name, []).append(out["rate"])
                data.setdefault("e2e_watcher", {})[name] = out["watcher"]
    if "memory" in tasks:
        for name in [n for n in names if n != RAW_PIDFDS]:  # curve-only; the rest once each
            log(f"memory {name}")
            out = run_worker({"task": "memory", "name": name, "live": plan.live}, alt_src)
            if out is None:
                data["failed"].append(f"memory {name}")
            else:
                data["memory"][name] = out
    if "scale" in tasks:
        data["scale"] = []
        for name, loop in scale_cells(names):  # once each, like memory
            log(f"scale {name} {loop or '(no loop)'}: {plan.scale_children} children")
            spec = {"task": "scale", "name": name, "loop": loop, "children": plan.scale_children}
            out = run_worker(spec, alt_src)
            if out is None:
                data["failed"].append(f"scale {name} {loop}")
            data["scale"].append(dict(out or {"failed": True}, name=name, loop=loop))
    data["elapsed_s"] = time.monotonic() - started
    return data


def machine_line() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({model}), "
        f"load average {load:.2f} at start"
    )


def versions() -> Dict[str, str]:
    out = {}
    for mod in ("uvloop", "trio", "anyio", "matplotlib"):
        try:
            from importlib.metadata import version

            out[mod] = version(mod)
        except Exception:
            pass
    return out


def git_commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "src"], capture_output=True, text=True
        ).stdout.strip()
        return rev + ("+dirty src" if dirty else "")
    except OSError:
        return "?"


def available(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


def drive(args: argparse.Namespace, command: str, machine: str) -> int:
    """Run the cells ``args`` select; ``machine`` is :func:`machine_line` taken at start."""
    plan = Plan(args.quick, args.repeats)
    tasks = args.tasks.split(",")
    configs = [
        c
        for c in e2e_configs()
        if not (c == "uvloop" and not available("uvloop"))
        and not (c == "trio" and not (available("trio") and available("anyio")))
    ]
    log(
        f"Python {PY}, {os.cpu_count()} CPUs, default={default_kind()}, repeats={plan.repeats}, tasks={tasks}"
    )
    names = watcher_names()
    if args.watchers:
        wanted = args.watchers.split(",")
        names = [n for n in names if n in RAW_NAMES or n in wanted or n.split(":")[1] in wanted]
    alt_src = None
    if args.compare:
        alt_src = str(Path(args.compare).resolve())
        cw = [n for n in names if n.startswith("cw:")]
        for n in cw:
            names.insert(names.index(n) + 1, "alt:" + n[3:])
        log(f"rows 'patched X' import childwatch from {alt_src}")
    data = collect(plan, tasks, configs, names, alt_src)
    data["meta"] = {
        "python": PY,
        "python_full": platform.python_version(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine,
        "cpus": os.cpu_count(),
        "commit": git_commit(),
        "versions": versions(),
        "command": command,
        "repeats": plan.repeats,
        "levels": plan.levels,
        "n": {str(k): v for k, v in plan.n.items()},
        "n_scanning": {str(k): v for k, v in plan.n_scanning.items()},
        "scanning": list(SCANNING),
        "level_repeats": {str(lv): plan.level_repeats(lv) for lv in plan.levels},
        "scale_children": plan.scale_children,
        "latency": plan.latency,
        "live": plan.live,
        "e2e_n": plan.e2e_n,
        "e2e_configs": configs,
        "watchers": names,
        "compare": alt_src,
        "default": default_kind(),
        "quick": plan.quick,
    }
    dump = (
        Path(args.json)
        if args.json
        else Path(tempfile.gettempdir()) / f"childwatch-bench-{PY}-{os.getpid()}.json"
    )
    with open(dump, "w") as fh:
        json.dump(data, fh, indent=1)
    log(f"raw data: {dump} (re-render with --render {dump})")
    print()
    print(render_run(data))
    write = args.write if args.write is not None else not (args.quick or args.compare or args.watchers)
    if write and set(tasks) >= set(TASKS):
        RESULTS_DIR.mkdir(exist_ok=True)
        with open(RESULTS_DIR / f"{PY}.json", "w") as fh:
            json.dump(data, fh, indent=1)
        plots = curve_paths(PY)
        plot(data, plots)
        write_results_md()
        written = ", ".join(str(p.relative_to(REPO)) for p in plots)
        log(f"wrote {RESULTS_DIR / (PY + '.json')}, {written}, bench/RESULTS.md")
    elif args.plot:
        plot(data, [Path(args.plot)])
    return 1 if data["failed"] else 0
