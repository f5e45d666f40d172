"""How childwatch reports trouble: the exception it raises for a loop, and its logger."""

from __future__ import annotations

import logging

logger = logging.getLogger("childwatch")
"""Warnings (a status someone else collected), errors of callbacks outside any loop, debug notes."""


class UnsupportedLoopError(NotImplementedError):
    """The event loop forbids what the watcher needs.

    A subclass of :class:`NotImplementedError`, so code that already catches
    the error uvloop raises for child watchers keeps working.
    """
