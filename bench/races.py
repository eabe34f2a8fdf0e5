"""`python -m bench.races SCENARIO`: the issue-9 race loops at full size, with their outcome counts."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from imageremoval.client import ImageRemovalClient
from imageremoval.server.app import App, create_server
from imageremoval.server.config import ServerConfig
from imageremoval.server.containerd.daemon import PrivateContainerd
from tests.support import races
from tests.support.ctr import Ctr
from tests.support.images import busybox_layer
from tests.support.store import Store

SCENARIOS = ("ctr-run", "retag", "pull-end", "concurrent-id", "concurrent-names", "kill")
DEFAULT_TRIALS = {"ctr-run": 90, "retag": 30, "pull-end": 40, "concurrent-id": 30, "concurrent-names": 60, "kill": 8}


class _Server:
    """Our server in a thread of its own, on a free port."""

    def __init__(self, address: str, *, index: bool = True) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.app: App = asyncio.run_coroutine_threadsafe(self._build(address, index), self.loop).result(60)

    async def _build(self, address: str, index: bool) -> App:
        app = create_server(ServerConfig(listen="127.0.0.1:0"), address)
        await app.start()
        if not index and app.index is not None:
            await app.index.stop()  # every read goes to containerd, as before the index (issue 13)
        return app

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(5), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def run(scenario: str, trials: int, work: Path, *, index: bool = True) -> races.Counts:
    """One scenario against a fresh private containerd and server."""
    daemon = PrivateContainerd(work / "containerd")
    daemon.start()
    server = _Server(daemon.address, index=index)
    store = Store(daemon.address)
    namespace = f"race-{scenario}"
    try:
        if scenario == "kill":

            def kill() -> None:
                process = daemon._process  # our own child: SIGKILL it as an unlucky operator would
                assert process is not None
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                daemon.stop()  # the process is gone: this only releases its pid file and lock

            def restart() -> None:
                daemon.start()

            return races.kill_race(
                server.target, lambda: Store(daemon.address), kill, restart, namespace, rounds=trials
            )
        with ImageRemovalClient(server.target) as client:
            if scenario == "ctr-run":
                return races.ctr_run_race(client, store, Ctr(daemon.address), namespace, busybox_layer(), trials=trials)
            if scenario == "retag":
                return races.retag_race(client, store, namespace, trials=trials)
            if scenario == "pull-end":
                return races.pull_end_race(client, store, namespace, trials=trials)
        if scenario == "concurrent-id":
            return races.concurrent_id_race(server.target, store, namespace, trials=trials)
        return races.concurrent_names_race(server.target, store, namespace, trials=trials)
    finally:
        store.close()
        server.stop()
        Ctr(daemon.address).cleanup(namespace)
        daemon.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.races", description=__doc__)
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--trials", type=int, default=0, help="default: the issue's trial count")
    parser.add_argument("--no-index", action="store_true", help="read containerd directly (no image index)")
    args = parser.parse_args(argv)
    trials = args.trials or DEFAULT_TRIALS[args.scenario]
    with tempfile.TemporaryDirectory(prefix="races-") as work:
        counts = run(args.scenario, trials, Path(work), index=not args.no_index)
    summary = {"scenario": args.scenario, "trials": trials, "index": not args.no_index}
    print(json.dumps({**summary, **dict(sorted(counts.items()))}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
