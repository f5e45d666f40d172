"""What gevent's monkey-patching takes from child watchers, in one place.

After ``gevent.monkey.patch_all()`` (asyncio-gevent's loop runs that way),
gevent's ``os`` and ``subprocess`` wait for children through libev, whose
SIGCHLD handler reaps *every* child of the process with ``waitpid(-1)`` as soon
as it exits.  No status can then be read without reaping, and a child that
gevent's own ``subprocess.Popen`` did not start is reaped with its status
thrown away.  So, while gevent has patched ``os``:

* every watcher refuses (:class:`~childwatch.UnsupportedLoopError` with
  :data:`REAPS_EVERY_CHILD`) instead of reporting 255 for a status it lost;
* ``set_child_watcher`` / ``get_child_watcher`` refuse: the loop's own
  subprocesses work through gevent as they are;
* ``wait_pid`` waits for a gevent ``Popen`` (gevent stores its returncode when
  libev reaps it) and refuses a bare pid;
* :func:`childwatch.capabilities` says ``unsupported`` with this reason.

Nothing here imports gevent: a process that never imported ``gevent.monkey``
is not patched.
"""

from __future__ import annotations

import sys
from typing import Optional

from ._errors import UnsupportedLoopError

REAPS_EVERY_CHILD = (
    "gevent's monkey-patched os reaps every child itself (libev's SIGCHLD handler calls "
    "waitpid(-1)), so no status can be read before it is gone (UnsupportedLoopError); "
    "under gevent wait with gevent's subprocess.Popen, or childwatch.wait_pid(popen)"
)


MONKEY = "gevent.monkey"
"""The module whose import is the first sign of patching: absent from ``sys.modules``,
nothing is patched."""


def patched(module: str) -> bool:
    """True if gevent's monkey-patching has replaced stdlib ``module`` in this process."""
    monkey = sys.modules.get(MONKEY)
    return monkey is not None and bool(monkey.is_module_patched(module))


def reaping_refusal() -> Optional[str]:
    """:data:`REAPS_EVERY_CHILD` while gevent has patched ``os``, else None."""
    return REAPS_EVERY_CHILD if patched("os") else None


def refuse_under_gevent(what: str) -> None:
    """Raise :class:`~childwatch.UnsupportedLoopError` for ``what`` while gevent has patched ``os``.

    Every registration asks: without gevent it costs one dict lookup."""
    if MONKEY not in sys.modules:
        return
    reason = reaping_refusal()
    if reason is not None:
        raise UnsupportedLoopError(f"{what} cannot work here: {reason}")
