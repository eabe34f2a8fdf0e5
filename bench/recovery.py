"""`python -m bench.recovery`: seconds the server stays NOT_SERVING after containerd is back (issue 9, item 10)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imageremoval.server.containerd.daemon import PrivateContainerd

from .env import SERVER_BIN, ServerProcess

SERVING = health_pb2.HealthCheckResponse.SERVING


def _serving(health: health_pb2_grpc.HealthStub) -> bool:
    try:
        return bool(health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == SERVING)
    except grpc.RpcError:
        return False


def _until(health: health_pb2_grpc.HealthStub, want: bool, timeout: float = 300) -> float:
    """Seconds until health is (or is not) SERVING, polled every 10 ms."""
    start = time.monotonic()
    while _serving(health) != want:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"health did not become {'SERVING' if want else 'NOT_SERVING'} in {timeout}s")
        time.sleep(0.01)
    return time.monotonic() - start


def outage(server: ServerProcess, daemon: PrivateContainerd, seconds: float) -> float:
    """Stop containerd for `seconds`, start it, and return how long health stayed NOT_SERVING after that."""
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        _until(health, True)
        daemon.stop()
        _until(health, False)
        time.sleep(seconds)
        daemon.start()  # returns once containerd accepts connections on its socket
        return _until(health, True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outages", default="3,20,60", help="comma-separated outage lengths in seconds")
    parser.add_argument("--server-bin", default=str(SERVER_BIN), help="the imageremoval-server to measure")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="recovery-") as folder:
        base = Path(folder)
        daemon = PrivateContainerd(base / "containerd")
        daemon.start()
        server = ServerProcess(daemon.address, base / "server.log", binary=Path(args.server_bin))
        try:
            server.start()
            for seconds in (float(s) for s in args.outages.split(",")):
                recovered = outage(server, daemon, seconds)
                results.append({"outage_s": seconds, "not_serving_after_back_s": round(recovered, 2)})
        finally:
            server.stop()
            daemon.stop()
    json.dump({"server": args.server_bin, "results": results}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
