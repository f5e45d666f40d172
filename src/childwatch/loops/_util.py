"""Small helpers shared by the adapters."""

from __future__ import annotations

import asyncio
from typing import Optional


def family(loop: asyncio.AbstractEventLoop) -> str:
    """The top-level package of the loop's class: ``asyncio``, ``uvloop``, …"""
    return type(loop).__module__.partition(".")[0]


def distribution_version(name: str) -> Optional[str]:
    """The installed version of distribution ``name`` (None if not installed), without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
