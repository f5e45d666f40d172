#!/usr/bin/env python3
"""Run childwatch's test suite on every Python 3.9–3.15 × every loop, and write the matrix.

    python3 compat/matrix.py [--versions 3.9,3.12] [-- PYTEST ARGS...]

For each Python it makes a fresh venv (``.matrix/venv-X.Y``), installs
childwatch with its test extras and every optional loop that installs there,
runs pytest with a JUnit report, then CPython's own ``test_subprocess`` with
each watcher plugged in (``compat/cpython_suite.py``), and finally writes
``compat/MATRIX.md`` and ``compat/matrix.json`` from those reports: which watcher works on which loop
and Python, with the reason for every cell that is not a pass.  Pythons 3.9–3.13
come from pyenv or PATH; 3.14 and 3.15, when missing, from a Debian sid chroot
that ``compat/sid.sh`` provisions; free-threaded 3.13t (3.14t, 3.15t the day Debian's archive
serves their source) built there by ``compat/ft_build.sh``, run with the GIL off and checked off
(``compat/gil_check.py``).  ruff and ``mypy --strict`` run once.

The Pythons run side by side (``--jobs``, default 3), each a job of its own, the longest
first (``LONGEST_FIRST``); the sid chroot's package manager is serialised by sid.sh's lock;
each job's output is printed whole when it ends.

Real projects (``compat/real_projects.py``: pynvim, aiozmq, streamz, each its own test
suite with the ``childwatch.legacy`` opt-in, 3.14 and 3.15 against 3.13) run as one more
job, after the PyPys and the free-threaded builds, whenever 3.14 or 3.15 is asked for; ``--no-real-projects`` skips
them.  Their chroot runs use venvs of their own under ``.matrix/real`` and enter the
chroot only through sid.sh's lock, so they run beside the sid Pythons' jobs safely.

Real suites (``compat/real_suites.py``: aiofiles, httpcore, anyio's subprocess tests, each its own
test suite with the README's pytest-asyncio or anyio conftest lines, on asyncio, uvloop and
trio-asyncio, CPython 3.13 only) run as one more job, after the CPythons, whenever 3.13 is asked for;
``--no-real-suites`` skips them.  Their venvs are under ``.matrix/suites``.

Exit status 0 only if every Python was found, ran at least one test, and
failed none, CPython's suite failed and errored nowhere, the linters passed,
no real project's test passed on 3.13 but not on 3.14 or 3.15, and no real suite's failure
class is childwatch's (a
free-threaded build with no source to build it from is shown, with the
reason, and is not a failure).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".matrix"
VERSIONS = [
    "3.9",
    "3.10",
    "3.11",
    "3.12",
    "3.13",
    "3.13t",
    "3.14",
    "3.14t",
    "3.15",
    "3.15t",
    "pypy3.11",
]
LONGEST_FIRST = [
    *("3.13t", "pypy3.11", "3.14t", "3.15t", "real-projects"),
    *("3.9", "3.13", "3.10", "3.14", "3.11", "3.12", "3.15", "real-suites"),
]
"""The order the jobs start in, the longest first (a full run's minutes, under load: 3.13t a build
(not niced: the longest chain) and ~25, the PyPys ~20, the real projects ~6, the CPythons 5–12, the
real suites ~4–7: last, a short job to fill the tail)."""
SID_VERSIONS = {"3.14": "3.14", "3.15": "3.15", "pypy3.11": "pypy3"}
"""The Pythons that come from the sid chroot when the host lacks them: version -> sid.sh's name."""
FREE_THREADED = {"3.13t": "3.13", "3.14t": "3.14", "3.15t": "3.15"}
"""Free-threaded CPythons (``--disable-gil``) that compat/ft_build.sh builds in the sid chroot from
Debian's source package of that CPython (or restores from its cache): version -> its X.Y."""
FREE_THREADED_PIP = {"PYTHON_GIL": "0", "PIP_ONLY_BINARY": "uvloop,greenlet"}
"""The environment of their jobs.  The GIL kept off even when a C extension not marked safe without it
is imported (greenlet 3.2's cp313t wheel, which trio-asyncio loads, is not: it would turn the GIL
on); compat/gil_check.py checks it stayed off.  uvloop and greenlet from wheels only: uvloop has
no cp313t wheel and its extra is left out rather than compiled (minutes, to fail)."""
EXTRAS = "test,uvloop,trio,trio-asyncio"
PYPI_LOOPS = {
    "rloop": "rloop",
    "veloxloop": "veloxloop",
    "uringcore": "uringcore",
    "zuvloop": "zuvloop",
    "talyn": "talyn",
    "loopmini": "loopmini",
    "rsloop": "rsloop",
    "qasync": "qasync PySide6-Essentials",  # a Qt binding to run on, headless (QT_QPA_PLATFORM=offscreen)
    "asyncio_gevent": "asyncio-gevent",  # checked after gevent.monkey.patch_all(), as it runs
}
"""The asyncio loops from PyPI that each venv gets wherever a wheel of them installs
(``--only-binary``: nothing is compiled), each alone, so one that does not install
there hides none of the others; the cross-check (tests/test_every_loop.py) runs on
each that did.  Left out: gbulb (needs Debian's python3-gi, not a wheel)."""
LOOPS = ["asyncio", "uvloop", "trio-asyncio", "trio"]
WATCHERS = ["Safe", "Fast", "MultiLoop", "Threaded", "Pidfd"]
PARAM = re.compile(r"\[(?P<loop>asyncio|uvloop|trio-asyncio|trio)-(?P<watcher>\w+)ChildWatcher\]")


_job = threading.local()  # .out: the log file of the job this thread runs, if any
_print_lock = threading.Lock()


def log(message: str) -> None:
    out = getattr(_job, "out", None)
    if out is None:
        with _print_lock:
            print(f"matrix: {message}", flush=True)
    else:
        out.write(f"matrix: {message}\n")
        out.flush()


def in_job(name: str, work: Any, *args: Any) -> Any:
    """``work(*args)`` with everything it logs and runs written to
    ``.matrix/log-NAME.txt``, printed whole once it is done."""
    path = WORK / f"log-{name}.txt"
    with open(path, "w", encoding="utf-8", errors="replace") as out:
        _job.out = out
        try:
            return work(*args)
        finally:
            _job.out = None
            with _print_lock:
                print(f"matrix: ---- {name} ----", flush=True)
                sys.stdout.write(path.read_text(encoding="utf-8", errors="replace"))
                sys.stdout.flush()


def is_pypy(version: str) -> bool:
    return version.startswith("pypy")


def find_python(version: str) -> Optional[str]:
    """A host interpreter for ``version`` ("3.X": CPython, pyenv first, then PATH;
    "pypy3.X": PyPy on PATH)."""
    if is_pypy(version):
        candidates = [p for p in [shutil.which(version), shutil.which("pypy3")] if p]
    else:
        root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
        found = sorted(
            glob.glob(f"{root}/versions/{version}.*/bin/python"),
            key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parent.parent.name)],
        )
        candidates = found[-1:] + [p for p in [shutil.which(f"python{version}")] if p]
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.implementation.name, '%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        implementation, _, found_version = probe.stdout.strip().partition(" ")
        wanted = ("pypy", version[4:]) if is_pypy(version) else ("cpython", version)
        if probe.returncode == 0 and (implementation, found_version) == wanted:
            return candidate
    return None


def run(cmd: List[str], **kwargs: Any) -> int:
    log("$ " + " ".join(cmd))
    out = getattr(_job, "out", None)
    if out is not None:
        kwargs.setdefault("stdout", out)
        kwargs.setdefault("stderr", subprocess.STDOUT)
    return subprocess.run(cmd, **kwargs).returncode


def test_host(version: str, python: str, pytest_args: List[str]) -> Tuple[int, str]:
    venv = WORK / f"venv-{version}"
    if not (venv / "bin" / "python").exists() and run([python, "-m", "venv", str(venv)]) != 0:
        return 1, "venv creation failed"
    vpy = str(venv / "bin" / "python")
    run([vpy, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    if not install_extras(lambda spec: run([vpy, "-m", "pip", "install", "-q", "-e", f"{REPO}[{spec}]"])):
        return 1, "pip install failed"
    for packages in PYPI_LOOPS.values():
        run([vpy, "-m", "pip", "install", "-q", "--only-binary", ":all:", *packages.split()])
    junit = WORK / f"junit-{version}.xml"
    code = run([vpy, *suite_command(junit, pytest_args)], cwd=REPO)
    with open(WORK / f"loops-{version}.json", "w") as report:
        run([vpy, "-m", "childwatch", "--probe", "--json"], cwd=REPO, stdout=report)
    if not is_pypy(version):
        run(
            [vpy, str(REPO / "compat" / "cpython_suite.py"), f"--json={WORK / f'cpython-{version}.json'}"],
            cwd=REPO,
        )
    kind = "PyPy" if is_pypy(version) else "CPython"
    return code, f"{kind} from {python}"


def suite_command(junit: Any, pytest_args: List[str]) -> List[str]:
    """The arguments after ``python`` that run the whole test suite for one Python: every
    test (``--slow``), in one process (``-n 0``: the jobs already share the cores), JUnit
    written to ``junit``."""
    return [
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        "0",
        "--slow",
        f"--junitxml={junit}",
        *pytest_args,
    ]


def install_extras(pip_install: Any) -> bool:
    """``pip_install(extras)`` with every extra, or else ``test`` and then each
    optional loop alone: one that does not install here must not hide the rest."""
    if pip_install(EXTRAS) == 0:
        return True
    if pip_install("test") != 0:
        return False
    for extra in EXTRAS.split(",")[1:]:
        pip_install(extra)
    return True


def test_sid(version: str, pytest_args: List[str], env: Optional[Dict[str, str]] = None) -> Tuple[int, str]:
    sid = ["bash", str(REPO / "compat" / "sid.sh"), SID_VERSIONS.get(version, version)]
    env = env or dict(os.environ)

    def pip_install(spec: str) -> int:
        return run([*sid, "true"], env=dict(env, CHILDWATCH_SID_PIP=f"-q -e /src[{spec}]"))

    if not install_extras(pip_install):
        return 1, "provisioning or pip install in the sid chroot failed"
    for packages in PYPI_LOOPS.values():
        run([*sid, "true"], env=dict(env, CHILDWATCH_SID_PIP=f"-q --only-binary :all: {packages}"))
    junit = f"/src/.matrix/junit-{version}.xml"
    code = run(
        [*sid, "python", *suite_command(junit, pytest_args)],
        env=env,
    )
    run(
        [*sid, "sh", "-c", f"python -m childwatch --probe --json > /src/.matrix/loops-{version}.json"],
        env=env,
    )
    if not is_pypy(version):
        run(
            [*sid, "python", "compat/cpython_suite.py", f"--json=/src/.matrix/cpython-{version}.json"],
            env=env,
        )
    return code, f"{'PyPy' if is_pypy(version) else 'CPython'} from the Debian sid chroot (compat/sid.sh)"


def test_free_threaded(version: str, pytest_args: List[str]) -> Tuple[Optional[int], str]:
    """Build (or restore) ``version`` with compat/ft_build.sh, then what :func:`test_sid` does, in
    :data:`FREE_THREADED_PIP`'s environment, pytest with compat/gil_check.py (the GIL asked after
    every test; a test of its own fails if it was ever on), CPython's suite failing a watcher's run
    that ends with the GIL on.  ``(None, reason)``: Debian has no source to build it from."""
    cmd = ["bash", str(REPO / "compat" / "ft_build.sh"), FREE_THREADED[version]]
    log("$ " + " ".join(cmd))
    build = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=getattr(_job, "out", None), text=True)
    lines = build.stdout.strip().splitlines()
    line = lines[-1] if lines else f"{version} failed: ft_build.sh exited {build.returncode}"
    log(line)
    status, _, detail = line.partition(" ")[2].partition(": ")
    if status == "no-source":
        return None, f"no source: {detail}"
    built = re.match(r"(\S+) from (\S+ \S+) at ", detail)
    if build.returncode != 0 or status != "ok" or not built:
        return 1, f"the build failed: {detail}"
    code, _ = test_sid(
        version, [*pytest_args, "-p", "compat.gil_check"], dict(os.environ, **FREE_THREADED_PIP)
    )
    return code, (
        f"free-threaded CPython {built[1]}, built by compat/ft_build.sh from Debian's {built[2]} source "
        "in the sid chroot; PYTHON_GIL=0, the GIL checked off"
    )


def read_junit(path: Path) -> List[Dict[str, str]]:
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, reason = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, reason = "failed", (child.get("message") or "")[:200]
            elif child.tag == "skipped":
                outcome, reason = "skipped", (child.get("message") or "")[:200]
        cases.append(
            {"id": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome, "reason": reason}
        )
    return cases


def summarise(mine: List[Dict[str, str]], refused: Optional[str] = None) -> Dict[str, Any]:
    """One cell from the test cases that back it.

    ``refused``: the cases prove a refusal, so passing means "unsupported" for that reason.
    """
    if not mine:
        return {"status": "not run"}
    failed = [c["id"] for c in mine if c["outcome"] == "failed"]
    passed = [c for c in mine if c["outcome"] == "passed"]
    if failed:
        return {"status": "FAIL", "failed": failed}
    if passed and refused:
        return {"status": "unsupported", "reason": refused}
    if passed:
        return {"status": "pass", "tests": len(passed)}
    return {"status": "unavailable", "reason": mine[0]["reason"]}


def matching(cases: List[Dict[str, str]], pattern: str) -> List[Dict[str, str]]:
    return [c for c in cases if re.search(pattern, c["id"])]


SIGCHLD_WATCHERS = ("Safe", "Fast", "MultiLoop")

REFUSED = "UnsupportedLoopError, with the reason (tested)"

# API × loop → (test-id pattern, the refusal that passing proves, if any).
API_RULES: Dict[str, Dict[str, Tuple[str, Optional[str]]]] = {
    "set/get_child_watcher": {
        "asyncio": (r"test_loops::test_(set_then_get|runner_with|each_loop_in|process_wide)", None),
        "uvloop": (r"test_loops::test_uvloop_refuses_custom_watchers", REFUSED),
        "trio-asyncio": (r"test_trio_asyncio_refuses_custom_watchers", REFUSED),
        "trio": (
            r"test_plain_trio_claims",
            "trio has no child watcher (one set for asyncio is shown unused)",
        ),
    },
    "asyncio's own set_child_watcher / loop hook": {
        "asyncio": (r"test_stdlib_dropin::", None),
    },
    "capabilities()": {
        "asyncio": (r"test_capabilities::test_every_claim_holds\[asyncio\]", None),
        "uvloop": (r"test_capabilities::test_every_claim_holds\[uvloop\]", None),
        "trio-asyncio": (r"test_trio_asyncio_refuses_custom_watchers", None),
        "trio": (r"test_plain_trio_claims", None),
    },
    "wait_pid()": {
        "asyncio": (r"test_wait_pid::.*\[(anyio-)?asyncio-", None),
        "uvloop": (r"test_wait_pid::.*\[uvloop-", None),
        "trio-asyncio": (r"test_wait_pid::.*trio_asyncio", None),
        "trio": (r"test_wait_pid::.*\[(anyio-)?trio-", None),
    },
    "childwatch.legacy (3.14+ opt-in)": {
        "asyncio": (
            r"test_legacy::test_(old_program|get_creates|does_nothing)|test_legacy_differential::",
            None,
        ),
    },
}


def read_cpython_suite(path: Path) -> Dict[str, Any]:
    """compat/cpython_suite.py's results per watcher ({} if it did not run)."""
    if not path.exists():
        return {}
    watchers: Dict[str, Any] = json.loads(path.read_text())["watchers"]
    return watchers


def read_loop_report(path: Path) -> Dict[str, Any]:
    """``python -m childwatch --probe --json``'s record of every loop ({} if it did not run)."""
    try:
        loops: Dict[str, Any] = json.loads(path.read_text())["loops"]
    except (OSError, ValueError, KeyError):
        return {}
    return loops


REPORT_COLUMNS = ("subprocesses", "custom_watcher", *(f"{w}ChildWatcher" for w in WATCHERS))
REPORT_HEADERS = ("subprocesses", "set_child_watcher", *WATCHERS)


def loop_answers(record: Dict[str, Any]) -> List[Tuple[str, Optional[str]]]:
    """(word, reason) of each of :data:`REPORT_COLUMNS` in one loop's record."""
    answers = []
    for column in REPORT_COLUMNS:
        support = record[column] if column in record else record["watchers"][column]
        answers.append((support["status"], support["reason"]))
    return answers


def answers_table(
    header: List[str], rows: List[Tuple[List[str], List[Tuple[str, Optional[str]]]]]
) -> List[str]:
    """A Markdown table whose answer cells are the report's words, each reason
    numbered once beneath it (the same reason, the same number)."""
    notes: Dict[str, int] = {}
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for lead, answers in rows:
        cells = []
        for word, reason in answers:
            if reason:
                number = notes.setdefault(reason, len(notes) + 1)
                word = f"{word} [{number}]"
            cells.append(word)
        lines.append("| " + " | ".join(lead + cells) + " |")
    if notes:
        lines.append("")
        lines += [f"{number}. {reason}" for reason, number in notes.items()]
    return lines


def every_loop() -> List[str]:
    """The loop families of the report, in its order: childwatch's own four, then PyPI's."""
    return [*LOOPS, *PYPI_LOOPS]


CROSS_CHECKS = {
    "trio-asyncio": r"test_trio_asyncio_refuses_custom_watchers",  # in a process of its own
    "trio": r"test_plain_trio_claims",
}
"""The tests that check the report of the families tests/test_every_loop.py leaves to others."""


def loop_sections(pythons: Dict[str, Any]) -> List[str]:
    """MATRIX.md's per-loop tables: each Python's report of the loop and whether
    the cross-check held it to what happened."""
    lines = [
        "",
        "## Every loop: what `python -m childwatch --probe` says, and whether it held",
        "",
        "Each venv gets every loop from PyPI whose wheel installs there (`PYPI_LOOPS` in",
        "compat/matrix.py).  `cross-check`: tests/test_every_loop.py ran every watcher (16 children",
        "each, beside the loop's own subprocesses), `default_watcher()`, `wait_pid`,",
        "`set_child_watcher` and the loop's own `create_subprocess_exec` on it, and held every",
        "answer of the report to what happened (`pass`), or it was not installed (`-`).",
    ]
    for family in every_loop():
        rows = []
        for version, res in pythons.items():
            record = res.get("loops", {}).get(family)
            if not record or not record.get("available"):
                why = (record or {}).get("reason") or "not installed (no wheel installs here)"
                rows.append(([version, "-", "-"], [(why, None)] + [("", None)] * (len(REPORT_COLUMNS) - 1)))
                continue
            pattern = CROSS_CHECKS.get(family, rf"test_every_claim_holds_on\[{re.escape(family)}\]")
            check = summarise(matching(res.get("cases", []), pattern))
            rows.append(
                ([version, str(record.get("loop_version") or "-"), render_cell(check)], loop_answers(record))
            )
        lines += ["", f"### {family}", ""]
        lines += answers_table(["Python", "version", "cross-check", *REPORT_HEADERS], rows)
    return lines


README_BEGIN = "<!-- loop table: written by compat/matrix.py -->"
README_END = "<!-- end of loop table -->"


def readme_loop_table(pythons: Dict[str, Any]) -> List[str]:
    """The README's "What each loop allows": a row per loop, from the report on
    the newest CPython where that loop installed and its subprocesses are not
    unsupported (a release that installs but cannot run there, trio-asyncio 0.16
    on 3.14+, would hide its answers; else the newest of all); "installs on"
    names the CPythons where that same release did."""
    rows = []
    for family in every_loop():
        found = [
            (version, res["loops"][family])
            for version, res in pythons.items()
            if not is_pypy(version) and res.get("loops", {}).get(family, {}).get("available")
        ]
        if not found:
            continue
        runs = [(v, r) for v, r in found if r["subprocesses"]["status"] != "unsupported"]
        newest, record = (runs or found)[-1]
        same = [
            v for v, r in found if family == "asyncio" or r.get("loop_version") == record.get("loop_version")
        ]
        where = ", ".join(same)  # (an older release elsewhere: MATRIX.md has its row)
        loop_version = record.get("loop_version") or ""
        name = "asyncio (stdlib)" if family == "asyncio" else f"{family} {loop_version}".strip()
        rows.append(([name, where, newest], loop_answers(record)))
    return answers_table(["loop", "installs on", "answers on", *REPORT_HEADERS], rows)


def write_readme_table(pythons: Dict[str, Any]) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    head, begin, rest = text.partition(README_BEGIN)
    _, end, tail = rest.partition(README_END)
    if not begin or not end:
        log(f"README.md has no {README_BEGIN!r} ... {README_END!r}: its loop table left as it was")
        return
    table = "\n".join(readme_loop_table(pythons))
    readme.write_text(f"{head}{begin}\n{table}\n{end}{tail}")
    log("wrote the loop table in README.md")


def cpython_suite_ok(results: Dict[str, Any]) -> bool:
    return set(results) == set(WATCHERS) and all(
        r["run"] > 0 and r["failures"] == 0 and r["errors"] == 0 for r in results.values()
    )


def render_suite_cell(r: Optional[Dict[str, Any]]) -> str:
    if r is None:
        return "**not run**"
    text = f"{r['run']} run, {r['failures']} failed, {r['errors']} errors, {r['skipped']} skipped"
    if r["failures"] or r["errors"] or not r["run"]:
        text = f"**FAIL**: {text}; " + "; ".join(r.get("problems", []))[:300]
    elif r.get("skip_reasons"):
        text += " (" + "; ".join(r["skip_reasons"]) + ")"
    return text


def watcher_cell(cases: List[Dict[str, str]], loop: str, watcher: str) -> Dict[str, Any]:
    if loop == "trio-asyncio":
        # One test in its own process watches a child with every watcher on trio-asyncio.
        return summarise(matching(cases, r"test_trio_asyncio_refuses_custom_watchers"))
    if loop == "trio":
        trio_cases = matching(cases, r"test_plain_trio_claims")
        if watcher in ("Safe", "Fast", "Pidfd") and any(c["outcome"] == "passed" for c in trio_cases):
            return {"status": "unsupported", "reason": "needs an asyncio loop (RuntimeError, tested)"}
        return summarise(trio_cases)
    mine = [c for c in cases if (m := PARAM.search(c["id"])) and (m["loop"], m["watcher"]) == (loop, watcher)]
    if loop == "uvloop" and watcher in SIGCHLD_WATCHERS:
        refusal = matching(cases, r"test_watchers::test_uvloop_refuses_sigchld_watchers")
        return summarise(refusal, REFUSED)
    return summarise(mine)


def render_cell(c: Dict[str, Any]) -> str:
    text = {"pass": f"pass {c.get('tests')}", "FAIL": "**FAIL**"}.get(c["status"], c["status"])
    return text + (f": {c['reason']}" if c.get("reason") else "")


def write_matrix(results: Dict[str, Dict[str, Any]]) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    machine = f"{platform.system()} {platform.release()} {platform.machine()}"
    data: Dict[str, Any] = {"generated": now, "machine": machine, "pythons": {}}
    for version, res in results.items():
        cases = res.get("cases", [])
        watchers = {f"{loop}/{w}": watcher_cell(cases, loop, w) for loop in LOOPS for w in WATCHERS}
        apis = {
            f"{api}/{loop}": summarise(matching(cases, pattern), refused)
            for api, per_loop in API_RULES.items()
            for loop, (pattern, refused) in per_loop.items()
        }
        summary = {k: v for k, v in res.items() if k != "cases"}
        data["pythons"][version] = {**summary, "watchers": watchers, "apis": apis}
    (REPO / "compat" / "matrix.json").write_text(json.dumps(data, indent=1) + "\n")

    lines = [
        "# Compatibility matrix",
        "",
        f"Produced by `python3 compat/matrix.py` on {now} ({machine}) from the JUnit reports of the",
        "test suite on each Python; do not edit by hand. `pass N`: N tests passed; `unsupported`: the",
        "refusal itself is tested; `unavailable`: the loop does not install or import there.",
        "",
        "Every run here is on Linux. macOS, FreeBSD and OpenBSD are simulated only (their `waitid`",
        "constants and `siginfo_t` layouts byte by byte, their kernels' orderings of a child's exit by",
        "simulated kernels: `tests/test_platform_abis.py`, `tests/test_simulated_kernels.py`); childwatch",
        "has never run on a real macOS or BSD kernel.",
        "",
        "## Summary per Python",
        "",
        "| Python | interpreter | tests passed | failed | skipped | seconds | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for version, res in data["pythons"].items():
        lines.append(
            f"| {version} | {res.get('interpreter', '-')} | {res.get('passed', 0)} | {res.get('failed', 0)} | "
            f"{res.get('skipped', 0)} | {res.get('seconds', '-')} | {res['result']} |"
        )
    # A free-threaded build that could not be had has its summary row only (the reason is there).
    tested = {version: res for version, res in data["pythons"].items() if not res.get("unbuilt")}
    for loop in LOOPS:
        lines += ["", f"## Watchers on {loop}", "", "| Python | " + " | ".join(WATCHERS) + " |"]
        lines.append("|---|" + "---|" * len(WATCHERS))
        for version, res in tested.items():
            row = [render_cell(res["watchers"][f"{loop}/{w}"]) for w in WATCHERS]
            lines.append(f"| {version} | " + " | ".join(row) + " |")
    lines += [
        "",
        "## CPython's own test_subprocess, with each childwatch watcher plugged in",
        "",
        "`compat/cpython_suite.py`: the interpreter's `test.test_asyncio.test_subprocess` watcher tests,",
        "through asyncio's policy on 3.9-3.13 as the module plugs in asyncio's watchers, through",
        "`childwatch.set_child_watcher(watcher, loop)` on 3.14+ (its docstring says exactly how).",
        'A test that leaves a thread or a child behind counts as failed (regrtest\'s "env changed").',
        "",
        "| Python | " + " | ".join(WATCHERS) + " |",
        "|---|" + "---|" * len(WATCHERS),
    ]
    for version, res in tested.items():
        if is_pypy(version):
            continue  # CPython's test package is CPython's
        suite = res.get("cpython_suite", {})
        lines.append(f"| {version} | " + " | ".join(render_suite_cell(suite.get(w)) for w in WATCHERS) + " |")
    lines += loop_sections({version: results[version] for version in tested})
    for api, per_loop in API_RULES.items():
        lines += ["", f"## API: {api}", "", "| Python | " + " | ".join(per_loop) + " |"]
        lines.append("|---|" + "---|" * len(per_loop))
        for version, res in tested.items():
            row = [render_cell(res["apis"][f"{api}/{loop}"]) for loop in per_loop]
            lines.append(f"| {version} | " + " | ".join(row) + " |")
    (REPO / "compat" / "MATRIX.md").write_text("\n".join(lines) + "\n")
    log(f"wrote {REPO / 'compat' / 'MATRIX.md'} and matrix.json")
    write_readme_table(results)


def lint() -> bool:
    venv = WORK / "venv-lint"
    if not (venv / "bin" / "python").exists():
        run([sys.executable, "-m", "venv", str(venv)])
    vpy = str(venv / "bin" / "python")
    ok = run([vpy, "-m", "pip", "install", "-q", "-e", f"{REPO}[lint,test,uvloop,trio]"]) == 0
    ok &= run([vpy, "-m", "ruff", "check", "src", "tests", "compat", "bench"], cwd=REPO) == 0
    ok &= run([vpy, "-m", "ruff", "format", "--check", "src", "tests", "compat", "bench"], cwd=REPO) == 0
    ok &= run([vpy, "-m", "mypy", "--strict"], cwd=REPO) == 0  # the files pyproject.toml names
    return ok


def package() -> bool:
    """Build the sdist and the wheel, check their metadata and contents, install
    the wheel into a fresh venv and run the test suite of the sdist against it
    (not against this checkout)."""
    tools = WORK / "venv-package"
    if not (tools / "bin" / "python").exists():
        run([sys.executable, "-m", "venv", str(tools)])
    tpy = str(tools / "bin" / "python")
    dist = WORK / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    ok = run([tpy, "-m", "pip", "install", "-q", f"{REPO}[package]"]) == 0
    ok = ok and run([tpy, "-m", "build", "--outdir", str(dist), str(REPO)]) == 0
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    ok = ok and len(wheels) == len(sdists) == 1
    ok = ok and run([tpy, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)]) == 0
    if not ok:
        return False
    unpacked = WORK / "sdist"
    shutil.rmtree(unpacked, ignore_errors=True)
    shutil.unpack_archive(str(sdists[0]), str(unpacked))
    (root,) = unpacked.iterdir()
    for needed in ("LICENSE", "CHANGELOG.md", "README.md", "tests/conftest.py", ".ci/run"):
        if not (root / needed).exists():
            log(f"package: the sdist lacks {needed}")
            return False
    venv = WORK / "venv-wheel"
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    vpy = str(venv / "bin" / "python")
    if run([vpy, "-m", "pip", "install", "-q", f"childwatch[test,uvloop,trio] @ {wheels[0].as_uri()}"]) != 0:
        return False
    where = "import childwatch, sys; assert '/site-packages/' in childwatch.__file__, childwatch.__file__"
    ok = run([vpy, "-c", where], cwd=root) == 0
    return ok and run([vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"], cwd=root) == 0


def real_projects() -> bool:
    """compat/real_projects.py: each project's own suite, 3.14/3.15 no worse than 3.13."""
    return run([sys.executable, str(REPO / "compat" / "real_projects.py")], cwd=REPO) == 0


REAL_PROJECTS = "real projects (their own suites with the legacy opt-in: 3.14/3.15 no worse than 3.13)"


def real_suites() -> bool:
    """compat/real_suites.py: each project's own suite on every loop through the plugin, no failure
    class childwatch's."""
    return run([sys.executable, str(REPO / "compat" / "real_suites.py")], cwd=REPO) == 0


REAL_SUITES = (
    "real suites (their own suites on asyncio, uvloop, trio-asyncio via the plugin: no failure childwatch's)"
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--no-lint", action="store_true")
    parser.add_argument("--jobs", type=int, default=3, help="Pythons (and checks) run side by side")
    parser.add_argument(
        "--no-package", action="store_true", help="skip building and testing the sdist and wheel"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the matrix from the last run's reports"
    )
    parser.add_argument(
        "--no-real-projects",
        action="store_true",
        help="skip compat/real_projects.py (real projects' own suites on 3.13, 3.14 and 3.15)",
    )
    parser.add_argument(
        "--no-real-suites",
        action="store_true",
        help="skip compat/real_suites.py (real projects' own suites on every loop through the plugin, on 3.13)",
    )
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    versions = args.versions.split(",")

    def one(version: str) -> Dict[str, Any]:
        started = time.monotonic()
        junit = WORK / f"junit-{version}.xml"
        suite = WORK / f"cpython-{version}.json"
        if not args.report_only:
            suite.unlink(missing_ok=True)
            (WORK / f"loops-{version}.json").unlink(missing_ok=True)
        python = find_python(version)
        ran = WORK / f"run-{version}.json"  # how the last real run of it went: the report's header
        seconds: Optional[int] = None
        if args.report_only:
            code, interpreter = (0, "(saved report)") if junit.exists() else (1, "no saved report")
            if ran.exists() and junit.exists():
                code, interpreter, seconds = json.loads(ran.read_text())
        elif python is not None:
            junit.unlink(missing_ok=True)
            ran.unlink(missing_ok=True)
            code, interpreter = test_host(version, python, args.pytest_args)
        elif version in SID_VERSIONS:
            junit.unlink(missing_ok=True)
            ran.unlink(missing_ok=True)
            code, interpreter = test_sid(version, args.pytest_args)
        elif version in FREE_THREADED:
            junit.unlink(missing_ok=True)
            ran.unlink(missing_ok=True)
            (WORK / f"unbuilt-{version}.txt").unlink(missing_ok=True)
            code, interpreter = test_free_threaded(version, args.pytest_args)
            if code is None:  # a Python we cannot get: shown, with the reason, not counted against us
                (WORK / f"unbuilt-{version}.txt").write_text(interpreter)
        else:
            return {"result": "MISSING", "interpreter": "not found", "ok": False}
        if code is None or (args.report_only and (WORK / f"unbuilt-{version}.txt").exists()):
            why = (WORK / f"unbuilt-{version}.txt").read_text()
            return {"result": f"not built: {why}", "interpreter": "-", "ok": True, "unbuilt": True}
        if seconds is None:
            seconds = round(time.monotonic() - started)
            if not args.report_only:
                ran.write_text(json.dumps([code, interpreter, seconds]))
        cases = read_junit(junit) if junit.exists() and code in (0, 1) else []
        counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "skipped")}
        cpython = read_cpython_suite(suite)
        loops = read_loop_report(WORK / f"loops-{version}.json")
        passed = code == 0 and counts["passed"] > 0 and counts["failed"] == 0
        suite_ok = is_pypy(version) or cpython_suite_ok(cpython)
        result = "pass" if passed else f"FAIL (pytest exit {code})"
        if not suite_ok:
            result += "; CPython's test_subprocess: FAIL"
        log(f"Python {version}: {result} {counts}")
        return {
            "result": result,
            "ok": passed and suite_ok,
            "cpython_suite": cpython,
            "loops": loops,
            "interpreter": interpreter,
            "seconds": seconds,
            "cases": cases,
            **counts,
        }

    # Longest first, each Python a job of its own (sid.sh's lock serialises the chroot's package
    # manager; its venvs are per version), so the PyPys and the free-threaded build are not the tail.
    real = any(v in versions for v in ("3.14", "3.15")) and not (args.no_real_projects or args.report_only)
    suites = "3.13" in versions and not (args.no_real_suites or args.report_only)
    queue = sorted(
        [*versions, *(["real-projects"] if real else []), *(["real-suites"] if suites else [])],
        key=lambda name: LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST),
    )
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = {}
        checks = {}
        for name in queue:
            if name == "real-projects":
                checks[REAL_PROJECTS] = pool.submit(in_job, name, real_projects)
            elif name == "real-suites":
                checks[REAL_SUITES] = pool.submit(in_job, name, real_suites)
            else:
                runs[name] = pool.submit(in_job, name, one, name)
        if not args.no_lint and not args.report_only:
            checks["lint"] = pool.submit(in_job, "lint", lint)
        if not args.no_package and not args.report_only:
            checks["package (sdist and wheel built, checked, the wheel tested)"] = pool.submit(
                in_job, "package", package
            )
        done = {version: future.result() for version, future in runs.items()}
        check_results = {name: bool(future.result()) for name, future in checks.items()}
    results = {version: done[version] for version in versions}
    ok = all(res.pop("ok") for res in results.values())
    if args.pytest_args or args.versions != ",".join(VERSIONS):
        log("partial run: compat/MATRIX.md left as it was")
    else:
        write_matrix(results)
    for name, check_ok in check_results.items():
        log(f"{name}: {'pass' if check_ok else 'FAIL'}")
        ok &= check_ok
    for version, res in results.items():
        log(f"{version}: {res['result']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
