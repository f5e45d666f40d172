"""A flood of SIGCHLD: eight threads churn ``subprocess.run`` while an asyncio
program's own children are reaped by one watcher (run by tests/test_flood.py).

    python flood_child.py WATCHER [THREADS] [ROUNDS] [CONCURRENCY]

The program sets the watcher on its loop, then adds a signal handler of its
own (``loop.add_signal_handler``, which sets the signal wake-up fd again, as
an application's SIGTERM handler would), and runs ROUNDS rounds of
CONCURRENCY children with exact exit codes, each round bounded.  Prints one
JSON line: children done, wrong statuses, seconds.  Python's warnings about a
full wake-up fd go to stderr, which the test reads.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List

import childwatch


def churn(stop: threading.Event) -> None:
    while not stop.is_set():
        subprocess.run(["true"], check=True)


async def child(code: int) -> int:
    proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}", stdout=subprocess.PIPE)
    await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode


async def main(name: str, threads: int, rounds: int, concurrency: int) -> Dict[str, Any]:
    loop = asyncio.get_running_loop()
    watcher = getattr(childwatch, f"{name}ChildWatcher")()
    childwatch.set_child_watcher(watcher)
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)  # the application's own handler, added later
    stop = threading.Event()
    churners = [threading.Thread(target=churn, args=(stop,)) for _ in range(threads)]
    for thread in churners:
        thread.start()
    started = time.monotonic()
    done, wrong = 0, 0
    try:
        for round_ in range(rounds):
            codes = [(round_ * concurrency + i) % 256 for i in range(concurrency)]
            got: List[int] = await asyncio.wait_for(asyncio.gather(*map(child, codes)), 60)
            done += len(got)
            wrong += sum(a != b for a, b in zip(got, codes))
    finally:
        stop.set()
        for thread in churners:
            thread.join(30)
        loop.remove_signal_handler(signal.SIGUSR1)
        childwatch.set_child_watcher(None)
        watcher.close()
    return {"done": done, "wrong": wrong, "seconds": round(time.monotonic() - started, 1)}


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    name, *numbers = sys.argv[1:]
    threads, rounds, concurrency = (list(map(int, numbers)) + [8, 12, 32][len(numbers) :])[:3]
    print(json.dumps(asyncio.run(main(name, threads, rounds, concurrency))), flush=True)
