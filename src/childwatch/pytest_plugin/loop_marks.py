"""The ``childwatch_skip`` and ``childwatch_xfail`` markers: skip or xfail a test on named loops.

The contract: :func:`check` validates a test's markers at collection:
``childwatch_skip(*names, reason=None)`` and ``childwatch_xfail(*names, reason=None,
strict=None)``, each name a loop implementation the session knows or ``trio`` (anyio's trio
backend); no name, another name or another keyword is a usage error.  :func:`apply` marks a
test that runs on one of the named loops (:func:`.selection.item_impl`, whichever integration
made it run there) with a skip, or an xfail that still runs (``strict`` as given, else
pytest's ``xfail_strict``), with the marker's reason, else one naming the loop and the
marker.  The closest marker naming the loop wins.  A test on no loop is left alone.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable

import pytest

from .selection import TRIO

_KEYWORDS = {"childwatch_skip": {"reason"}, "childwatch_xfail": {"reason", "strict"}}


def check(item: pytest.Item, known: Iterable[str]) -> None:
    """Raise a usage error if a ``childwatch_skip`` or ``childwatch_xfail`` marker of ``item``
    is malformed; ``known``: the loop implementations of the session."""
    names_known = {*known, TRIO}
    for marker, keywords in _KEYWORDS.items():
        for mark in item.iter_markers(marker):
            names = list(mark.args)
            if not names or not all(isinstance(name, str) for name in names):
                raise pytest.UsageError(f"{item.nodeid}: {marker} takes loop implementation names")
            unknown_kwargs = set(mark.kwargs) - keywords
            if unknown_kwargs:
                raise pytest.UsageError(
                    f"{item.nodeid}: {marker} got unknown arguments {sorted(unknown_kwargs)}"
                )
            unknown = [name for name in names if name not in names_known]
            if unknown:
                raise pytest.UsageError(
                    f"{item.nodeid}: {marker} names unknown loop implementations {unknown}; "
                    f"known: {', '.join(sorted(names_known))}"
                )


def apply(item: pytest.Item, impl: str) -> None:
    """Skip or xfail ``item``, which runs on ``impl``, as its markers naming ``impl`` say."""
    skip = next((mark for mark in item.iter_markers("childwatch_skip") if impl in mark.args), None)
    if skip is not None:
        item.add_marker(
            pytest.mark.skip(reason=skip.kwargs.get("reason") or f"skipped on {impl} (childwatch_skip)")
        )
        return
    xfail = next((mark for mark in item.iter_markers("childwatch_xfail") if impl in mark.args), None)
    if xfail is not None:
        kwargs: Dict[str, Any] = {
            "reason": xfail.kwargs.get("reason") or f"expected to fail on {impl} (childwatch_xfail)",
            "run": True,
        }
        if xfail.kwargs.get("strict") is not None:
            kwargs["strict"] = bool(xfail.kwargs["strict"])
        item.add_marker(pytest.mark.xfail(**kwargs))
