"""The report of ``bench/run.py``: tables, targets, the cost-curve plot and RESULTS.md.

Everything here reads a run's data (as the driver collects it and
``bench/results/X.Y.json`` saves it) and runs nothing: :func:`render_run`
prints one run's tables and targets, :func:`plot` draws its cost curve and
:func:`write_results_md` rewrites ``bench/RESULTS.md`` from every saved run.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from catalog import BENCH, PRIMARY_PYTHON, RAW_PIDFDS, RESULTS_DIR, log
from common import INFLIGHT, KINDS


def pct(sorted_values: List[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


# -- figures and ratios -----------------------------------------------------------


class Figures:
    """Medians and within-repeat ratios from one run's data."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self.d = data

    def rates(self, name: str, level: int) -> List[Optional[float]]:
        return [r.get(str(level)) for r in self.d["curve"].get(name, [])]

    def churn(self, name: str, level: int = 0) -> Optional[float]:
        return _median([x for x in self.rates(name, level) if x is not None])

    def cpus(self, name: str, level: int) -> List[Optional[float]]:
        return [r.get(str(level)) for r in self.d.get("cpu", {}).get(name, [])]

    def cpu(self, name: str, level: int = 0) -> Optional[float]:
        return _median([x for x in self.cpus(name, level) if x is not None])

    def cpu_ratio(self, a: str, la: int, b: str, lb: int) -> Optional[float]:
        return _median(_ratios(self.cpus(a, la), self.cpus(b, lb)))

    def churn_ratio(self, a: str, la: int, b: str, lb: int) -> Optional[float]:
        """median over repeats of churn(a, la) / churn(b, lb) within one repeat."""
        return _median(self.churn_ratios(a, la, b, lb))

    def lat(self, name: str, key: str) -> Optional[float]:
        """p50/p99 over the samples of every repeat pooled (the repeats interleave
        with the other watchers' cells, so pooling is fair and steadies the p99)."""
        runs = self.d["latency"].get(name, [])
        pooled = sorted(x for r in runs for x in r.get("samples", []))
        if pooled:
            return pct(pooled, {"p50": 50, "p99": 99}[key])
        return _median([r[key] for r in runs])  # data saved before samples were kept

    def lat_ratio(self, a: str, b: str, key: str) -> Optional[float]:
        va, vb = self.lat(a, key), self.lat(b, key)
        return None if va is None or not vb else va / vb

    def lat_ratios(self, a: str, b: str, key: str) -> List[float]:
        """The ratio of ``key`` (p50/p99) within each repeat (for the spread)."""
        p = {"p50": 50, "p99": 99}[key]

        def per_repeat(name: str) -> List[Optional[float]]:
            runs = self.d["latency"].get(name, [])
            return [pct(sorted(r["samples"]), p) if r.get("samples") else r.get(key) for r in runs]

        return _ratios(per_repeat(a), per_repeat(b))

    def churn_ratios(self, a: str, la: int, b: str, lb: int) -> List[float]:
        return _ratios(self.rates(a, la), self.rates(b, lb))

    def e2e_ratios(self, a: str, b: str) -> List[float]:
        return _ratios(self.d["e2e"].get(a, []), self.d["e2e"].get(b, []))

    def e2e(self, name: str) -> Optional[float]:
        return _median(self.d["e2e"].get(name, []))

    def e2e_ratio(self, a: str, b: str) -> Optional[float]:
        return _median(self.e2e_ratios(a, b))

    def e2e_raw_ratio(self, a: str) -> Optional[float]:
        raw = self.churn("raw", 0)
        v = self.e2e(a)
        return None if raw is None or v is None else v / raw


def _median(values: List[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def _ratios(a: List[Any], b: List[Any]) -> List[float]:
    """``a[i] / b[i]`` for each repeat ``i`` where both figures exist."""
    return [x / y for x, y in zip(a, b) if x is not None and y]


def spread(values: List[float]) -> str:
    """``min–max`` of per-repeat ratios, or "—" with fewer than two."""
    return f"{min(values):.2f}–{max(values):.2f}" if len(values) > 1 else "—"


def fmt(v: Optional[float], spec: str = ".2f", suffix: str = "") -> str:
    if v is None:
        return "—"
    return format(v, spec) + suffix


def label(name: str, dflt: str) -> str:
    if name == "raw":
        return "raw `os.wait()` loop"
    if name == RAW_PIDFDS:
        return "raw loop + a pidfd per idle child"
    family, kind = name.split(":")
    text = {"cw": "childwatch ", "alt": "patched ", "std": "asyncio "}[family] + kind
    if family == "cw" and kind == dflt:
        text += " (default)"
    return text


def tables(data: Dict[str, Any]) -> str:
    f = Figures(data)
    meta = data["meta"]
    dflt = meta["default"]
    names = list(meta["watchers"])

    def std_of(name: str) -> Optional[str]:
        """The asyncio watcher of the same name, if this run measured it."""
        family, _, kind = name.partition(":")
        std = "std:" + kind
        return std if family in ("cw", "alt") and std in names else None

    measured = [n for n in names if n != RAW_PIDFDS]  # all but the curve-only row
    levels = meta["levels"]
    top = 1000 if 1000 in levels else levels[-1]
    out: List[str] = []
    a = out.append

    a(
        f"### 1. Churn: `/bin/true` children reaped per second ({meta['n'][str(0)]} children, "
        f"{INFLIGHT} in flight)\n"
    )
    a("CPU µs/child is the benchmark process's own CPU time (all threads) per reaped child:")
    a("less sensitive than throughput to other load on the machine.\n")
    a("| watcher | churn /s | ×raw | ×asyncio | CPU µs/child | ×raw | ×asyncio |")
    a("|---|---:|---:|---:|---:|---:|---:|")
    for n in measured:
        s = std_of(n)
        cpu = f.cpu(n)
        a(
            f"| {label(n, dflt)} | {fmt(f.churn(n), '.0f')} | {fmt(f.churn_ratio(n, 0, 'raw', 0))} | "
            f"{fmt(f.churn_ratio(n, 0, s, 0)) if s else ''} | {fmt(cpu and cpu * 1e6, '.0f')} | "
            f"{fmt(f.cpu_ratio(n, 0, 'raw', 0))} | {fmt(f.cpu_ratio(n, 0, s, 0)) if s else ''} |"
        )

    a(f"\n### 2. Scaling: the same with {top} idle registered children alive\n")
    a("| watcher | churn /s | ×own idle-free | ×raw | ×asyncio | CPU µs/child | ×own idle-free |")
    a("|---|---:|---:|---:|---:|---:|---:|")
    for n in names:
        s = std_of(n)
        cpu = f.cpu(n, top)
        a(
            f"| {label(n, dflt)} | {fmt(f.churn(n, top), '.0f')} | {fmt(f.churn_ratio(n, top, n, 0))} | "
            f"{fmt(f.churn_ratio(n, top, 'raw', top))} | {fmt(f.churn_ratio(n, top, s, top)) if s else ''} | "
            f"{fmt(cpu and cpu * 1e6, '.0f')} | {fmt(f.cpu_ratio(n, top, n, 0))} |"
        )

    a(
        f"\n### 3. Latency: SIGKILL sent → callback entered ({meta['latency']} children per repeat, "
        "percentiles of all repeats pooled)\n"
    )
    a("| watcher | p50 µs | ×raw | ×asyncio | p99 µs | ×raw | ×asyncio |")
    a("|---|---:|---:|---:|---:|---:|---:|")
    for n in measured:
        s = std_of(n)
        p50, p99 = f.lat(n, "p50"), f.lat(n, "p99")
        a(
            f"| {label(n, dflt)} | {fmt(p50 and p50 * 1e6, '.0f')} | {fmt(f.lat_ratio(n, 'raw', 'p50'))} | "
            f"{fmt(f.lat_ratio(n, s, 'p50')) if s else ''} | {fmt(p99 and p99 * 1e6, '.0f')} | "
            f"{fmt(f.lat_ratio(n, 'raw', 'p99'))} | {fmt(f.lat_ratio(n, s, 'p99')) if s else ''} |"
        )

    a(
        f"\n### 4. End to end: `create_subprocess_exec` + `wait` ({meta['e2e_n']} children, "
        f"{INFLIGHT} at once)\n"
    )
    a("| loop (watcher actually used) | /s | ×raw churn | ×asyncio default |")
    a("|---|---:|---:|---:|")
    e2e_labels = {
        "asyncio:default": "asyncio, its own default",
        "asyncio:childwatch": "asyncio + childwatch default",
        "asyncio:std-pidfd": "asyncio + asyncio.PidfdChildWatcher",
        "uvloop": "uvloop",
        "trio": "trio via anyio.open_process",
    }
    for c in meta["e2e_configs"]:
        used = data.get("e2e_watcher", {}).get(c, "?")
        a(
            f"| {e2e_labels[c]} ({used}) | {fmt(f.e2e(c), '.0f')} | {fmt(f.e2e_raw_ratio(c))} | "
            f"{fmt(f.e2e_ratio(c, 'asyncio:default'))} |"
        )

    a(f"\n### 5. Memory with {meta['live']} live registered children\n")
    a("| watcher | threads | ×asyncio | fds added | ×asyncio | RSS added KiB | ×asyncio | bytes per child |")
    a("|---|---:|---:|---:|---:|---:|---:|---:|")
    mem = data["memory"]
    for n in measured:
        m = mem.get(n)
        if m is None:
            a(f"| {label(n, dflt)} | — | | — | | — | | — |")
            continue
        s = std_of(n)
        ms = mem.get(s) if s else None

        def r(key: str, m: Dict[str, Any] = m, ms: Optional[Dict[str, Any]] = ms) -> str:
            if ms is None:
                return ""
            return fmt(m[key] / ms[key]) if ms[key] > 0 else "—"

        a(
            f"| {label(n, dflt)} | {m['threads']} | {r('threads')} | {m['fds_added']} | {r('fds_added')} | "
            f"{m['rss_added_kib']} | {r('rss_added_kib')} | {m['bytes_per_child']:.0f} |"
        )

    a("\n### 6. Cost curve: churn /s by idle registered children (×own idle-free rate)\n")
    a("| watcher | " + " | ".join(f"{lv} idle" for lv in levels) + " |")
    a("|---|" + "---:|" * len(levels))
    for n in names:
        cells = []
        for lv in levels:
            v = f.churn(n, lv)
            rr = f.churn_ratio(n, lv, n, 0)
            cells.append(f"{fmt(v, '.0f')} ({fmt(rr)})" if lv else fmt(v, ".0f"))
        a(f"| {label(n, dflt)} | " + " | ".join(cells) + " |")
    a("\n" + churned_line(meta))
    if data.get("scale"):
        a(scale_table(data))
    return "\n".join(out)


def churned_line(meta: Dict[str, Any]) -> str:
    """What the cost curve ran: the children churned per point, and the levels
    measured in fewer repeats than the rest."""
    n, scanning = meta["n"], meta.get("n_scanning", {})
    repeats = meta.get("level_repeats", {})
    points = []
    for lv in meta["levels"]:
        point = f"{n[str(lv)]} at {lv} idle"
        if str(lv) in scanning:
            fewer = " and ".join(label(s, "") for s in meta["scanning"])
            point += f" ({scanning[str(lv)]} through {fewer}, which scan every registered child per SIGCHLD)"
        if repeats.get(str(lv), meta["repeats"]) < meta["repeats"]:
            point += f" in {repeats[str(lv)]} of the {meta['repeats']} repeats"
        points.append(point)
    return "Children churned per point: " + "; ".join(points) + "."


def _statuses(r: Dict[str, Any]) -> str:
    """The statuses column of the scale table: exact, or what went wrong."""
    parts = [f"**{r['limit']}**"] if r["limit"] else []
    if r["exact"]:
        parts.append(f"{r['registered']} exact")
    else:
        twice = f", {r['twice']} twice" if r["twice"] else ""
        parts.append(f"**{r['delivered']} of {r['registered']} delivered, {r['wrong']} wrong{twice}**")
    return "; ".join(parts)


def scale_table(data: Dict[str, Any]) -> str:
    meta = data["meta"]
    rows = data["scale"]
    soft = next((r["soft_limit"] for r in rows if "soft_limit" in r), "?")
    out = [
        f"\n### 7. Scale: {meta['scale_children']} live children at soft RLIMIT_NOFILE {soft}\n",
        f"One run per cell: {meta['scale_children']} idle `cat` children started (inside `with watcher:`) and",
        "registered from the running loop, then ended together (every tenth by SIGTERM, the others",
        "by closing their stdin); exact: every child delivered once, with its own status.  Threads,",
        "fds and RSS are the process's with every child registered; register s counts spawning",
        "(the raw loop's figure is spawning alone); deliver s runs from the release to the last",
        "callback.  A watcher that stops registering says where (EMFILE at child N: no fd left",
        "for its pidfd; or the worker's registration budget spent, as a thread per child may on a",
        "busy machine) and its figures are for the children it took.\n",
        "| watcher | loop | statuses | threads | fds added | RSS B/child | register s | deliver s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        head = f"| {label(r['name'], meta['default'])} | {r['loop'] or '—'} |"
        if r.get("failed"):
            out.append(f"{head} **failed** (timed out or crashed) | | | | | |")
        elif "refused" in r:
            out.append(f"{head} refused by the watcher ({r['refused'].split(':')[0]}) | | | | | |")
        elif "unavailable" in r:
            out.append(f"{head} loop not importable here | | | | | |")
        else:
            out.append(
                f"{head} {_statuses(r)} | {r['threads']} | {r['fds_added']} | {r['bytes_per_child']:.0f} | "
                f"{r['register_s']:.1f} | {r['deliver_s']:.2f} |"
            )
    return "\n".join(out)


def targets(data: Dict[str, Any]) -> str:
    """The issue's targets, each judged on its median figure; "repeats" is the
    range of that figure over the repeats (one repeat's ratio each), and a
    verdict that some repeats contradict says "(median only)"."""
    f = Figures(data)
    meta = data["meta"]
    dflt = "cw:" + meta["default"]
    std = any(n.startswith("std:") for n in meta["watchers"])
    top = 1000 if 1000 in meta["levels"] else meta["levels"][-1]
    rows: List[Tuple[str, str, str, str]] = []

    def check(
        what: str, value: Optional[float], ok: Callable[[float], bool], show: str, per_repeat: List[float]
    ) -> None:
        rows.append((what, verdict(value, ok, per_repeat), show, spread(per_repeat)))

    def cpu_note(a: str, la: int, b: str, lb: int) -> str:
        c = f.cpu_ratio(a, la, b, lb)
        return "" if c is None else f" (CPU per child {c:.2f}×)"

    v = f.churn_ratio(dflt, 0, "raw", 0)
    check(
        f"default ({meta['default']}) churn ≥ 0.9× raw",
        v,
        lambda x: x >= 0.9,
        f"{fmt(v)}× raw" + cpu_note(dflt, 0, "raw", 0),
        f.churn_ratios(dflt, 0, "raw", 0),
    )
    if std:
        ratios = [(x, k) for k in KINDS for x in [f.churn_ratio(dflt, 0, "std:" + k, 0)] if x is not None]
        if ratios:
            worst = min(ratios)
            check(
                "default churn ≥ best asyncio watcher",
                worst[0],
                lambda x: x >= 1.0,
                f"{worst[0]:.2f}× asyncio {worst[1]}, the best asyncio watcher here"
                + cpu_note(dflt, 0, "std:" + worst[1], 0),
                f.churn_ratios(dflt, 0, "std:" + worst[1], 0),
            )
    v = f.churn_ratio(dflt, top, dflt, 0)
    floor = f.churn_ratio(RAW_PIDFDS, top, RAW_PIDFDS, 0)
    check(
        f"default churn with {top} idle ≥ 0.9× its idle-free rate",
        v,
        lambda x: x >= 0.9,
        f"{fmt(v)}×"
        + (
            f"; the raw loop holding the same {top} pidfds: {floor:.2f}× (no watcher), raw alone "
            f"{fmt(f.churn_ratio('raw', top, 'raw', 0))}×"
            if floor is not None and meta["default"] in ("Pidfd", "Threaded")
            else ""
        ),
        f.churn_ratios(dflt, top, dflt, 0),
    )
    if std:
        v = f.lat_ratio(dflt, "std:Pidfd", "p99")
        check(
            "default p99 latency ≤ asyncio Pidfd's",
            v,
            lambda x: x <= 1.0,
            f"{fmt(v)}× ({fmt((f.lat(dflt, 'p99') or 0) * 1e6, '.0f')} vs "
            f"{fmt((f.lat('std:Pidfd', 'p99') or 0) * 1e6, '.0f')} µs)",
            f.lat_ratios(dflt, "std:Pidfd", "p99"),
        )
        for k in KINDS:
            v = f.churn_ratio("cw:" + k, 0, "std:" + k, 0)
            check(
                f"{k}: churn ≥ 0.95× asyncio {k}",
                v,
                lambda x: x >= 0.95,
                f"{fmt(v)}×" + cpu_note("cw:" + k, 0, "std:" + k, 0),
                f.churn_ratios("cw:" + k, 0, "std:" + k, 0),
            )
            v50 = f.lat_ratio("cw:" + k, "std:" + k, "p50")
            v99 = f.lat_ratio("cw:" + k, "std:" + k, "p99")
            worst_lat = None if v50 is None or v99 is None else max(v50, v99)
            worse = "p50" if worst_lat == v50 else "p99"
            check(
                f"{k}: latency no worse than asyncio {k}",
                worst_lat,
                lambda x: x <= 1.0,
                f"p50 {fmt(v50)}×, p99 {fmt(v99)}× (repeats: {worse})",
                f.lat_ratios("cw:" + k, "std:" + k, worse),
            )
    v = f.churn_ratio("cw:Safe", top, "cw:Safe", 0)
    check(
        f"Safe churn with {top} idle ≥ 0.85× its idle-free rate",
        v,
        lambda x: x >= 0.85,
        f"{fmt(v)}×",
        f.churn_ratios("cw:Safe", top, "cw:Safe", 0),
    )
    m = data["memory"].get("cw:Threaded")
    live = meta["live"]
    if m is not None:
        rows.append(
            (
                f"Threaded: fewer than one thread per live child ({live} live)",
                "met" if m["threads_added"] < live else "**MISSED**",
                f"{m['threads']} threads in all ({m['threads_added']:+d}), "
                f"{m['bytes_per_child']:.0f} B RSS and {m['fds_added'] / live:.2f} fd per idle child",
                "—",
            )
        )
    if meta["python"] in ("3.9", "3.10", "3.11"):
        v = f.e2e_ratio("asyncio:childwatch", "asyncio:default")
        theirs = f.e2e_ratio("asyncio:std-pidfd", "asyncio:default")
        check(
            "end to end: asyncio + childwatch default ≥ 1.3× asyncio's default",
            v,
            lambda x: x >= 1.3,
            f"{fmt(v)}×" + ("" if theirs is None else f" (asyncio's own Pidfd watcher: {theirs:.2f}×)"),
            f.e2e_ratios("asyncio:childwatch", "asyncio:default"),
        )
    text = ["| target | met? | figure (median) | repeats (min–max) |", "|---|---|---|---|"]
    for what, mark, show, per_repeat in rows:
        text.append(f"| {what} | {mark} | {show} | {per_repeat} |")
    return "\n".join(text)


def verdict(value: Optional[float], ok: Callable[[float], bool], per_repeat: List[float]) -> str:
    """Met or missed on the median; "(median only)" when the repeats
    fall on both sides of the target, so that the run's spread, not the
    watcher, decides the verdict."""
    if value is None:
        return "—"
    mark = "met" if ok(value) else "**MISSED**"
    if len({ok(x) for x in per_repeat}) > 1:
        mark += " (median only)"
    return mark


def plot(data: Dict[str, Any], paths: List[Path]) -> bool:
    """Small multiples, one column per watcher kind: churn/s (top) and CPU µs per child
    (bottom) against idle registered children; childwatch solid, asyncio dashed,
    the raw loop dotted black in every panel (and, gray in Threaded's and Pidfd's,
    the raw loop holding a pidfd per idle child, as they do).  Flat lines scale."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot")
        return False
    f = Figures(data)
    meta = data["meta"]
    levels = meta["levels"]
    names = meta["watchers"]
    kinds = [k for k in KINDS if any(n.split(":")[-1] == k for n in names if n != "raw")]
    xs = list(range(len(levels)))
    styles = {"cw": ("-", "o", "tab:blue"), "alt": (":", "^", "tab:green"), "std": ("--", "x", "tab:orange")}
    fig, axes = plt.subplots(2, len(kinds), figsize=(3.2 * len(kinds), 6.4), sharex=True, squeeze=False)
    churn_max = max([f.churn(n, lv) or 0 for n in names for lv in levels] + [1])
    for col, kind in enumerate(kinds):
        top, bottom = axes[0][col], axes[1][col]
        rows = [n for n in names if n == "raw" or n.split(":")[-1] == kind]
        if kind in ("Threaded", "Pidfd") and RAW_PIDFDS in names:
            rows.insert(1, RAW_PIDFDS)  # their floor: they too hold a pidfd per child
        for n in rows:
            if n == "raw":
                ls, marker, color = ":", "s", "black"
            elif n == RAW_PIDFDS:
                ls, marker, color = ":", "d", "gray"
            else:
                ls, marker, color = styles[n.split(":")[0]]
            lab = label(n, meta["default"]).replace("`", "")
            churn = [f.churn(n, lv) for lv in levels]
            cpu = [f.cpu(n, lv) for lv in levels]
            top.plot(
                xs,
                [v if v is not None else float("nan") for v in churn],
                ls,
                marker=marker,
                color=color,
                label=lab,
            )
            bottom.plot(
                xs,
                [v * 1e6 if v is not None else float("nan") for v in cpu],
                ls,
                marker=marker,
                color=color,
                label=lab,
            )
        top.set_title(kind + ("  (childwatch default)" if kind == meta["default"] else ""), fontsize=10)
        top.set_ylim(0, churn_max * 1.1)
        bottom.set_ylim(bottom=0)  # own scale per kind: MultiLoop's would flatten the rest
        for ax in (top, bottom):
            ax.grid(True, alpha=0.3)
            ax.set_xticks(xs)
            ax.set_xticklabels([str(lv) for lv in levels])
        bottom.set_xlabel("idle registered children")
        top.legend(fontsize=7, loc="lower left")
    axes[0][0].set_ylabel(f"children reaped /s ({INFLIGHT} in flight)")
    axes[1][0].set_ylabel("benchmark CPU µs per child")
    fig.suptitle(
        f"Cost curve, Python {meta['python']}, {meta['cpus']} CPUs ({meta['date']}): "
        "flat lines scale with idle children",
        fontsize=11,
    )
    fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=80)
    plt.close(fig)
    return True


def render_run(data: Dict[str, Any]) -> str:
    meta = data["meta"]
    table = targets(data)
    lines = [
        f"## Python {meta['python']} — {meta['date']}",
        "",
        f"- machine: {meta['machine']}",
        f"- Python: {meta['python_full']}; childwatch at {meta['commit']}; "
        f"{', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
        f"- command: `{meta['command']}` ({meta['repeats']} repeats, {data['elapsed_s']:.0f} s); "
        f"childwatch default here: {meta['default']}ChildWatcher",
        "- ×raw / ×asyncio / ×own: median over repeats of the ratio taken within one repeat;"
        " ×asyncio compares with the stdlib watcher of the same name; latency percentiles pool every"
        " repeat's samples",
    ]
    load = data.get("load") or []
    if load:
        lines.append(
            f"- machine load (1-min load average before each cell): median {statistics.median(load):.1f}, "
            f"max {max(load):.1f} on {meta['cpus']} CPUs"
            + (
                " — **the machine was busy: throughput figures are noisy, trust the ratios and "
                "CPU µs/child more**"
                if statistics.median(load) > meta["cpus"]
                else ""
            )
        )
    if data["failed"]:
        lines.append(f"- **failed cells**: {', '.join(data['failed'])}")
    if data["bad"]:
        lines.append(
            "- wrong returncodes seen (not timing, correctness): "
            + ", ".join(f"{k}: {v}" for k, v in data["bad"].items())
        )
    lines += ["", tables(data), "", "### Targets", "", table, ""]
    return "\n".join(lines)


def write_results_md() -> None:
    runs = []
    for p in sorted(RESULTS_DIR.glob("*.json")):
        with open(p) as fh:
            runs.append(json.load(fh))
    runs.sort(key=lambda d: d["meta"]["date"], reverse=True)
    runs.sort(key=lambda d: d["meta"]["python"] != PRIMARY_PYTHON)  # stable: primary first
    head = [
        "# childwatch benchmarks",
        "",
        "Written by `bench/run.py` (do not edit by hand): the latest full run on each Python,",
        f"Python {PRIMARY_PYTHON} first, then newest first.  Reproduce with one command from the",
        "repository root:",
        "",
        "```",
        "python3 bench/run.py                 # this Python; --python 3.9 for another pyenv one",
        "python3 bench/run.py --quick         # ~2 min smoke run, writes nothing",
        "python3 bench/run.py --watchers MultiLoop --tasks curve --compare /tmp/patched/src",
        "                                     # A/B a watcher patch in one run (writes nothing)",
        "```",
        "",
        "The first run makes `bench/.venv-X.Y` (childwatch editable + uvloop, trio, anyio,",
        "matplotlib); every measurement runs in a fresh worker process; cells run in a shuffled",
        "order, five repeats (three in runs before 2026-11-25 03:00), and every ratio is taken",
        "within one repeat; each target is judged on the median, and its row shows the range",
        'over the repeats; a verdict that some repeats contradict is marked "(median only)":',
        "there the machine's spread, not the watcher, decides.  The scaling table and the cost",
        "curve also time the raw loop holding one pidfd per idle child (as Pidfd and Threaded",
        "do): what those fds alone cost each spawn in the kernel.  Only compare ratios",
        "of one run: the machine is shared, and other work on it shows in the load line of each",
        "run.  `raw` is a blocking `os.wait()` loop, the practical limit.  Churn children are",
        "`/bin/true` started with `os.posix_spawn`, each callback starting the next one (the",
        "callback hops to the loop with `call_soon_threadsafe` when a watcher calls back from",
        "another thread, as asyncio itself does).  Idle children are `cat` processes blocked on",
        "a pipe.  Latency is measured from just before `os.kill(pid, SIGKILL)` to the first line",
        "of the callback.  CPU µs/child is the benchmark process's CPU time (all its threads)",
        "per reaped child: it moves far less than throughput when the machine is busy.",
        "The cost curve reaches 10,000 idle children in runs since 2026-12-02; spawning that many",
        "in every cell would take most of the run, so that point is measured in two of the",
        "repeats, and asyncio's Safe and MultiLoop (a `waitpid` per registered child at every",
        "SIGCHLD) churn fewer children there; the line under the table says what was run.",
        "The scale table (7, in the same runs) registers 10,000 live children with each watcher",
        "on each loop (asyncio, uvloop, trio-asyncio; asyncio's watchers on asyncio's own loop)",
        "under a soft RLIMIT_NOFILE of 1024, set by the worker whatever the machine allows, and",
        "checks every status: it shows which watchers hold a pidfd per child and stop at EMFILE,",
        "which need a thread per child, and which the loop refuses.",
        "The watchers' costs are analysed by hand in `bench/FINDINGS.md`, appended below the",
        "generated tables.",
        "",
        f"Cost curve on Python {PRIMARY_PYTHON}:",
        "",
        "![cost curve](cost_curve.png)",
        "",
    ]
    body = []
    for d in runs:
        body.append(render_run(d))
        py = d["meta"]["python"]
        if py != PRIMARY_PYTHON and (BENCH / f"cost_curve-{py}.png").exists():
            body.append(f"Cost curve on Python {py}:\n\n![cost curve {py}](cost_curve-{py}.png)\n")
    findings = BENCH / "FINDINGS.md"
    if findings.exists():
        # Hand-written analysis of the watchers' costs, kept beside the generated tables.
        body.append(findings.read_text())
    with open(BENCH / "RESULTS.md", "w") as fh:
        fh.write("\n".join(head + body))


def curve_paths(py: str) -> List[Path]:
    """Where a full run on Python ``py`` draws its cost curve."""
    return [BENCH / f"cost_curve-{py}.png"] + ([BENCH / "cost_curve.png"] if py == PRIMARY_PYTHON else [])


def regenerate() -> None:
    """Redraw every saved run's plots and rewrite RESULTS.md; run nothing."""
    for path in sorted(RESULTS_DIR.glob("*.json")):
        with open(path) as fh:
            saved = json.load(fh)
        plot(saved, curve_paths(saved["meta"]["python"]))
    write_results_md()
    log("rewrote bench/RESULTS.md and the plots")
