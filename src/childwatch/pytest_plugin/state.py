"""The plugin's one state object per pytest config, and the public questions asked of it.

The contract: everything the plugin knows about a session lives in the :class:`State`
kept in the config's stash (:func:`of`): its :class:`.selection.Selection`, whether this
process is an isolated worker, and the workers the session has started
(:class:`.isolation.Isolation`).  The one thing kept per process instead is what is true
of the interpreter whatever the session: whether a loop can run here
(:func:`.catalog.unavailable_reason`).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

import pytest

from . import catalog, selection
from .isolation import Isolation


@dataclasses.dataclass
class State:
    selection: selection.Selection
    in_worker: bool = False
    """Set in an isolated worker: everything runs in place there."""
    isolation: Isolation = dataclasses.field(default_factory=Isolation)

    def unavailable_reason(self, impl: str) -> Optional[str]:
        """Why loop implementation ``impl`` (a name this session knows) cannot run here, or None."""
        return catalog.reason_by_name(impl, self.selection.loops)


_KEY = pytest.StashKey[State]()


def of(config: pytest.Config) -> State:
    """The config's state (made on first use where the plugin did not configure it, e.g. loaded late)."""
    state = config.stash.get(_KEY, None)
    if state is None:
        state = config.stash[_KEY] = State(selection.parse(config))
    return state


def set_up(config: pytest.Config, in_worker: bool) -> State:
    state = config.stash[_KEY] = State(selection.parse(config), in_worker)
    return state


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
