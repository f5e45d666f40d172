"""Run in a fresh interpreter: N event loop policies, each creating a watcher
and abandoning it (never closed, as policies never close theirs).

    python abandoned_watchers_child.py {childwatch|asyncio} WATCHER N SPAWN

WATCHER is Safe, Fast, MultiLoop, Threaded or Pidfd; SPAWN 1 runs one
asyncio subprocess per policy.  On 3.9–3.13 the watcher goes through the
policy as asyncio's own tests use it (attached, set, the loop closed, the
policy's event loop reset, the policy dropped); on 3.14+, where policies have
no watcher, childwatch's is set on each loop with ``childwatch.set_child_watcher``.
Runs under ``RLIMIT_NOFILE`` soft 1024.  Prints one JSON line: the threads,
fds and unreaped children left after a garbage collection, and the seconds
taken.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import threading
import time
import warnings

warnings.simplefilter("ignore", DeprecationWarning)  # 3.12/3.13: asyncio's watcher API

source, name, count, spawn = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
if source == "childwatch":
    import childwatch

    cls = getattr(childwatch, f"{name}ChildWatcher")
else:
    cls = getattr(asyncio, f"{name}ChildWatcher")

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
POLICY_WATCHERS = sys.version_info < (3, 14)


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def children() -> list:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                found.append(int(entry))
    return found


async def one_child() -> int:
    proc = await asyncio.create_subprocess_exec("true")
    return await asyncio.wait_for(proc.wait(), 30)


held = {"fds": 0, "threads": 0}


def one_policy() -> None:
    """One policy's life; ``held``: the most fds and threads an idle watcher
    kept while still referenced (its loop closed, its children delivered)."""
    watcher = cls()
    if POLICY_WATCHERS:
        policy = asyncio.DefaultEventLoopPolicy()
        asyncio.set_event_loop_policy(policy)
        loop = policy.new_event_loop()
        policy.set_event_loop(loop)
        watcher.attach_loop(loop)
        policy.set_child_watcher(watcher)
    else:
        loop = asyncio.new_event_loop()
        childwatch.set_child_watcher(watcher, loop)
    try:
        if spawn:
            assert loop.run_until_complete(one_child()) == 0
    finally:
        loop.close()
        held["fds"] = max(held["fds"], fds() - baseline_fds)
        held["threads"] = max(held["threads"], threading.active_count() - baseline_threads)
        if POLICY_WATCHERS:
            policy.set_event_loop(None)
            asyncio.set_event_loop_policy(None)


baseline_fds, baseline_threads = fds(), threading.active_count()
started = time.monotonic()
for _ in range(count):
    one_policy()
gc.collect()
print(
    json.dumps(
        {
            "threads": threading.active_count() - baseline_threads,
            "fds": fds() - baseline_fds,
            "zombies": children(),
            "held_while_idle": held,
            "seconds": round(time.monotonic() - started, 2),
        }
    )
)
