"""Exceptions raised by childwatch."""

from __future__ import annotations


class UnsupportedLoopError(NotImplementedError):
    """The event loop forbids what the watcher needs.

    A subclass of :class:`NotImplementedError`, so code that already catches
    the error uvloop raises for child watchers keeps working.
    """
