"""Isolated pytest workers and their protocol: run test items in another pytest process, report them here.

Some loops patch asyncio or the whole process (:attr:`.catalog.LoopImpl.isolated`), so
the plugin runs their tests elsewhere (:mod:`.isolation` decides which and where).  A
:class:`Worker` is one long-lived ``python -m pytest`` process (after the loop's
preamble, if it has one: ``python -c PREAMBLE...`` then pytest's ``__main__``, e.g. for
gevent's monkey-patching): the parent's command line and options,
restricted to the modules of the items it may be given (so it collects the same
items, with the same node ids), plus ``--rootdir``, ``-c``, ``--basetemp``, a
cache directory and a JUnit XML path of its own, and ``-n 0`` under
pytest-xdist.  It is started on first use, fed item after item, and stopped at
the end of the session; if it dies, the item it was running fails with its exit
status (or the signal that killed it) and output, and the next item starts a new one;
after :data:`MAX_DEATHS` deaths in a row without a test finished, or a worker that could
not start, it is not started again: the later items fail at once, pointing at the first
failure, which has the whole story.

The protocol: a Unix socket the parent listens on, named by the environment variable
``CHILDWATCH_PYTEST_WORKER`` (its path), to which the worker connects once it has
collected, so that nothing a conftest does to inherited file descriptors when it is
imported reaches it, and the worker's stdin, stdout and stderr stay free (they are the
terminal's under ``-s`` and ``--pdb``, else one log file).  Each message is one line of
JSON.  The worker connects a second time for its stack: :mod:`faulthandler` writes the
stack of every thread there on ``SIGUSR1``, which the parent sends before it kills a
worker whose test it stops (pytest-timeout's limit).

* worker → parent, once collected: ``{"ready": <number of items>}``;
* parent → worker: ``{"run": nodeid, "next": nodeid or null}``: run that item
  with the regular pytest protocol, ``next`` being the item the parent will
  give it next (so module- and session-scoped fixtures stay set up while a later
  item needs them, and are torn down after the last);
* worker → parent: ``{"report": <pytest_report_to_serializable>}`` for every
  test report (setup, call, teardown, and a teardown error of an earlier item
  when the item given next was not the one announced), then
  ``{"done": nodeid}``, or ``{"missing": nodeid, "errors": text}`` when the
  worker did not collect that node id;
* the parent shuts down its side of the channel: the worker tears everything down
  (reporting errors as above), ends its session and exits.

The environment variable ``CHILDWATCH_PYTEST_PROBED`` hands the worker the
parent's answers to "can this loop run here" (JSON: name → reason or null).
"""

from __future__ import annotations

import faulthandler
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO, Any, Dict, List, Optional, Sequence

import pytest

ENV_CHANNEL = "CHILDWATCH_PYTEST_WORKER"
ENV_PROBED = "CHILDWATCH_PYTEST_PROBED"
STOP_TIMEOUT = 60.0
"""Seconds a stopped worker gets to tear down and exit before it is killed."""
MAX_DEATHS = 3
"""Deaths in a row, without a test finished in between, after which a worker is not started again."""
STACK_WAIT = 2.0
"""Seconds the parent waits for the stack of a worker it stops, before it kills it."""


class _Channel:
    """JSON lines over a connected Unix socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def send(self, message: Dict[str, Any]) -> None:
        self.sock.sendall((json.dumps(message, default=repr) + "\n").encode())

    def receive(self, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The next message; None at end of file.  Raises TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if deadline is not None and not _readable(self.sock, deadline - time.monotonic()):
                raise TimeoutError
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: Dict[str, Any] = json.loads(line)
        return message

    def close_writer(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the worker is gone

    def close(self) -> None:
        self.sock.close()


def _readable(sock: socket.socket, timeout: float) -> bool:
    ready, _, _ = select.select([sock], [], [], max(0.0, timeout))
    return bool(ready)


def exit_status_text(status: int) -> str:
    """``exit status 3``, or ``killed by signal 11 (SIGSEGV)`` for a negative ``Popen.returncode``."""
    if status >= 0:
        return f"exit status {status}"
    try:
        name = f" ({signal.Signals(-status).name})"
    except ValueError:
        name = ""
    return f"killed by signal {-status}{name}"


# -- both sides ---------------------------------------------------------------------


def teardown_towards(item: pytest.Item, nextitem: Optional[pytest.Item]) -> None:
    """Tear down this process's fixtures that ``nextitem`` does not share (all of them
    if it is None), reporting an error as a teardown report of ``item``."""
    setupstate: Any = getattr(item.session, "_setupstate", None)
    if setupstate is None:
        return
    call = pytest.CallInfo.from_call(lambda: setupstate.teardown_exact(nextitem), when="teardown")
    if call.excinfo is not None:
        item.ihook.pytest_runtest_logreport(report=pytest.TestReport.from_item_and_call(item, call))


# -- the worker's side -----------------------------------------------------------------


def channel_from_environment() -> Optional[str]:
    """The path of the worker's channel, popped from the environment (so that pytest runs
    started by its tests are not taken for workers); None in the parent."""
    return os.environ.pop(ENV_CHANNEL, None)


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # not inherited by the tests' children
    sock.connect(path)
    return sock


def probed_from_environment() -> Dict[str, Optional[str]]:
    """The parent's answers to :func:`.catalog.unavailable_reason` (by loop name), popped."""
    answers: Dict[str, Optional[str]] = json.loads(os.environ.pop(ENV_PROBED, "{}"))
    return answers


def interactive(config: pytest.Config) -> bool:
    """True under ``-s`` or ``--pdb``: the worker then has the terminal for stdin, stdout and stderr."""
    return config.getoption("capture", "fd") == "no" or bool(config.getoption("usepdb", False))


class WorkerSession:
    """The plugin registered in a worker: runs the items the parent asks for.

    Registered from the plugin's ``pytest_configure``, before pytest's terminal
    reporter is made: where the worker has the terminal (:func:`interactive`), the
    reporter is given ``os.devnull`` for ``sys.stdout``, which is put back at session
    start, so that only the tests' own output reaches the terminal.
    """

    def __init__(self, config: pytest.Config, path: str) -> None:
        self._config = config
        self._path = path
        self._channel: Optional[_Channel] = None
        self._errors: List[str] = []
        self._stdout: Optional[IO[str]] = None
        if interactive(config):
            self._stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 (the reporter's)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self._stdout is not None:
            sys.stdout, self._stdout = self._stdout, None

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._errors.append(f"{report.nodeid or '<session>'}: {report.longreprtext}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        assert self._channel is not None
        data = self._config.hook.pytest_report_to_serializable(config=self._config, report=report)
        self._channel.send({"report": data})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        items = {item.nodeid: item for item in session.items}
        channel = self._channel = _Channel(_connect(self._path))  # every conftest is imported by now
        stack = _connect(self._path)
        faulthandler.register(signal.SIGUSR1, file=stack.fileno(), all_threads=True)
        channel.send({"ready": len(items)})
        previous: Optional[pytest.Item] = None
        announced: Optional[str] = None
        while True:
            message = channel.receive()
            if message is None:
                break
            item = items.get(message["run"])
            if item is None:
                channel.send({"missing": message["run"], "errors": "\n".join(self._errors)})
                continue
            if previous is not None and announced != item.nodeid:
                teardown_towards(previous, item)  # the parent's guess was wrong: undo it first
            announced = message["next"]
            nextitem = items.get(announced) if announced is not None else None
            item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            previous = item if nextitem is not None else None
            channel.send({"done": item.nodeid})
        if previous is not None:
            teardown_towards(previous, None)
        faulthandler.unregister(signal.SIGUSR1)
        channel.close()
        stack.close()
        return True


# -- the parent's side -------------------------------------------------------------------


class Worker:
    """The parent's handle on one worker process (started on first :meth:`run`)."""

    def __init__(self, config: pytest.Config, name: str, modules: Sequence[str], preamble: str = "") -> None:
        self.config = config
        self.name = name
        """Names the worker in messages and its directories (e.g. ``trio-asyncio``)."""
        self.modules = list(modules)
        """The files the worker collects."""
        self.preamble = preamble
        """Python code the worker runs before pytest is imported."""
        self.starts = 0
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._channel: Optional[_Channel] = None
        self._stack: Optional[socket.socket] = None
        self._listener: Optional[socket.socket] = None
        self._dir: Optional[str] = None
        self._log: Optional[IO[bytes]] = None
        self._broken: Optional[str] = None
        """Set when it is not started again: the failure of the later items."""
        self._deaths = 0
        """Deaths in a row, without a test finished in between."""
        self._interactive = interactive(config)

    def _command(self) -> List[str]:
        config = self.config
        positional = {str(arg) for arg in (getattr(config.option, "file_or_dir", None) or [])}
        args = [str(arg) for arg in config.invocation_params.args if str(arg) not in positional]
        args += [*self.modules, f"--rootdir={config.rootpath}"]
        if config.inipath is not None:
            args += ["-c", str(config.inipath)]
        factory = getattr(config, "_tmp_path_factory", None)
        if factory is not None:
            own = factory.getbasetemp() / f"childwatch-{self.name}-{self.starts}"
            args.append(f"--basetemp={own}")
            if config.pluginmanager.hasplugin("cacheprovider"):
                args += ["-o", f"cache_dir={own}-cache"]
            if getattr(config.option, "xmlpath", None):
                args.append(f"--junitxml={own}-junit.xml")
        if config.pluginmanager.hasplugin("xdist"):
            args += ["-n", "0"]
        if self.preamble:
            main = "import runpy\nrunpy.run_module('pytest', run_name='__main__', alter_sys=True)"
            return [sys.executable, "-c", f"{self.preamble}\n{main}", *args]
        return [sys.executable, "-m", "pytest", *args]

    def _start(self, probed: Dict[str, Optional[str]]) -> None:
        self.starts += 1
        if self._log is not None:
            self._log.close()
        # A short path (a Unix socket's is at most ~100 bytes), for this worker alone.
        self._dir = tempfile.mkdtemp(prefix="childwatch-")
        path = os.path.join(self._dir, "channel")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(2)
        env = dict(os.environ)
        env[ENV_CHANNEL] = path
        env[ENV_PROBED] = json.dumps(probed)
        self._log = None if self._interactive else tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self._proc = subprocess.Popen(
            self._command(),
            cwd=str(self.config.invocation_params.dir),
            env=env,
            stdin=None if self._interactive else subprocess.DEVNULL,
            stdout=self._log,
            stderr=None if self._interactive else subprocess.STDOUT,
            start_new_session=not self._interactive,
        )

    def _accept(self) -> Optional[socket.socket]:
        """The worker's next connection; None if it ended first."""
        assert self._listener is not None and self._proc is not None
        while not _readable(self._listener, 0.1):
            if self._proc.poll() is not None:
                return None
        sock, _ = self._listener.accept()
        return sock

    def _connected(self) -> Optional[_Channel]:
        """Wait for the worker's channel and stack connections: the channel; None if it ended first."""
        channel = self._accept()
        stack = self._accept() if channel is not None else None
        if channel is None or stack is None:
            if channel is not None:
                channel.close()
            return None
        self._channel, self._stack = _Channel(channel), stack
        return self._channel

    def _stack_of_worker(self) -> str:
        """The stack of every thread of the (running) worker, as :mod:`faulthandler` writes it on
        ``SIGUSR1``; empty if it cannot tell."""
        proc, sock = self._proc, self._stack
        if proc is None or sock is None or proc.poll() is not None:
            return ""
        try:
            os.kill(proc.pid, signal.SIGUSR1)
        except ProcessLookupError:
            return ""
        chunks: List[bytes] = []
        deadline = time.monotonic() + STACK_WAIT
        quiet = STACK_WAIT
        try:
            while time.monotonic() < deadline and _readable(sock, min(quiet, deadline - time.monotonic())):
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                quiet = 0.3  # faulthandler writes it at once: done when it stops
        except OSError:
            pass
        text = b"".join(chunks).decode(errors="replace").rstrip()
        return f"the isolated worker's stack (faulthandler):\n{text}" if text else ""

    def _why_it_ended(self) -> str:
        """At end of file on the channel: how the worker ended (``exit status 3``, ``killed by
        signal 11 (SIGSEGV)``, or that it closed its channel and was killed), with its stack
        where it was still running; the worker is reaped."""
        assert self._proc is not None
        try:
            status = self._proc.wait(timeout=STACK_WAIT)
        except subprocess.TimeoutExpired:
            stack = self._stack_of_worker()
            self._end(kill=True)
            return _with_output(
                "its channel to the main process was closed while it kept running: something in it "
                "closed a file descriptor it did not open (a conftest or fixture closing inherited "
                "file descriptors?); childwatch killed it",
                stack,
            )
        self._end(kill=True)  # its process group: what its tests left
        return exit_status_text(status)

    def _log_size(self) -> int:
        return os.fstat(self._log.fileno()).st_size if self._log is not None else 0

    def _output_since(self, offset: int, limit: int = 20000) -> str:
        if self._log is None:
            return ""
        self._log.seek(offset)
        text = self._log.read().decode(errors="replace").rstrip()
        return text if len(text) <= limit else "…" + text[-limit:]

    def _end(self, kill: bool) -> int:
        """Reap the worker (killing it and its process group first if ``kill``); its exit status."""
        proc = self._proc
        self._proc = None
        for sock in (self._channel.sock if self._channel is not None else None, self._stack, self._listener):
            if sock is not None:
                sock.close()
        self._channel = self._stack = self._listener = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        if proc is None:
            return 0
        if kill:
            try:
                if self._interactive:
                    proc.kill()
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            return proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def run(
        self,
        item: pytest.Item,
        nextitem: Optional[pytest.Item],
        next_nodeid: Optional[str],
        probed: Dict[str, Optional[str]],
    ) -> None:
        """Run ``item`` in the worker and report it here as the regular protocol would
        (``pytest_runtest_logstart``, its reports, ``pytest_runtest_logfinish``), then
        tear down this process's fixtures that ``nextitem`` (this process's next item)
        does not share.

        ``next_nodeid`` is the item this worker will be given next, if any; ``probed``
        the answers the worker inherits if it is started.  A worker that could not start
        fails this item, and every later one, with its output.
        """
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        reports: List[pytest.TestReport] = []
        problem: Optional[str] = self._broken
        if problem is None:
            problem = self._exchange(item, next_nodeid, probed, reports)
        for report in reports:
            ihook.pytest_runtest_logreport(report=report)
        missing = _missing_phase([report for report in reports if report.nodeid == item.nodeid])
        if missing is not None:
            problem = problem or f"the isolated run of {item.nodeid} ended without a {missing} report"
            ihook.pytest_runtest_logreport(report=_failed_report(item, missing, problem))
        teardown_towards(item, nextitem)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    def _exchange(
        self,
        item: pytest.Item,
        next_nodeid: Optional[str],
        probed: Dict[str, Optional[str]],
        reports: List[pytest.TestReport],
    ) -> Optional[str]:
        """Have the worker run ``item``, appending its reports; what went wrong, or None."""
        offset = 0
        try:
            if self._channel is None:
                self._start(probed)
                channel = self._connected()
                ready = channel.receive() if channel is not None else None
                if ready is None or "ready" not in ready:
                    how = self._why_it_ended()
                    self._broken = (
                        f"the isolated worker ({self.name}) is not started again: it ended ({how.splitlines()[0]}) "
                        f"before it was ready, for {item.nodeid}, whose failure shows its output"
                    )
                    return _with_output(
                        f"the isolated worker ({self.name}) ended ({how}) before it was ready",
                        self._output_since(0),
                    )
            assert self._channel is not None
            offset = self._log_size()
            try:
                self._channel.send({"run": item.nodeid, "next": next_nodeid})
            except OSError:
                pass  # it died after its last item: reported below, at end of file
            while True:
                message = self._channel.receive()
                if message is None:
                    break
                if "report" in message:
                    reports.append(self._report(item, message["report"]))
                elif "missing" in message:
                    return _with_output(
                        f"the isolated worker ({self.name}) did not collect {item.nodeid}", message["errors"]
                    )
                elif message.get("done") == item.nodeid:
                    self._deaths = 0
                    return None
        except BaseException as exc:  # pytest-timeout's pytest.fail(), OSError, KeyboardInterrupt, …
            if not isinstance(exc, (pytest.fail.Exception, Exception)):
                self._end(kill=True)
                raise  # KeyboardInterrupt, SystemExit: the run stops
            stack = self._stack_of_worker()
            self._end(kill=True)
            return _with_output(
                f"the isolated run of {item.nodeid} was stopped: {type(exc).__name__}: {exc}",
                _with_output(self._output_since(offset), stack),
            )
        how = self._why_it_ended()
        self._deaths += 1
        if self._deaths >= MAX_DEATHS:
            self._broken = (
                f"the isolated worker ({self.name}) is not started again: it died in {self._deaths} tests "
                f"in a row, the last {item.nodeid} ({how.splitlines()[0]}), whose failure shows its output"
            )
        missing = _missing_phase([report for report in reports if report.nodeid == item.nodeid])
        return _with_output(
            f"the isolated run of {item.nodeid} ended ({how}) without a {missing} report",
            self._output_since(offset),
        )

    def _report(self, item: Optional[pytest.Item], data: Dict[str, Any]) -> pytest.TestReport:
        """The worker's report as a report of this process (of ``item``'s location, if it is its)."""
        report = self.config.hook.pytest_report_from_serializable(config=self.config, data=data)
        assert isinstance(report, pytest.TestReport)
        if item is not None and report.nodeid == item.nodeid:
            report.location = item.location
        if isinstance(report.longrepr, list):  # a skip's (path, lineno, reason), through JSON
            report.longrepr = tuple(report.longrepr)
        report.sections = [tuple(section) for section in report.sections]  # type: ignore[misc]
        report.user_properties = [tuple(prop) for prop in report.user_properties]  # type: ignore[misc]
        return report

    def stop(self) -> None:
        """End the worker, if running: it tears down what is left (those reports are
        logged here, on the items they belong to) and exits; killed if it takes longer
        than :data:`STOP_TIMEOUT` seconds."""
        channel = self._channel
        if channel is not None:
            channel.close_writer()
            kill = False
            try:
                while True:
                    message = channel.receive(timeout=STOP_TIMEOUT)
                    if message is None:
                        break
                    if "report" in message:
                        report = self._report(None, message["report"])
                        self.config.hook.pytest_runtest_logreport(report=report)
            except Exception:  # TimeoutError, or a worker past help: what it had left to say is lost
                kill = True
            self._end(kill=kill)
        if self._log is not None:
            self._log.close()
            self._log = None


def _with_output(what: str, output: str) -> str:
    return f"{what}\n{output}" if output else what


def _missing_phase(reports: Sequence[pytest.TestReport]) -> Optional[str]:
    seen = {report.when: report for report in reports}
    if "teardown" in seen:
        return None
    if "setup" not in seen:
        return "setup"
    if seen["setup"].passed and "call" not in seen:
        return "call"
    return "teardown"


def _failed_report(item: pytest.Item, when: str, message: str) -> pytest.TestReport:
    def fail() -> None:
        pytest.fail(message, pytrace=False)

    call = pytest.CallInfo.from_call(fail, when=when)  # type: ignore[arg-type]
    return pytest.TestReport.from_item_and_call(item, call)
