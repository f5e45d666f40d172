"""The loop implementations the plugin knows by name, and whether each can run here.

The contract:

* :data:`BUILTIN` maps every built-in name to its :class:`LoopImpl`, in the order
  ``--loop-impls=all`` lists them: ``asyncio``, ``uvloop``, ``trio-asyncio``, then the
  PyPI loops of :data:`childwatch._probe_loop.THIRD_PARTY` under their PyPI names
  (``asyncio-gevent`` for module ``asyncio_gevent``), made as ``python -m childwatch``
  makes them (:func:`childwatch._probe_loop.factory_of`).
  :func:`custom` makes the entry of a loop given as ``NAME=module:factory``.
* A :class:`LoopImpl` says which module it needs (:meth:`LoopImpl.installed` looks for
  it without importing it), how to make a fresh loop (:meth:`LoopImpl.new_loop`,
  importing on first call), whether it is in the default selection, and whether its
  tests must run in an isolated worker (``isolated``: it patches asyncio or the process
  when it is imported or used), with the code a fresh process must run before anything
  else for it (``preamble``), or because the session asks for it (``in_worker``).
* :func:`unavailable_reason` answers "can this loop run a coroutine here" once per
  process and loop, with the reason when it cannot (not installed, cannot be imported,
  cannot make a loop, cannot run a coroutine on this Python). An isolated loop is asked
  in a fresh process that runs its preamble; it is never imported here.
  An isolated worker adopts its parent's answers (:func:`answers`, :func:`adopt`).

Nothing here imports a loop when this module is imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import subprocess
import sys
import warnings
from typing import Any, Callable, Dict, Mapping, Optional

from .._probe_loop import THIRD_PARTY, check_runs_a_coroutine, exit_now, factory_of

NewLoop = Callable[[], Any]
"""A zero-argument callable making a fresh event loop."""

PROBE_TIMEOUT = 120.0
"""Seconds a fresh process gets to answer for an isolated loop."""

GEVENT_PREAMBLE = "from gevent import monkey\nmonkey.patch_all()"
"""asyncio-gevent is an asyncio loop on gevent's hub, meaningful only where gevent has
monkey-patched the process (:func:`childwatch._probe_loop.factory_of` patches it, as
that loop is meant to run), and the patching is best done first, before anything imports
threading or socket: its worker runs this before pytest is imported."""


@dataclasses.dataclass(frozen=True)
class LoopImpl:
    """One loop implementation the plugin can run tests on."""

    name: str
    """Its name in ``--loop-impls``, markers and test ids."""
    module: str
    """The module it needs (imported by :meth:`new_loop`, looked for by :meth:`installed`)."""
    factory: Callable[[Any], NewLoop]
    """Given the imported module, the callable making a loop."""
    default: bool = False
    """In the selection when none is given, if installed."""
    isolated: bool = False
    """Patches asyncio or the process: its tests run in an isolated worker."""
    preamble: str = ""
    """Python code an isolated process runs first, before pytest is imported."""
    in_worker: bool = False
    """Its tests run in an isolated worker by the session's choice (``--childwatch-isolate``:
    a loop that may crash), though it patches nothing."""
    custom: bool = False
    """Given as ``NAME=module:factory`` (the words of its reasons differ)."""

    def installed(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            return False

    def new_loop(self) -> Any:
        """A fresh loop (importing the module first, its warnings silenced)."""
        return self.factory(import_quietly(self.module))()


def import_quietly(module: str) -> Any:
    # trio-asyncio subclasses asyncio's deprecated child watcher at import
    # (a DeprecationWarning on 3.12/3.13): not the test's doing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(module)


def _stdlib(module: Any) -> NewLoop:
    cls: NewLoop = getattr(module, "EventLoop", None) or module.SelectorEventLoop  # EventLoop: 3.13+
    return cls


def _trio_asyncio(module: Any) -> NewLoop:
    # trio-asyncio's synchronous loop (trio in a greenlet), the one run_until_complete
    # works on; made directly, since a test runner may have replaced the policy
    # trio-asyncio installs at import.
    sync: NewLoop = import_quietly("trio_asyncio._sync").SyncTrioEventLoop
    return sync


@dataclasses.dataclass(frozen=True)
class _Attribute:
    """``factory`` of a custom loop: the (dotted) attribute ``path`` of its module."""

    path: str

    def __call__(self, module: Any) -> NewLoop:
        obj: Any = module
        for part in self.path.split("."):
            obj = getattr(obj, part)
        if not callable(obj):
            raise TypeError(f"{module.__name__}:{self.path} is not callable")
        factory: NewLoop = obj
        return factory


def custom(name: str, module: str, attr: str) -> LoopImpl:
    """The entry of a loop given as ``NAME=module:factory`` (``factory``: a dotted attribute)."""
    return LoopImpl(name, module, _Attribute(attr), custom=True)


_ISOLATED_THIRD_PARTY = {
    "rsloop": "",  # replaces asyncio.set_event_loop, open_connection and start_server when imported
    "qasync": "",  # needs a QApplication: one per process, kept for its life (PySide6 may abort at exit, 3.10)
    "asyncio_gevent": GEVENT_PREAMBLE,
}
"""The PyPI loops (by module) that patch asyncio or the process, and the preamble of each."""

BUILTIN: Dict[str, LoopImpl] = {
    loop.name: loop
    for loop in (
        LoopImpl("asyncio", "asyncio", _stdlib, default=True),
        LoopImpl("uvloop", "uvloop", factory_of, default=True),
        # trio-asyncio installs its policy and patches asyncio's functions when imported.
        LoopImpl("trio-asyncio", "trio_asyncio", _trio_asyncio, default=True, isolated=True),
        *(
            LoopImpl(
                module.replace("_", "-"),  # the name it has on PyPI
                module,
                factory_of,
                isolated=module in _ISOLATED_THIRD_PARTY,
                preamble=_ISOLATED_THIRD_PARTY.get(module, ""),
            )
            for module in THIRD_PARTY
        ),
    )
}
"""Every built-in loop implementation, by name."""


# -- availability ---------------------------------------------------------------------

_answers: Dict[LoopImpl, Optional[str]] = {}


def unavailable_reason(loop: LoopImpl) -> Optional[str]:
    """Why ``loop`` cannot run here, or None; asked once per process."""
    if loop not in _answers:
        _answers.setdefault(loop, _ask_elsewhere(loop) if loop.isolated else _ask_here(loop))
    return _answers[loop]


def reason_by_name(impl: str, loops: Mapping[str, LoopImpl] = BUILTIN) -> Optional[str]:
    """:func:`unavailable_reason` of the loop named ``impl`` in ``loops`` (unknown there: says so)."""
    loop = loops.get(impl)
    return f"unknown loop implementation {impl!r}" if loop is None else unavailable_reason(loop)


def answers() -> Dict[LoopImpl, Optional[str]]:
    """The answers this process has, for a worker to :func:`adopt`."""
    return dict(_answers)


def adopt(inherited: Mapping[LoopImpl, Optional[str]]) -> None:
    """Take another process's answers (an isolated worker's parent's: the same interpreter)."""
    for loop, reason in inherited.items():
        _answers.setdefault(loop, reason)


def _python() -> str:
    return ".".join(map(str, sys.version_info[:2]))


def _ask_here(loop: LoopImpl) -> Optional[str]:
    with warnings.catch_warnings():
        # Not a test's: rloop 0.5 drops its self-pipe sockets unclosed after each run.
        warnings.simplefilter("ignore", ResourceWarning)
        return _try(loop)


def _try(loop: LoopImpl) -> Optional[str]:
    if not loop.custom and not loop.installed():
        return f"{loop.name} is not installed"
    try:
        new_loop = loop.factory(import_quietly(loop.module))
    except Exception as exc:  # ImportError, or what a too-new asyncio makes it raise
        what = "be loaded" if loop.custom else f"be imported on Python {_python()}"
        return f"{loop.name} cannot {what}: {type(exc).__name__}: {exc}"
    try:
        made = new_loop()
    except Exception as exc:
        return f"{loop.name} cannot make a loop on Python {_python()}: {type(exc).__name__}: {exc}"
    try:
        check_runs_a_coroutine(made)
    except RuntimeError as exc:
        return f"{loop.name}: {exc}"
    finally:
        made.close()
    return None


def _ask_elsewhere(loop: LoopImpl) -> Optional[str]:
    if not loop.installed():
        return f"{loop.name} is not installed"
    code = f"{loop.preamble}\nfrom {__name__} import answer_for\nanswer_for({loop.name!r})"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{loop.name}: asking a fresh process whether it runs here timed out"
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode == 0 and lines:
        reason: Optional[str] = json.loads(lines[-1])
        return reason
    output = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
    last = output[-1] if output else f"exit status {proc.returncode}"
    return f"{loop.name} cannot be used on Python {_python()}: {last}"


def answer_for(name: str) -> None:
    """In a fresh process: print :func:`unavailable_reason` of built-in ``name`` as JSON
    and exit at once (a loop's extension may crash in the interpreter's teardown)."""
    warnings.simplefilter("ignore")
    print(json.dumps(_ask_here(BUILTIN[name])))
    exit_now(0)
