"""childwatch: asyncio's child watchers, on every loop and every Python 3.9+."""

from ._api import default_watcher, get_child_watcher, set_child_watcher
from ._contract import AbstractChildWatcher
from ._errors import UnsupportedLoopError
from ._wait_pid import wait_pid
from .capabilities import Capabilities, Support, capabilities
from .watchers import (
    FastChildWatcher,
    MultiLoopChildWatcher,
    PidfdChildWatcher,
    SafeChildWatcher,
    ThreadedChildWatcher,
)

__version__ = "0.2.0"

__all__ = [
    "AbstractChildWatcher",
    "Capabilities",
    "FastChildWatcher",
    "MultiLoopChildWatcher",
    "PidfdChildWatcher",
    "SafeChildWatcher",
    "Support",
    "ThreadedChildWatcher",
    "UnsupportedLoopError",
    "capabilities",
    "default_watcher",
    "get_child_watcher",
    "set_child_watcher",
    "wait_pid",
]
