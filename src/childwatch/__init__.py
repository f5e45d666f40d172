"""childwatch: asyncio's child watchers, on every loop and every Python 3.9+."""

from ._contract import AbstractChildWatcher
from ._errors import UnsupportedLoopError
from .watchers import (
    FastChildWatcher,
    MultiLoopChildWatcher,
    PidfdChildWatcher,
    SafeChildWatcher,
    ThreadedChildWatcher,
)

__version__ = "0.1.0"

__all__ = [
    "AbstractChildWatcher",
    "FastChildWatcher",
    "MultiLoopChildWatcher",
    "PidfdChildWatcher",
    "SafeChildWatcher",
    "ThreadedChildWatcher",
    "UnsupportedLoopError",
]
