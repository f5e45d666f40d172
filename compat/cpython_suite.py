#!/usr/bin/env python3
"""CPython's own subprocess tests, run with each childwatch watcher plugged in.

    python compat/cpython_suite.py [--watchers Safe,Pidfd] [--json OUT]

Run it with the interpreter under test (childwatch importable).  It loads the
interpreter's ``test.test_asyncio.test_subprocess`` (shipped with pyenv's
Pythons and, for Debian's, by ``libpython3.X-testsuite``) and, for each
watcher, runs its ``SubprocessWatcherMixin`` tests with that watcher in place
of asyncio's, each watcher in a process of its own (a hang or a crash is that
watcher's result, not the run's):

* 3.9–3.13: a subclass of the module's own class for asyncio's namesake
  (``SubprocessSafeWatcherTests`` ...) whose ``Watcher`` / ``_get_watcher``
  gives the childwatch class, so the module's ``setUp`` / ``tearDown`` plug it
  in through asyncio's policy exactly as they do asyncio's.  Two run on the
  module's bare ``SubprocessWatcherMixin`` (same setUp/tearDown, same tests):
  MultiLoop, whose asyncio class is skipped (bpo-38323, a race in asyncio's
  watcher) or has no subprocess tests (3.12+), and Fast, because
  ``test_close_dont_kill_finished`` clears the private ``_callbacks`` dict of
  asyncio's Fast watcher when ``isinstance(self, SubprocessFastWatcherTests)``
  (a stale callback asyncio's Fast keeps; childwatch's has no such dict and
  keeps nothing stale).  Pidfd keeps the module's skip (no pidfd support).
* 3.14+: the mixin's tests with ``childwatch.set_child_watcher(watcher,
  loop)`` on the test's loop.  ``test_watcher_implementation`` asserts which
  *private* watcher asyncio picked; here it asserts that the loop uses ours.
  The Threaded class's ``test_pid_not_reaped_before_exit_published`` reads
  the private thread table of asyncio's watcher and is not run; its
  ``test_stopped_child_does_not_block_event_loop`` is, for every watcher.

For Threaded, the harness's ``close_loop`` also joins childwatch's waiter
threads, as CPython's joins those of asyncio's ``ThreadedChildWatcher``
(:func:`_close_loop_joining_our_threads`).

On a free-threaded build (``Py_GIL_DISABLED``) a watcher's run that ends with the GIL on
counts as failed: it did not test what it was meant to.

Prints one line per watcher and exits 0 only if no test failed or errored and
at least one ran for every watcher.  A watcher's run gives up after
``--timeout`` seconds (a failure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import unittest
from typing import Any, Dict, List

WATCHERS = ["Safe", "Fast", "MultiLoop", "Threaded", "Pidfd"]
NEW_STDLIB = sys.version_info >= (3, 14)


def _close_loop_joining_our_threads(module: Any) -> Any:
    """The harness's ``close_loop``, then a join of childwatch's waiter threads.

    CPython's ``test_utils.TestCase.close_loop`` joins the threads of asyncio's
    ``ThreadedChildWatcher`` (through its private ``_threads``) right after
    closing the loop, before ``threading_cleanup`` looks for dangling threads:
    a waiter that woke for a child the test reaped itself
    (``test_close_dont_kill_finished``) may still be ending then.  This gives
    childwatch's Threaded watcher the same courtesy, by thread name."""
    import threading

    def close_loop(loop: Any) -> None:
        module.test_utils.TestCase.close_loop(loop)
        for thread in threading.enumerate():
            if thread.name.startswith("childwatch-"):
                thread.join(5)

    return staticmethod(close_loop)


def _policy_classes(module: Any, name: str) -> List[type]:
    """3.9–3.13: the bases that plug ``childwatch.<name>ChildWatcher`` in through the policy."""
    import childwatch

    cls = getattr(childwatch, f"{name}ChildWatcher")
    stdlib_case = getattr(module, f"Subprocess{name}WatcherTests", None)
    if name in ("MultiLoop", "Fast") or stdlib_case is None:
        bases: tuple = (module.SubprocessWatcherMixin, module.test_utils.TestCase)
    else:
        bases = (stdlib_case,)
    body: Dict[str, Any] = {
        "Watcher": cls,
        "_get_watcher": lambda self: cls(),  # 3.12/3.13 ask this; 3.9–3.11 read Watcher
        "__module__": __name__,
    }
    if name == "Threaded":
        body["close_loop"] = _close_loop_joining_our_threads(module)
    return [type(f"Childwatch{name}WatcherTests", bases, body)]


def _loop_hook_classes(module: Any, name: str) -> List[type]:
    """3.14+: the mixin's tests with the watcher set on the test's loop."""
    import childwatch

    cls = getattr(childwatch, f"{name}ChildWatcher")

    def setUp(self: Any) -> None:
        module.SubprocessWatcherMixin.setUp(self)
        self.watcher = cls()
        childwatch.set_child_watcher(self.watcher, self.loop)

    def tearDown(self: Any) -> None:
        module.test_utils.TestCase.tearDown(self)
        self.watcher.close()

    def test_watcher_implementation(self: Any) -> None:
        self.assertIs(self.loop._watcher, self.watcher)
        self.assertIs(childwatch.get_child_watcher(self.loop), self.watcher)

    body: Dict[str, Any] = {
        "setUp": setUp,
        "tearDown": tearDown,
        "test_watcher_implementation": test_watcher_implementation,
        "__module__": __name__,
    }
    threaded = getattr(module, "SubprocessThreadedWatcherTests", None)
    stopped = getattr(threaded, "test_stopped_child_does_not_block_event_loop", None)
    if stopped is not None:
        body["test_stopped_child_does_not_block_event_loop"] = stopped
    if name == "Threaded":
        body["close_loop"] = _close_loop_joining_our_threads(module)
    bases = (module.SubprocessWatcherMixin, module.test_utils.TestCase)
    return [type(f"Childwatch{name}WatcherTests", bases, body)]


def run_one(name: str) -> Dict[str, Any]:
    """Run the suite for one watcher in this process."""
    from test.test_asyncio import test_subprocess as module

    make = _loop_hook_classes if NEW_STDLIB else _policy_classes
    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    for case in make(module, name):
        suite.addTests(loader.loadTestsFromTestCase(case))
    from test import support

    support.environment_altered = False
    result = unittest.TextTestRunner(
        stream=sys.stderr, verbosity=int(os.environ.get("CPYTHON_SUITE_VERBOSITY", "1"))
    ).run(suite)
    module.tearDownModule()
    problems = [
        f"{test.id()}: {text.strip().splitlines()[-1]}" for test, text in result.failures + result.errors
    ]
    if support.environment_altered:
        # What regrtest calls "env changed": a test left a thread, a child or
        # a file behind (the warnings above say which).
        problems.append("environment altered (dangling threads or children; see the warnings)")
    failures = len(result.failures) + len(result.unexpectedSuccesses) + support.environment_altered
    if sysconfig.get_config_var("Py_GIL_DISABLED") == 1 and sys._is_gil_enabled():
        problems.append("the GIL was on at the end of the run (a free-threaded build)")
        failures += 1
    return {
        "run": result.testsRun,
        "failures": failures,
        "errors": len(result.errors),
        "skipped": len(result.skipped),
        "skip_reasons": sorted({reason for _, reason in result.skipped}),
        "problems": problems,
    }


def run_isolated(name: str, timeout: float) -> Dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", name]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {
            "run": 0,
            "failures": 1,
            "errors": 0,
            "skipped": 0,
            "problems": [f"timed out after {timeout} s"],
        }
    lines = proc.stdout.decode().strip().splitlines()
    if proc.returncode not in (0, 1) or not lines:
        return {"run": 0, "failures": 0, "errors": 1, "skipped": 0, "problems": [f"exit {proc.returncode}"]}
    result: Dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--watchers", default=",".join(WATCHERS))
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = run_one(args.one)
        print(json.dumps(result))
        return 0 if result["failures"] == result["errors"] == 0 else 1
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    results = {name: run_isolated(name, args.timeout) for name in args.watchers.split(",")}
    ok = True
    for name, res in results.items():
        good = res["run"] > 0 and res["failures"] == res["errors"] == 0
        ok &= good
        print(
            f"cpython-suite {python} {name}: run {res['run']}, failed {res['failures']}, "
            f"errors {res['errors']}, skipped {res['skipped']} {'ok' if good else 'FAIL'}",
            flush=True,
        )
        for problem in res.get("problems", []):
            print(f"    {problem}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"python": python, "implementation": sys.implementation.name, "watchers": results}, out)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "default")
    sys.exit(main())
