"""Which tests run in an isolated worker, and running them there.

The contract:

* :func:`worker_for` says where a test runs: here (None), in a worker of its own
  (``""``: marked ``childwatch_isolated``), or in the shared worker of the loop it runs
  on (that loop's name: a loop that patches asyncio or the process, or that the session
  isolates with ``--childwatch-isolate``, and can run here).
  A test skipped by a mark runs here (it runs nothing).
* :class:`Isolation`, one per session (per pytest-xdist worker under ``-n``), starts a
  shared worker per such loop on first use, with that loop's preamble, restricted to
  the modules of the tests it may be given; feeds it test after test, telling it which
  of its tests comes next (so its module- and session-scoped fixtures live as long as
  its tests need them); and stops them at the end of the session.  Reports are logged
  here as if the test had run here (:mod:`.worker`).
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence

import pytest

from . import catalog
from .catalog import LoopImpl
from .selection import item_impl
from .worker import Worker


def worker_for(item: pytest.Item, loops: Mapping[str, LoopImpl]) -> Optional[str]:
    """Where ``item`` runs, if not in this process: the name of the loop whose shared
    worker runs it, or ``""`` for a worker of its own (``childwatch_isolated``)."""
    if item.get_closest_marker("skip") is not None:
        return None  # skipped without running anything
    if item.get_closest_marker("childwatch_isolated") is not None:
        return ""
    loop = loops.get(item_impl(item) or "")
    if loop is None or not (loop.isolated or loop.in_worker) or catalog.unavailable_reason(loop) is not None:
        return None
    return loop.name


@dataclasses.dataclass
class _Plan:
    """Where the items of a session that run in shared workers are, in run order."""

    items: List[pytest.Item]
    index: Dict[pytest.Item, int]
    positions: Dict[str, List[int]]
    """Shared worker name (an isolated loop's) → indices of its items."""

    @classmethod
    def of(cls, items: Sequence[pytest.Item], loops: Mapping[str, LoopImpl]) -> _Plan:
        positions: Dict[str, List[int]] = {}
        for at, item in enumerate(items):
            name = worker_for(item, loops)
            if name:
                positions.setdefault(name, []).append(at)
        return cls(list(items), {item: at for at, item in enumerate(items)}, positions)

    def next_for(self, worker: str, nextitem: Optional[pytest.Item]) -> Optional[str]:
        """The node id of the first item of ``worker`` from ``nextitem`` on (None: there is none).

        Exact under pytest's own run loop; under pytest-xdist, which hands each process
        only some of the items, a guess that the worker corrects (see :mod:`.worker`).
        """
        start = self.index.get(nextitem) if nextitem is not None else None
        if start is None:
            return None
        positions = self.positions.get(worker, [])
        at = bisect.bisect_left(positions, start)
        return self.items[positions[at]].nodeid if at < len(positions) else None


@dataclasses.dataclass
class Isolation:
    """A session's isolated workers."""

    plan: Optional[_Plan] = None
    workers: Dict[str, Worker] = dataclasses.field(default_factory=dict)
    own_processes: int = 0

    def run(self, item: pytest.Item, nextitem: Optional[pytest.Item], loops: Mapping[str, LoopImpl]) -> bool:
        """Run ``item`` in its worker and report it here; False if it runs in this process."""
        name = worker_for(item, loops)
        if name is None:
            return False
        probed = {
            loop.name: reason for loop, reason in catalog.answers().items() if loops.get(loop.name) == loop
        }
        if name == "":
            self.own_processes += 1
            own = Worker(item.config, f"isolated-{self.own_processes}", [str(item.path)])
            try:
                own.run(item, nextitem, None, probed)
            finally:
                own.stop()
            return True
        plan = self.plan
        if plan is None:
            plan = self.plan = _Plan.of(item.session.items, loops)
        worker = self.workers.get(name)
        if worker is None:
            at_positions = plan.positions.get(name, [])
            modules = dict.fromkeys([str(item.path), *(str(plan.items[at].path) for at in at_positions)])
            worker = self.workers[name] = Worker(item.config, name, list(modules), loops[name].preamble)
        worker.run(item, nextitem, plan.next_for(name, nextitem), probed)
        return True

    def stop(self) -> None:
        """Stop the shared workers (they report errors tearing down what they still hold)."""
        self.plan = None
        workers, self.workers = self.workers, {}
        for worker in workers.values():
            worker.stop()
