"""Which loop implementations a session runs its tests on.

The contract:

* :func:`parse` reads ``--loop-impls`` (else the ``childwatch_loop_impls`` ini option):
  names separated by commas or spaces, in the order given, each a built-in name
  (:data:`.catalog.BUILTIN`), ``all`` (every built-in loop that is installed) or
  ``NAME=module:factory`` (a loop of the user's, under a name no built-in loop has).
  Nothing given: the default loops (``asyncio`` and the installed ones of ``uvloop`` and
  ``trio-asyncio``). A name given explicitly is selected even where it is not
  installed: its tests are skipped with the reason. Anything else is a usage error.
* :meth:`Selection.for_item` applies a test's ``childwatch_loops(*names)`` marker:
  the loops the test is parametrised on, each with the reason it is skipped as not
  selected; once collected, :func:`item_impl` reads off a test the one loop it runs on.
* ``--childwatch-isolate`` (else the ``childwatch_isolate`` ini option) names loops of the
  session (or ``all``) whose tests run in an isolated worker (:attr:`.catalog.LoopImpl.in_worker`),
  so that a crash of the loop fails one test, not the session.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import pytest

from . import catalog
from .catalog import LoopImpl
from .runners import LoopFactory

TRIO = "trio"
"""The name of anyio's trio backend (where a test runs on no asyncio loop), in ids and markers."""

_CUSTOM = re.compile(r"^([A-Za-z0-9_.-]+)=([A-Za-z_][\w.]*):([A-Za-z_][\w.]*)$")


def ini_name() -> str:
    # The entry point module declares the options and markers (imported here, not at
    # the top: it imports this package).
    from _childwatch_pytest import INI

    return INI


@dataclasses.dataclass(frozen=True)
class Selection:
    names: List[str]
    """The selected loop implementations, in order."""
    loops: Dict[str, LoopImpl]
    """Every loop implementation this session knows, by name: the built-in and the custom ones."""

    def factory(self, name: str) -> LoopFactory:
        """The :class:`.runners.LoopFactory` of ``name`` (with its entry if it is a custom loop); a
        usage error for a name that is no loop of this session (``trio``, anyio's trio backend)."""
        loop = self.loops.get(name)
        if loop is None:
            raise pytest.UsageError(f"{name} has no asyncio loop to make (loop_factory, run_on_loop)")
        return LoopFactory(name, loop if loop.custom else None)

    def for_item(self, item: Any) -> List[Tuple[str, Optional[str]]]:
        """(name, reason to skip or None) for each implementation ``item`` runs on."""
        marker = item.get_closest_marker("childwatch_loops") if item is not None else None
        if marker is None:
            return [(name, None) for name in self.names]
        names = list(marker.args)
        if not names or not all(isinstance(name, str) for name in names):
            raise pytest.UsageError(f"{item.nodeid}: childwatch_loops takes loop implementation names")
        unknown = [name for name in names if name not in self.loops]
        if unknown:
            raise pytest.UsageError(
                f"{item.nodeid}: childwatch_loops names unknown loop implementations {unknown}; "
                f"known: {', '.join(sorted(self.loops))}"
            )
        return [
            (name, None if name in self.names else f"{name} is not selected (--loop-impls / {ini_name()})")
            for name in names
        ]


def parse(config: pytest.Config) -> Selection:
    raw: Optional[str] = config.getoption("childwatch_loop_impls", default=None)
    if not raw:
        raw = str(config.getini(ini_name()) or "")
    tokens = [token for token in re.split(r"[,\s]+", raw) if token]
    loops = dict(catalog.BUILTIN)
    if not tokens:
        return Selection([loop.name for loop in loops.values() if loop.default and loop.installed()], loops)
    selected: List[str] = []
    for token in tokens:
        names: Iterable[str]
        match = _CUSTOM.match(token)
        if token == "all":
            names = [loop.name for loop in catalog.BUILTIN.values() if loop.installed()]
        elif match:
            name, module, attr = match.groups()
            if name in catalog.BUILTIN or name == TRIO:
                raise pytest.UsageError(
                    f"--loop-impls: {name!r} is taken (a built-in loop, or anyio's trio backend); give a custom loop another name"
                )
            loops[name] = catalog.custom(name, module, attr)
            names = [name]
        elif token in catalog.BUILTIN:
            names = [token]
        else:
            raise pytest.UsageError(
                f"--loop-impls: unknown loop implementation {token!r}; known: {', '.join(catalog.BUILTIN)}, "
                "'all', or NAME=module:factory for another loop"
            )
        selected.extend(name for name in names if name not in selected)
    return Selection(selected, _isolate(config, loops))


def _isolate(config: pytest.Config, loops: Dict[str, LoopImpl]) -> Dict[str, LoopImpl]:
    """``loops``, those named by ``--childwatch-isolate`` / its ini option marked ``in_worker``."""
    raw: Optional[str] = config.getoption("childwatch_isolate", default=None)
    if not raw:
        from _childwatch_pytest import ISOLATE_INI

        raw = str(config.getini(ISOLATE_INI) or "")
    names = [token for token in re.split(r"[,\s]+", raw) if token]
    if "all" in names:
        names = list(loops)
    unknown = [name for name in names if name not in loops]
    if unknown:
        raise pytest.UsageError(
            f"--childwatch-isolate: unknown loop implementations {unknown}; known: {', '.join(loops)}"
        )
    return {
        name: dataclasses.replace(loop, in_worker=True) if name in names else loop
        for name, loop in loops.items()
    }


def _impl_of(key: str, value: Any) -> Optional[str]:
    if isinstance(value, LoopFactory):
        return value.impl
    if key == "loop_impl" and isinstance(value, str):
        return value
    if key == "anyio_backend":
        backend, options = (value, {}) if isinstance(value, str) else (value[0], value[1])
        if isinstance(options, Mapping):
            factory = options.get("loop_factory")
            if isinstance(factory, LoopFactory):
                return factory.impl
            if backend == "asyncio" and options.get("use_uvloop"):
                return "uvloop"
        if backend in ("asyncio", TRIO):
            return str(backend)
    return None


def item_impl(item: pytest.Item) -> Optional[str]:
    """The loop implementation ``item`` runs on, as its parameters tell (``loop_impl``, a
    :class:`.runners.LoopFactory` of pytest-asyncio's or anyio's, anyio's backend: ``trio``
    for anyio's trio backend), or None."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    params: Mapping[str, Any] = callspec.params
    if "loop_impl" in params:
        return _impl_of("loop_impl", params["loop_impl"])
    for key, value in params.items():
        try:
            impl = _impl_of(key, value)
        except (TypeError, IndexError, KeyError):
            continue
        if impl is not None:
            return impl
    return None
