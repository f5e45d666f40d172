#!/usr/bin/env python3
"""Run childwatch's test suite on every Python 3.9–3.15 × every loop, and write the matrix.

    python3 compat/matrix.py [--versions 3.9,3.12] [-- PYTEST ARGS...]

For each Python it makes a fresh venv (``.matrix/venv-X.Y``), installs
childwatch with its test extras and every optional loop that installs there,
runs pytest with a JUnit report, and finally writes ``compat/MATRIX.md`` and
``compat/matrix.json`` from those reports: which watcher works on which loop
and Python, with the reason for every cell that is not a pass.  Pythons 3.9–3.13
come from pyenv or PATH; 3.14 and 3.15, when missing, from a Debian sid chroot
that ``compat/sid.sh`` provisions.  ruff and ``mypy --strict`` run once.

Exit status 0 only if every Python was found, ran at least one test, and
failed none, and the linters passed.
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
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".matrix"
VERSIONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
SID_VERSIONS = {"3.14", "3.15"}
EXTRAS = "test,uvloop,trio,trio-asyncio"
LOOPS = ["asyncio", "uvloop", "trio-asyncio", "trio"]
WATCHERS = ["Safe", "Fast", "MultiLoop", "Threaded", "Pidfd"]
PARAM = re.compile(r"\[(?P<loop>asyncio|uvloop|trio-asyncio|trio)-(?P<watcher>\w+)ChildWatcher\]")


def log(message: str) -> None:
    print(f"matrix: {message}", flush=True)


def find_python(version: str) -> Optional[str]:
    """A host interpreter for ``version``: pyenv first, then PATH."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(
        glob.glob(f"{root}/versions/{version}.*/bin/python"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parent.parent.name)],
    )
    candidates = found[-1:] + [p for p in [shutil.which(f"python{version}")] if p]
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def run(cmd: List[str], **kwargs: Any) -> int:
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, **kwargs).returncode


def test_host(version: str, python: str, pytest_args: List[str]) -> Tuple[int, str]:
    venv = WORK / f"venv-{version}"
    if not (venv / "bin" / "python").exists() and run([python, "-m", "venv", str(venv)]) != 0:
        return 1, "venv creation failed"
    vpy = str(venv / "bin" / "python")
    run([vpy, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    if run([vpy, "-m", "pip", "install", "-q", "-e", f"{REPO}[{EXTRAS}]"]) != 0:
        # An optional loop that does not install here must not hide the rest.
        if run([vpy, "-m", "pip", "install", "-q", "-e", f"{REPO}[test]"]) != 0:
            return 1, "pip install failed"
        for extra in EXTRAS.split(",")[1:]:
            run([vpy, "-m", "pip", "install", "-q", "-e", f"{REPO}[{extra}]"])
    junit = WORK / f"junit-{version}.xml"
    code = run(
        [vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *pytest_args], cwd=REPO
    )
    return code, f"{platform.python_implementation()} from {python}"


def test_sid(version: str, pytest_args: List[str]) -> Tuple[int, str]:
    env = dict(os.environ, CHILDWATCH_SID_PIP=f"-q -e /src[{EXTRAS}]")
    sid = ["bash", str(REPO / "compat" / "sid.sh"), version]
    if run([*sid, "true"], env=env) != 0:
        env["CHILDWATCH_SID_PIP"] = "-q -e /src[test,uvloop,trio]"
        if run([*sid, "true"], env=env) != 0:
            return 1, "provisioning or pip install in the sid chroot failed"
    env.pop("CHILDWATCH_SID_PIP")
    junit = f"/src/.matrix/junit-{version}.xml"
    code = run(
        [*sid, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *pytest_args],
        env=env,
    )
    return code, "Debian sid chroot (compat/sid.sh)"


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


def cell(cases: List[Dict[str, str]], loop: str, watcher: str) -> Dict[str, Any]:
    mine = [c for c in cases if (m := PARAM.search(c["id"])) and (m["loop"], m["watcher"]) == (loop, watcher)]
    if not mine:
        return {"status": "not run", "tests": 0}
    failed = [c for c in mine if c["outcome"] == "failed"]
    passed = [c for c in mine if c["outcome"] == "passed"]
    if failed:
        return {"status": "FAIL", "tests": len(mine), "failed": [c["id"] for c in failed]}
    if passed:
        return {"status": "pass", "tests": len(passed)}
    return {"status": "skipped", "tests": 0, "reason": mine[0]["reason"]}


def refusals(cases: List[Dict[str, str]]) -> Dict[str, str]:
    """Loops proven to refuse SIGCHLD watchers, from the tests that check the refusal."""
    found = {}
    for c in cases:
        if "refuses_sigchld" in c["id"] and c["outcome"] == "passed":
            loop = "trio-asyncio" if "trio_asyncio" in c["id"] else "uvloop"
            found[loop] = "refused: UnsupportedLoopError (SIGCHLD handlers never fire on this loop)"
    return found


def write_matrix(results: Dict[str, Dict[str, Any]]) -> None:
    data: Dict[str, Any] = {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
        "pythons": {},
    }
    for version, res in results.items():
        cases = res.get("cases", [])
        refused = refusals(cases)
        cells = {}
        for loop in LOOPS:
            for watcher in WATCHERS:
                c = cell(cases, loop, watcher)
                if c["status"] == "not run" and loop in refused and watcher in ("Safe", "Fast", "MultiLoop"):
                    c = {"status": "unsupported", "reason": refused[loop]}
                cells[f"{loop}/{watcher}"] = c
        data["pythons"][version] = {k: v for k, v in res.items() if k != "cases"} | {"cells": cells}
    (REPO / "compat" / "matrix.json").write_text(json.dumps(data, indent=1) + "\n")

    lines = [
        "# Compatibility matrix",
        "",
        f"Produced by `python3 compat/matrix.py` on {data['generated']} ({data['machine']}); do not edit by hand.",
        "Each cell: the watcher's tests on that loop and Python (`pass N` = N tests passed).",
        "",
    ]
    lines.append("## Summary per Python")
    lines.append("")
    lines.append("| Python | interpreter | tests passed | failed | skipped | seconds | result |")
    lines.append("|---|---|---|---|---|---|---|")
    for version, res in data["pythons"].items():
        lines.append(
            f"| {version} | {res.get('interpreter', '-')} | {res.get('passed', 0)} | {res.get('failed', 0)} | "
            f"{res.get('skipped', 0)} | {res.get('seconds', '-')} | {res['result']} |"
        )
    lines.append("")
    for loop in LOOPS:
        lines.append(f"## {loop}")
        lines.append("")
        lines.append("| Python | " + " | ".join(WATCHERS) + " |")
        lines.append("|---|" + "---|" * len(WATCHERS))
        for version, res in data["pythons"].items():
            row = []
            for w in WATCHERS:
                c = res["cells"][f"{loop}/{w}"]
                text = {"pass": f"pass {c.get('tests')}", "FAIL": "**FAIL**"}.get(c["status"], c["status"])
                if c.get("reason"):
                    text += f": {c['reason']}"
                row.append(text)
            lines.append(f"| {version} | " + " | ".join(row) + " |")
        lines.append("")
    (REPO / "compat" / "MATRIX.md").write_text("\n".join(lines))
    log(f"wrote {REPO / 'compat' / 'MATRIX.md'} and matrix.json")


def lint() -> bool:
    venv = WORK / "venv-lint"
    if not (venv / "bin" / "python").exists():
        run([sys.executable, "-m", "venv", str(venv)])
    vpy = str(venv / "bin" / "python")
    ok = run([vpy, "-m", "pip", "install", "-q", "-e", f"{REPO}[lint,test,uvloop]"]) == 0
    ok &= run([vpy, "-m", "ruff", "check", "src", "tests", "compat"], cwd=REPO) == 0
    ok &= run([vpy, "-m", "mypy", "--strict", "src/childwatch"], cwd=REPO) == 0
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--no-lint", action="store_true")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    results: Dict[str, Dict[str, Any]] = {}
    ok = True
    for version in args.versions.split(","):
        started = time.monotonic()
        python = find_python(version)
        if python is not None:
            code, interpreter = test_host(version, python, args.pytest_args)
        elif version in SID_VERSIONS:
            code, interpreter = test_sid(version, args.pytest_args)
        else:
            results[version] = {"result": "MISSING", "interpreter": "not found"}
            ok = False
            continue
        junit = WORK / f"junit-{version}.xml"
        cases = read_junit(junit) if junit.exists() and code in (0, 1) else []
        counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "skipped")}
        passed = code == 0 and counts["passed"] > 0 and counts["failed"] == 0
        ok &= passed
        results[version] = {
            "result": "pass" if passed else f"FAIL (pytest exit {code})",
            "interpreter": interpreter,
            "seconds": round(time.monotonic() - started),
            "cases": cases,
            **counts,
        }
        log(f"Python {version}: {results[version]['result']} {counts}")
        junit.unlink(missing_ok=True)
    write_matrix(results)
    if not args.no_lint:
        lint_ok = lint()
        log(f"lint: {'pass' if lint_ok else 'FAIL'}")
        ok &= lint_ok
    for version, res in results.items():
        log(f"{version}: {res['result']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
