"""Print the capability record of a trio-asyncio loop as JSON.

Run in its own process by ``python -m childwatch``: importing trio_asyncio
installs its policy and patches asyncio for the whole process.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        import trio
        import trio_asyncio
    except Exception as exc:  # ImportError, or the AttributeError it raises on 3.14+
        print(f"cannot import trio_asyncio: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3

    from .capabilities import capabilities

    async def probe() -> str:
        async with trio_asyncio.open_loop() as loop:
            return capabilities(loop).to_json()

    print(trio.run(probe))
    return 0


if __name__ == "__main__":
    sys.exit(main())
