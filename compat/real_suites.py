#!/usr/bin/env python3
"""Real projects' own test suites on every loop through the pytest plugin's README integration.

    python3 compat/real_suites.py [--projects aiofiles,httpcore,anyio] [--loops asyncio,uvloop,trio-asyncio]

For each project in :data:`SUITES` (a PyPI sdist that carries its tests, pinned by version and
sha256, fetched as compat/real_projects.py fetches its own) on CPython :data:`PYTHON`: make a venv
of its own under ``.matrix/suites/``, install childwatch from this checkout, the project, its
pinned test dependencies and the loops (uvloop, trio-asyncio), then run the project's own tests
with pytest (``--timeout`` per test, a budget per run), one run after another:

- the **baseline**: the sdist as it is, ``-p no:childwatch`` (the plugin not even loaded): the
  project's own loop(s): asyncio, and uvloop or trio where its own suite parametrises them;
- one run per loop of :data:`LOOPS`: the sdist with the README's conftest lines added at the end
  of the conftest that the README's integration belongs in (:attr:`Suite.conftest`) and nothing
  else changed, the loop chosen with ``--loop-impls=LOOP``.  Under the anyio integration every
  run also runs anyio's ``trio`` backend; those results are read from the asyncio run only.

Each test is keyed by its id without the loop's part (``test_x[uvloop]`` and the baseline's
``test_x[asyncio+uvloop]`` or ``test_x`` are one test).  Every test that fails or errors under the
plugin is put in a *failure class*, with its cause:

- **project**: it fails (or errors) in the baseline on the same loop too;
- **loop** or **project** from :attr:`Suite.known`: on a loop other than asyncio, an explicit
  (project, loop, regex on "ID MESSAGE", cause, one-line reason) entry, reviewed by hand: no
  blanket allowance;
- **childwatch**: anything else; on asyncio, any test that passed in the baseline and does not
  pass under the plugin (failed, errored, skipped or gone) is childwatch's.

Writes ``compat/REAL_SUITES.md`` and ``compat/real_suites.json`` (passed, failed, errors,
skipped, xfailed per project per loop, wall times, every failure class with its cause); exit
status 1 if any failure class is childwatch's, a download does not match its sha256, a venv
cannot be made, or a baseline passed no test.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_projects import PYTEST, fetch_sdist, find_python, read_junit, run, unpack

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".matrix" / "suites"
PYTHON = "3.13"
LOOPS = ("asyncio", "uvloop", "trio-asyncio")
TEST_TIMEOUT = 60  # seconds, each test (pytest-timeout)
RUN_TIMEOUT = 150  # seconds, one suite on one loop (each takes under 20 s here)
BUDGET = 600  # seconds, the whole job (installs too; ~4 min here): a hang must not eat the CI's hour
INSTALL_TIMEOUT = 600
DEADLINE = float("inf")  # time.monotonic() after which no suite starts (main() sets it)
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed")
LOOP_PACKAGES = (
    "uvloop==0.23.0",
    "trio-asyncio==0.16.0",
    "trio==0.35.0",
    "greenlet==3.5.6",
    "outcome==1.3.0.post0",
    "sniffio==1.3.1",
    "sortedcontainers==2.4.0",
    "attrs==26.1.0",
    "idna==3.21",
)
"""The loops of :data:`LOOPS` and what they bring, the same for every project."""

PYTEST_ASYNCIO_LINES = """\
from childwatch.pytest_plugin import loop_factories


def pytest_asyncio_loop_factories(config, item):
    return loop_factories(config, item)
"""
"""README, "With pytest-asyncio": the conftest lines (3 of code)."""
ANYIO_LINES = """\
from childwatch.pytest_plugin import anyio_backend_fixture

anyio_backend = anyio_backend_fixture()
"""
"""README, "With anyio": the conftest lines (2 of code)."""

BACKENDS = ("trio-asyncio", "asyncio+uvloop", "asyncio+eager", "uvloop", "asyncio", "trio")
"""Loop parts of test ids, the plugin's and the projects' own, longest first."""
OWN = {"asyncio": "asyncio", "asyncio+uvloop": "uvloop", "trio": "trio"}
"""A project's own loop parametrisation in its baseline run -> the plugin's loop it stands for."""


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    version: str
    sha256: str
    integration: str
    """``pytest-asyncio`` or ``anyio``: which README snippet."""
    deps: Tuple[str, ...]
    """Every dependency pinned (the project's and its tests'), besides :data:`PYTEST` and the loops."""
    tests: Tuple[str, ...]
    """What pytest is given."""
    scope: str
    about: str
    notes: str = ""
    """What the report says of the project's own failures and flaky tests (checked by hand)."""
    conftest: str = "conftest.py"
    """Where the README's lines go (appended): the conftest that the project's own fixture is in."""
    known: Tuple[Tuple[str, str, str, str], ...] = ()
    """(loop, regex on "ID MESSAGE", cause ``loop`` or ``project``, one-line reason): a failure under
    the plugin on a loop other than asyncio that is not childwatch's, reviewed one by one."""

    @property
    def sdist(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"

    @property
    def lines(self) -> str:
        return PYTEST_ASYNCIO_LINES if self.integration == "pytest-asyncio" else ANYIO_LINES


SUITES: List[Suite] = [
    Suite(
        name="aiofiles",
        version="24.1.0",
        sha256="22a075c9e5a3810f0c2e48f3008c94d68c65d763b9b03857924c99e57355166c",
        integration="pytest-asyncio",
        deps=("pytest-asyncio==1.5.0",),
        tests=("tests",),
        scope="the whole test suite (`asyncio_mode = auto`)",
        about="File I/O for asyncio through a thread pool; pytest-asyncio based, every test a coroutine.",
        notes=(
            "`test_access` fails everywhere when the suite runs as root (CI does): it expects "
            "`os.access(directory, os.X_OK)` to be False for a directory without execute bits, which root "
            "is always granted."
        ),
    ),
    Suite(
        name="httpcore",
        version="1.0.9",
        sha256="6e34463af53fd2ab5d807f399a9b45ea31c3dfa2276f15a2c3f00afff6e176e8",
        integration="anyio",
        deps=(
            "anyio==4.16.0",
            "h11==0.16.0",
            "h2==4.4.1",
            "hpack==4.2.0",
            "hyperframe==6.1.0",
            "socksio==1.0.0",
            "certifi==2026.10.19.post1",
            "typing_extensions==4.16.0",
            "pytest-trio==0.8.0",
            "pytest-httpbin==2.1.0",
            "httpbin==0.10.4",
            "Flask==3.1.3",
            "Werkzeug==3.1.9",
            "Jinja2==3.1.6",
            "MarkupSafe==3.0.4",
            "itsdangerous==2.2.0",
            "blinker==1.9.0",
            "click==8.5.1",
            "brotlicffi==1.2.1.0",
            "cffi==2.1.1",
            "pycparser==3.12",
            "decorator==5.3.2",
            "six==1.17.0",
        ),
        tests=("tests",),
        scope=(
            "the whole test suite (anyio's pytest plugin for `@pytest.mark.anyio`, pytest-trio for its few "
            "`@pytest.mark.trio` tests; `filterwarnings = error`, `--strict-markers`)"
        ),
        about="The HTTP transport under httpx; anyio based (its tests on mock network backends, no network).",
        notes=(
            "Its `test_h2_timeout_during_*` tests (tests/test_cancellations.py) are marked xfail (non-strict) "
            "by httpcore: an HTTP/2 request cancelled by a 0.01 s `anyio.move_on_after` should leave the "
            "connection idle. On asyncio and uvloop they pass (XPASS, counted as passed); on trio-asyncio "
            "`..._request` and `..._response` mostly fail as marked (`assert conn.is_idle()`: the connection "
            "stays ACTIVE), and on anyio's trio backend (no asyncio loop at all) one failed once under "
            "load: their xfail counts vary from run to run."
        ),
    ),
    Suite(
        name="anyio",
        version="4.12.0",
        sha256="73c693b567b0c55130c104d0b43a9baf3aa6a31fc6110116509f27bf75e21ec0",
        integration="anyio",
        deps=(
            "blockbuster==1.5.29",
            "forbiddenfruit==0.1.4",
            "exceptiongroup==1.3.2",
            "hypothesis==6.170.27",
            "psutil==7.2.2",
            "pytest-mock==3.17.0",
            "trustme==1.2.1",
            "truststore==0.10.5",
            "cryptography==51.0.1",
            "cffi==2.1.1",
            "pycparser==3.12",
            "typing_extensions==4.16.0",
        ),
        tests=("tests/test_subprocesses.py", "tests/test_to_process.py", "tests/test_signals.py"),
        conftest="tests/conftest.py",
        scope=(
            "its subprocess, worker-process and signal tests (tests/test_subprocesses.py, test_to_process.py, "
            "test_signals.py): the part of anyio's ~900 tests that goes through child processes, where "
            "childwatch matters. The whole suite (`-m 'not network'`) took 206 s here for the baseline alone "
            "(its four backends; about half of that per loop under the plugin): ~8 minutes for the four runs, "
            "over this job's budget"
        ),
        about=(
            "anyio itself: `open_process`, `run_process` and `to_process.run_sync` (worker processes) on "
            "asyncio's subprocess API; its own conftest parametrises `anyio_backend` (asyncio with "
            "`debug=True`, asyncio+uvloop, asyncio+eager, trio): the README's lines replace it."
        ),
        notes=(
            "The baseline's `asyncio+eager` variant (an eager task factory) has no counterpart under the "
            "plugin and is left out of the comparison; its `debug=True` is not passed by the README's fixture. "
            "The 4 uvloop skips are anyio's own (`the 'user' argument is not supported by uvloop yet`, and "
            "'group', 'extra_groups', 'umask'), skipped in its own uvloop run too."
        ),
    ),
]


def log(message: str) -> None:
    print(f"suites: {message}", flush=True)


def key_of(test: str) -> Tuple[str, Optional[str]]:
    """(the test id without its loop part, that loop part or None)."""
    for name in BACKENDS:
        pattern = rf"(?<=[\[-]){re.escape(name)}(?=[\]-])"
        if re.search(pattern, test):
            key = re.sub(pattern, "LOOP", test, count=1)
            return key.replace("[LOOP]", "").replace("[LOOP-", "[").replace("-LOOP]", "]"), name
    return test, None


def pytest_run(vpy: str, root: Path, junit: Path, args: List[str], env: Dict[str, str]) -> Dict[str, Any]:
    """One pytest run of the project's suite; its cases (by id), counts, wall time and status."""
    junit.unlink(missing_ok=True)
    left = DEADLINE - time.monotonic()
    if left < 10:
        return {
            "seconds": 0,
            "pytest_exit": None,
            "status": f"not run: the {BUDGET} s budget spent",
            "cases": {},
        }
    cmd = ["nice", "-n", "5", vpy, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider"]
    cmd += [f"--timeout={TEST_TIMEOUT}", "--continue-on-collection-errors", f"--junitxml={junit}", *args]
    started = time.monotonic()
    with open(junit.with_suffix(".log"), "w") as output:  # the whole output there, its summary here
        code, timed_out = run(
            cmd, min(RUN_TIMEOUT, left), env=env, cwd=root, stdout=output, stderr=subprocess.STDOUT
        )
    tail = junit.with_suffix(".log").read_text(errors="replace").splitlines()[-15:]
    print("\n".join(line for line in tail if line.startswith(("FAILED", "ERROR", "=")) or " in " in line))
    result: Dict[str, Any] = {"seconds": round(time.monotonic() - started, 1), "pytest_exit": code}
    result["status"] = f"killed after {min(RUN_TIMEOUT, left):.0f} s" if timed_out else "ran"
    if not timed_out and code not in (0, 1):
        result["status"] = f"pytest exit {code} (interrupted, internal or usage error)"
    if not junit.exists():
        result["status"] = f"{result['status']}; no JUnit report (pytest exit {code})"
    result["cases"] = read_junit(junit, xfailed=True) if junit.exists() else {}
    return result


def by_loop(cases: Dict[str, Dict[str, str]], own: bool) -> Dict[str, Dict[str, Dict[str, str]]]:
    """loop -> key -> case.  ``own``: the baseline's ids (``asyncio+uvloop`` stands for uvloop, a
    test without a loop part for asyncio); else the plugin's (a test without one: the run's loop)."""
    out: Dict[str, Dict[str, Dict[str, str]]] = {}
    for test, case in cases.items():
        key, part = key_of(test)
        if own:
            loop = OWN.get(part or "asyncio")
            if loop is None:  # the project's own extra variants (asyncio+eager): no plugin counterpart
                continue
        else:
            loop = part or ""
        out.setdefault(loop, {})[key] = {**case, "id": test}
    return out


def classify(suite: Suite, loop: str, cases: Dict[str, Dict[str, str]], bases: Dict[str, Any]) -> List[Any]:
    """The classes of ``cases`` (one loop under the plugin) against the baselines ``bases`` (loop ->
    key -> case): the project's own run on that loop if it has one, else its run on asyncio.

    Failure classes (cause ``project``, ``loop`` or ``childwatch``), and, not failures, the tests
    skipped here that passed in the baseline (cause ``skipped``, the reason being the skip's)."""
    classes: Dict[Tuple[str, str], Dict[str, Any]] = {}
    where = loop if loop in bases else "asyncio"
    base = bases.get(where, {})

    def add(cause: str, why: str, case: Dict[str, str]) -> None:
        group = classes.setdefault((cause, why), {"cause": cause, "reason": why, "tests": []})
        group["tests"].append({"id": case["id"], "outcome": case["outcome"], "message": case["message"]})

    for key, case in sorted(cases.items()):
        before = base.get(key)
        passed_before = before is not None and before["outcome"] == "passed"
        seen = f"{case['id']} {case['message']}"
        if case["outcome"] in ("passed", "xfailed") or (case["outcome"] == "skipped" and not passed_before):
            continue
        if case["outcome"] == "skipped":
            if loop == "asyncio":
                add("childwatch", "passes without childwatch on asyncio, skipped under the plugin", case)
            else:
                add("skipped", f"skipped here, passed in the baseline on {where}: {case['message']}", case)
        elif before is not None and before["outcome"] in ("failed", "error"):
            add("project", f"fails without childwatch on {where} too (baseline: {before['outcome']})", case)
        elif loop == "asyncio":
            add("childwatch", "fails under the plugin, passes without childwatch on asyncio", case)
        else:
            hit = next((k for k in suite.known if k[0] == loop and re.search(k[1], seen)), None)
            cause, why = (
                (hit[2], hit[3])
                if hit
                else ("childwatch", f"no reviewed cause; passes on {where} in the baseline")
            )
            add(cause, why, case)
    for key, before in sorted(base.items()):
        if before["outcome"] == "passed" and key not in cases:
            add("childwatch", f"passed in the baseline on {where}, not run", {**before, "outcome": "not run"})
    return list(classes.values())


def counts(cases: Dict[str, Dict[str, str]]) -> Dict[str, int]:
    return {k: sum(c["outcome"] == k for c in cases.values()) for k in OUTCOMES}


def changed(plain: Path, ported: Path) -> List[str]:
    """The files of ``ported`` that differ from ``plain``'s (each "PATH (created)" or "PATH (changed)")."""
    out = []
    for path in sorted(p for p in ported.rglob("*") if p.is_file()):
        rel = path.relative_to(ported)
        if not (plain / rel).is_file():
            out.append(f"{rel} (created)")
        elif (plain / rel).read_bytes() != path.read_bytes():
            out.append(f"{rel} (changed)")
    return out + [
        f"{p.relative_to(plain)} (removed)"
        for p in plain.rglob("*")
        if not (ported / p.relative_to(plain)).exists()
    ]


def childwatch_wheel(python: str) -> Optional[Path]:
    """childwatch from this checkout, built once into a wheel for every project's venv."""
    wheels = WORK / "wheel"
    shutil.rmtree(wheels, ignore_errors=True)
    cmd = [python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)]
    if run(cmd, INSTALL_TIMEOUT)[0] != 0:
        return None
    found = sorted(wheels.glob("childwatch-*.whl"))
    return found[0] if len(found) == 1 else None


def test_suite(suite: Suite, sdist: Path, python: str, loops: List[str], wheel: Path) -> Dict[str, Any]:
    """Install one project and run its suite: the baseline, then once per loop."""
    where = WORK / suite.name
    venv = where / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    where.mkdir(parents=True, exist_ok=True)
    plain = unpack(sdist, where / "plain", lines="")
    ported = unpack(sdist, where / "ported", lines=suite.lines, conftest_at=suite.conftest)
    vpy = str(venv / "bin" / "python")
    env = dict(
        os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(venv)
    )
    env.pop("PYTEST_ADDOPTS", None)
    record: Dict[str, Any] = {"runs": {}, "loops": {}, "classes": {}, "changed": changed(plain, ported)}
    started = time.monotonic()
    install = [
        vpy,
        "-m",
        "pip",
        "install",
        "-q",
        str(wheel),
        str(plain),
        *PYTEST,
        *LOOP_PACKAGES,
        *suite.deps,
    ]
    for cmd in ([python, "-m", "venv", str(venv)], install):
        if run(cmd, INSTALL_TIMEOUT, env=env)[0] != 0:
            record["status"] = "install failed"
            return record
    record["install_seconds"] = round(time.monotonic() - started)
    baseline = pytest_run(
        vpy, plain, where / "junit-baseline.xml", ["-p", "no:childwatch", *suite.tests], env
    )
    record["runs"]["baseline"] = {k: v for k, v in baseline.items() if k != "cases"}
    base = by_loop(baseline["cases"], own=True)
    record["baseline_loops"] = sorted(base)
    for loop, cases in base.items():
        record["runs"]["baseline"][loop] = counts(cases)
    for loop in loops:
        ran = pytest_run(
            vpy, ported, where / f"junit-{loop}.xml", [f"--loop-impls={loop}", *suite.tests], env
        )
        record["runs"][loop] = {k: v for k, v in ran.items() if k != "cases"}
        for part, cases in by_loop(ran["cases"], own=False).items():
            name = part or loop  # a test without a loop part ran on the run's loop (or on none)
            if name == "trio" and loop != "asyncio":
                continue  # anyio's trio backend runs in every run: counted once, from the asyncio run's
            if part and part not in (loop, "trio"):
                name = f"{loop}: {part}"
            record["loops"].setdefault(name, {}).update(cases)
        log(f"{suite.name} on {loop}: {ran['status']}, {counts(ran['cases'])}, {ran['seconds']} s")
    for name, cases in record["loops"].items():
        record["classes"][name] = classify(suite, name, cases, base)
    record["counts"] = {name: counts(cases) for name, cases in record["loops"].items()}
    record["loops"] = {name: sorted(cases) for name, cases in record["loops"].items()}
    broken = [f"{name}: {one['status']}" for name, one in record["runs"].items() if one["status"] != "ran"]
    record["status"] = "; ".join(broken) if broken else "ran"
    return record


def childwatch_classes(record: Dict[str, Any]) -> int:
    return sum(
        1 for groups in record.get("classes", {}).values() for g in groups if g["cause"] == "childwatch"
    )


def code_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


def write_report(results: Dict[str, Dict[str, Any]], ok: bool, interpreter: str, seconds: int) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    machine = f"{platform.system()} {platform.release()} {platform.machine()}"
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    commit = head.stdout.strip() or "?"
    data = {"generated": now, "machine": machine, "childwatch_commit": commit, "ok": ok}
    data.update(interpreter=interpreter, seconds=seconds, projects=results)
    (REPO / "compat" / "real_suites.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    lines = [
        "# Real suites on every loop, through the pytest plugin",
        "",
        f"Produced by `python3 compat/real_suites.py` on {now} ({machine}, {interpreter}) at childwatch",
        f"{commit}; do not edit by hand. {seconds} s in all. Each project's own tests (its PyPI sdist, pinned",
        "by sha256), unmodified but for the README's conftest lines (the count below), run once per loop",
        "with `--loop-impls=LOOP`, and once without childwatch (`-p no:childwatch`, no lines added: the",
        "baseline). A failure class is the **project**'s when the test fails in the baseline too, the",
        "**loop**'s or the **project**'s by a reviewed entry of the harness (one-line reason each), else",
        "**childwatch**'s; on asyncio a test that passed in the baseline and does not pass is childwatch's.",
        f"Per test `--timeout={TEST_TIMEOUT}`, per run {RUN_TIMEOUT} s. Result: "
        + ("**pass** (no failure class is childwatch's)" if ok else "**FAIL** (see below)"),
        "",
        "| project | loop | passed | failed | errors | skipped | xfailed | run (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        for loop, numbers in res.get("counts", {}).items():
            cells = " | ".join(str(numbers[k]) for k in OUTCOMES)
            run_of = res["runs"].get(loop if loop in res["runs"] else "asyncio", {})
            lines.append(f"| {name} {res['version']} | {loop} | {cells} | {run_of.get('seconds', '-')} |")
        for loop in res.get("baseline_loops", []):
            numbers = res["runs"]["baseline"][loop]
            cells = " | ".join(str(numbers[k]) for k in OUTCOMES)
            lines.append(f"| {name} {res['version']} | baseline: {loop}, without childwatch | {cells} | - |")
    lines += ["", "`trio` rows: anyio's trio backend, which the README's anyio fixture adds to every run;"]
    lines += ["counted from the asyncio run. Baseline rows: the project's own loop parameters (its run took"]
    lines += ["the seconds given per project below)."]
    for name, res in results.items():
        lines += ["", f"## {name} {res['version']}", ""]
        lines += [
            f"sdist sha256 `{res['sha256']}`; {res['integration']} integration; runs {res['scope']}.",
            "",
        ]
        lines += [res["about"], ""]
        if res.get("notes"):
            lines += [res["notes"], ""]
        lines += [
            f'Conftest lines added to `{res["conftest"]}` (README, "With {res["integration"]}"): '
            f"{res['conftest_lines']} of code; the files that differ from the sdist's: "
            f"{', '.join(res.get('changed', [])) or 'none'}. "
            f"Install {res.get('install_seconds', '-')} s; baseline "
            f"{res['runs'].get('baseline', {}).get('seconds', '-')} s; "
            + ", ".join(f"{loop} {res['runs'][loop]['seconds']} s" for loop in LOOPS if loop in res["runs"])
            + ".",
            "",
        ]
        if res.get("status") != "ran":
            lines.append(f"- **{res.get('status')}**")
        for loop, groups in res.get("classes", {}).items():
            if all(g["cause"] == "skipped" for g in groups):
                lines.append(f"- {loop}: no test failed or errored")
            for g in groups:
                if g["cause"] == "skipped":
                    lines.append(f"- {loop}: not a failure: {g['reason']} ({len(g['tests'])} tests)")
                    continue
                lines.append(f"- {loop}: **{g['cause']}**: {g['reason']} ({len(g['tests'])} tests):")
                for t in g["tests"][:12]:
                    lines.append(f"  - `{t['id']}`: {t['outcome']}: `{t['message'][:160]}`")
                if len(g["tests"]) > 12:
                    lines.append(f"  - … and {len(g['tests']) - 12} more (compat/real_suites.json)")
    (REPO / "compat" / "REAL_SUITES.md").write_text("\n".join(lines) + "\n")
    log("wrote compat/REAL_SUITES.md and compat/real_suites.json")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--projects", default=",".join(s.name for s in SUITES))
    parser.add_argument("--loops", default=",".join(LOOPS))
    args = parser.parse_args()
    wanted = args.projects.split(",")
    loops = args.loops.split(",")
    unknown = (set(wanted) - {s.name for s in SUITES}) | (set(loops) - set(LOOPS))
    if unknown:
        parser.error(f"unknown projects or loops {sorted(unknown)}")
    started = time.monotonic()
    global DEADLINE
    DEADLINE = started + BUDGET
    python = find_python(PYTHON)
    if python is None:
        log(f"no CPython {PYTHON} here")
        return 1
    WORK.mkdir(parents=True, exist_ok=True)
    wheel = childwatch_wheel(python)
    if wheel is None:
        log("childwatch's wheel could not be built")
        return 1
    ok = True
    results: Dict[str, Dict[str, Any]] = {}
    for suite in [s for s in SUITES if s.name in wanted]:
        record: Dict[str, Any] = {"version": suite.version, "sha256": suite.sha256, "scope": suite.scope}
        record.update(
            about=suite.about, notes=suite.notes, integration=suite.integration, conftest=suite.conftest
        )
        record.update(conftest_lines=code_lines(suite.lines), deps=[*PYTEST, *LOOP_PACKAGES, *suite.deps])
        sdist = fetch_sdist(suite)
        if sdist is None:
            ok = False
            results[suite.name] = {**record, "status": "sdist not downloaded or not matching its sha256"}
            continue
        record.update(test_suite(suite, sdist, python, loops, wheel))
        if record["status"] != "ran" or not record["runs"]["baseline"].get("asyncio", {}).get("passed"):
            log(f"{suite.name}: {record['status']}, or no test passed in the baseline")
            ok = False
        if childwatch_classes(record):
            ok = False
        results[suite.name] = record
    seconds = round(time.monotonic() - started)
    write_report(results, ok, f"CPython {PYTHON} from {python}", seconds)
    for name, record in results.items():
        log(f"{name}: {record.get('counts')}, childwatch's failure classes: {childwatch_classes(record)}")
    log(f"{'pass' if ok else 'FAIL'} in {seconds} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
