"""Who a loop is: its family (top-level package), its class's name, its distribution's version."""

from __future__ import annotations

from typing import Optional


def family(loop: object) -> str:
    """The top-level package of the loop's class: ``asyncio``, ``uvloop``, …"""
    return type(loop).__module__.partition(".")[0]


def class_name(obj: object) -> str:
    """``module.QualName`` of ``obj``'s class, as messages and records name a loop or watcher."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def distribution_version(name: str) -> Optional[str]:
    """The installed version of distribution ``name`` (None if not installed), without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
