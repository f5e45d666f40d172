"""The five watchers, one module per strategy."""

from .fast import FastChildWatcher
from .multiloop import MultiLoopChildWatcher
from .pidfd import PidfdChildWatcher
from .safe import SafeChildWatcher
from .threaded import ThreadedChildWatcher

__all__ = [
    "FastChildWatcher",
    "MultiLoopChildWatcher",
    "PidfdChildWatcher",
    "SafeChildWatcher",
    "ThreadedChildWatcher",
]
