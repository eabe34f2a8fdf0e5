"""What-if for scenario 5: a CLI that keeps several removals in flight instead of one at a time.

`python -m bench.batch_cli --server HOST:PORT -n NS [--concurrency K] IMAGE...` removes every image but the
last with `async_gc`, at most K at a time, then the last one without it, so containerd's collection pass at
the end frees all of them (as `imageremoval rm` does, one at a time). It prints what `imageremoval rm` prints,
in the order of the arguments. Only the benchmark uses it, to put a number on a change the real CLI could
make without any API change (for independent references: Docker's order matters when they are related).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from imageremoval.client import AsyncImageRemovalClient, ImageRemovalError, RemovedItem


async def _remove_all(server: str, namespace: str, images: Sequence[str], concurrency: int) -> int:
    results: list[list[RemovedItem] | ImageRemovalError] = [[] for _ in images]
    gate = asyncio.Semaphore(concurrency)
    async with AsyncImageRemovalClient(server) as client:

        async def one(position: int, async_gc: bool) -> None:
            async with gate:
                try:
                    results[position] = await client.remove(images[position], namespace=namespace, async_gc=async_gc)
                except ImageRemovalError as error:
                    results[position] = error

        await asyncio.gather(*(one(position, True) for position in range(len(images) - 1)))
        await one(len(images) - 1, False)
    failed = 0
    for result in results:
        if isinstance(result, ImageRemovalError):
            failed += 1
            print(f"Error response from daemon: {result.message}", file=sys.stderr)
        else:
            for item in result:
                print(item)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.batch_cli")
    parser.add_argument("--server", required=True)
    parser.add_argument("-n", "--namespace", default="")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("images", nargs="+")
    args = parser.parse_args(argv)
    return asyncio.run(_remove_all(args.server, args.namespace, args.images, max(1, args.concurrency)))


if __name__ == "__main__":
    sys.exit(main())
