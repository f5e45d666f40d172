"""The plugin's one state object per pytest config, and the public questions asked of it.

The contract: everything the plugin knows about a session lives in the :class:`State`
kept in the config's stash (:func:`of`): whether the plugin is switched on, its
:class:`.selection.Selection`, whether this process is an isolated worker, and the workers
the session has started (:class:`.isolation.Isolation`).  The one thing kept per process
instead is what is true of the interpreter whatever the session: whether a loop can run
here (:func:`.catalog.unavailable_reason`).

The plugin is switched off where its entry point is not registered (``-p no:childwatch``;
``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` without ``-p childwatch``) or stands in for a childwatch
that cannot work here: the conftest snippets that call into this package
(:mod:`.integrations`) then run their tests on plain asyncio alone, its markers do nothing,
and no test runs on a loop of the plugin's (:func:`loop_impl_of` is None).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import List, Optional

import pytest

from . import catalog, selection
from .isolation import Isolation
from .selection import TRIO


@dataclasses.dataclass
class State:
    selection: selection.Selection
    active: bool = True
    """False where the plugin is switched off: the selection is then ``asyncio`` alone."""
    in_worker: bool = False
    """Set in an isolated worker: everything runs in place there."""
    isolation: Isolation = dataclasses.field(default_factory=Isolation)

    def unavailable_reason(self, impl: str) -> Optional[str]:
        """Why loop implementation ``impl`` (a name this session knows) cannot run here, or None."""
        return catalog.reason_by_name(impl, self.selection.loops)

    def skip_reason(self, item: pytest.Item, impl: str) -> Optional[str]:
        """Why ``item``, collected to run on ``impl``, is skipped before it starts, or None: that
        loop is not selected for it (:meth:`.selection.Selection.for_item`), or cannot run here
        (``trio``, anyio's trio backend: where trio is not installed)."""
        if impl == TRIO:
            return None if importlib.util.find_spec("trio") is not None else "trio is not installed"
        not_selected = dict(self.selection.for_item(item)).get(impl)
        if not_selected is not None or impl not in self.selection.loops:
            return not_selected
        return self.unavailable_reason(impl)


_KEY = pytest.StashKey[State]()


def _switched_on(config: pytest.Config) -> bool:
    import _childwatch_pytest  # the entry point (imports this package: not at the top)

    return _childwatch_pytest.UNAVAILABLE is None and config.pluginmanager.is_registered(_childwatch_pytest)


def of(config: pytest.Config) -> State:
    """The config's state (made on first use where the plugin did not configure it: a conftest
    hook asking before the plugin's ``pytest_configure``, or the plugin switched off)."""
    state = config.stash.get(_KEY, None)
    if state is None:
        if _switched_on(config):
            state = State(selection.parse(config))
        else:
            state = State(selection.Selection(["asyncio"], dict(catalog.BUILTIN)), active=False)
        config.stash[_KEY] = state
    return state


def set_up(config: pytest.Config, in_worker: bool) -> State:
    state = config.stash[_KEY] = State(selection.parse(config), in_worker=in_worker)
    return state


def loop_impl_of(item: pytest.Item) -> Optional[str]:
    """The loop implementation collected test ``item`` runs on, or None for a test that runs on
    none of the plugin's loops (or where the plugin is switched off).

    The name is that of ``--loop-impls`` (``asyncio``, ``uvloop``, ``trio-asyncio``, …), or
    ``trio`` for anyio's trio backend, whichever integration runs the test: the plugin's
    fixtures, pytest-asyncio's loop factories or anyio's backends (:func:`.selection.item_impl`).
    Usable from ``pytest_collection_modifyitems`` on; the ``loop_impl`` fixture gives the same
    name when the test runs.
    """
    return selection.item_impl(item) if of(item.config).active else None


def selected_loop_impls(config: pytest.Config) -> List[str]:
    """The loop implementations selected by ``--loop-impls`` / ``childwatch_loop_impls``.

    Default: ``asyncio`` and every installed one of uvloop and trio-asyncio.
    ``all`` names every installed one of the loops the plugin knows (a loop that
    cannot run on this Python is then skipped, with the reason).
    """
    return list(of(config).selection.names)


def unavailable_reason(impl: str, config: Optional[pytest.Config] = None) -> Optional[str]:
    """Why loop implementation ``impl`` cannot run here (not installed, cannot be imported,
    cannot run a coroutine on this Python), or None.

    With ``config``, ``impl`` may be a loop given there as ``NAME=module:factory``.
    Loops that patch asyncio are asked in a separate process; isolated workers inherit
    the answers of the main process.  Answers are kept for the life of the process.
    """
    return catalog.reason_by_name(impl) if config is None else of(config).unavailable_reason(impl)
