"""The childwatch pytest plugin: run tests once per event loop implementation.

Registered through the ``pytest11`` entry point (``_childwatch_pytest``), so it is
active wherever childwatch is installed, and inert until a test uses it: it adds no
autouse fixture, and its hooks only act on tests that request :func:`loop_impl` (or a
fixture that depends on it), that carry one of its markers, or that are parametrised
with the loop factories it hands to pytest-asyncio or anyio.  Importing it imports no
event loop but the stdlib's.

What it provides:

* fixtures ``loop_impl`` (the name of the loop implementation under test),
  ``loop_factory`` (a zero-argument callable making a fresh loop of it) and
  ``run_on_loop`` (runs a coroutine function on a fresh loop of it, then closes
  the loop); a test that requests any of them runs once per selected
  implementation, with ids such as ``test_x[uvloop]``;
* ``--loop-impls`` / the ``childwatch_loop_impls`` ini option selecting the
  implementations (default: ``asyncio`` and the installed ones of uvloop and
  trio-asyncio; ``all``: every installed loop the plugin knows, :data:`KNOWN_LOOP_IMPLS`);
* markers ``childwatch_loops(*names)`` (restrict a test to some
  implementations), ``childwatch_skip(*names, reason=None)`` and
  ``childwatch_xfail(*names, reason=None, strict=None)`` (skip or xfail a test on
  some implementations), ``childwatch_requires(*capabilities, xfail=False,
  strict=None)`` (skip or xfail where the loop lacks a capability, as told by
  :func:`childwatch.capabilities`) and ``childwatch_isolated`` (run the test in
  a pytest process of its own: a worker for that test only), honoured alike
  whichever integration runs the test;
* :func:`loop_impl_of` (the loop a collected test runs on, for a conftest's hooks);
* :func:`loop_factories` for pytest-asyncio's ``pytest_asyncio_loop_factories``
  hook, and :func:`anyio_backend_fixture` / :func:`anyio_backends` for anyio's
  ``anyio_backend`` fixture (plain asyncio alone where the plugin is switched off),
  changing nothing else: a project's own asyncio loop policy, anyio's per-test scope
  and backend options are kept;
* a test that fails starting a subprocess on a loop whose capabilities say it has none
  is skipped with that reason (ini ``childwatch_skip_unsupported``).

Loops that patch asyncio or the process (trio-asyncio, rsloop, qasync, asyncio-gevent),
and those named by ``--childwatch-isolate`` (a loop that may crash), run their tests in
an isolated worker: one pytest process per session (per xdist worker) for each such
loop, started on first use and fed test after test; a test marked
``childwatch_isolated`` gets a worker of its own.  Their reports are replayed in the
main process as if they had run there; a worker that dies fails its test and is
replaced.  On a loop that swallows pytest-timeout's signal (uvloop), the plugin
enforces pytest-timeout's limit itself, from a watchdog thread.

The modules, one job each:

* :mod:`.catalog`: the loops known by name, how to make each, which must be isolated,
  and whether each can run here;
* :mod:`.selection`: ``--loop-impls``, the ini option, ``childwatch_loops``, and which
  loop a collected test runs on;
* :mod:`.state`: the one state object per config (whether the plugin is switched on), and
  the public questions asked of it;
* :mod:`.runners`: :class:`LoopFactory` and :class:`LoopRunner`;
* :mod:`.fixtures`: ``loop_impl``, ``loop_factory``, ``run_on_loop``;
* :mod:`.integrations`: pytest-asyncio's loop factories, anyio's backends;
* :mod:`.requirements`: ``childwatch_requires`` → capabilities → skip or xfail;
* :mod:`.loop_marks`: ``childwatch_skip`` and ``childwatch_xfail`` → skip or xfail;
* :mod:`.isolation`: which tests run in a worker, and the session's workers;
* :mod:`.worker`: one worker process and the protocol it speaks, both sides;
* :mod:`.watchdog`: pytest-timeout's limit on the loops that swallow its signal;
* :mod:`.hooks`: the pytest hooks, calling the above.
"""

from __future__ import annotations

from typing import Tuple

from .catalog import BUILTIN
from .fixtures import loop_factory, loop_impl, run_on_loop
from .integrations import anyio_backend_fixture, anyio_backends, loop_factories
from .runners import LoopFactory, LoopRunner
from .state import loop_impl_of, selected_loop_impls, unavailable_reason

__all__ = [
    "KNOWN_LOOP_IMPLS",
    "LoopFactory",
    "LoopRunner",
    "anyio_backend_fixture",
    "anyio_backends",
    "loop_factories",
    "loop_factory",
    "loop_impl",
    "loop_impl_of",
    "run_on_loop",
    "selected_loop_impls",
    "unavailable_reason",
]

KNOWN_LOOP_IMPLS: Tuple[str, ...] = tuple(BUILTIN)
"""The loop implementations the plugin knows by name (``--loop-impls=all`` selects the installed ones)."""
