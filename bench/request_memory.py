"""`python -m bench.request_memory`: the server's memory under oversized and gzip-bomb requests (issue 9, item 2)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from imageremoval.server.containerd.daemon import PrivateContainerd

from .env import ServerProcess

METHOD = "/imageremoval.v1.ImageRemovalService/RemoveImage"
BOMB_BYTES = 63 * 1024 * 1024  # inflates to 63 MiB (under gRPC's old 64 MiB limit); about 61 KB on the wire
PLAIN_BYTES = 60 * 1024 * 1024


def _payload(size: int) -> bytes:
    """A RemoveImageRequest whose `image` field is `size` bytes of one letter (compresses about 1000:1)."""
    body = b"a" * size
    length, varint = len(body), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        varint.append(byte | (0x80 if length else 0))
        if not length:
            break
    return b"\x0a" + bytes(varint) + body


def _send(target: str, payload: bytes, calls: int, compression: grpc.Compression) -> list[str]:
    """`calls` concurrent requests on one channel; the status code each got."""
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(target, options=options, compression=compression) as channel:
        call = channel.unary_unary(METHOD, None, None)

        def one(_: int) -> str:
            try:
                call(payload, timeout=120)
                return "OK"
            except grpc.RpcError as exc:
                return str(exc.code().name)

        with ThreadPoolExecutor(calls) as pool:
            return list(pool.map(one, range(calls)))


def measure(
    server: ServerProcess, name: str, payload: bytes, calls: int, compression: grpc.Compression
) -> dict[str, object]:
    """RSS before, peak (VmHWM) during, and 2 s after a burst of requests."""
    before = server.rss_mb()
    codes = _send(server.target, payload, calls, compression)
    time.sleep(2)
    return {
        "scenario": name,
        "calls": calls,
        "codes": sorted(set(codes)),
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(server.rss_mb("VmHWM"), 1),
        "rss_after_mb": round(server.rss_mb(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reqmem-") as folder:
        base = Path(folder)
        daemon = PrivateContainerd(base / "containerd")
        address = daemon.start()
        try:
            results = []
            # A fresh server per scenario, so the peak (VmHWM) belongs to that scenario alone.
            for name, size, compression in (
                ("gzip-bomb-63MiB", BOMB_BYTES, grpc.Compression.Gzip),
                ("plain-60MiB", PLAIN_BYTES, grpc.Compression.NoCompression),
            ):
                with ServerProcess(address, base / f"{name}.log") as server:
                    results.append(measure(server, name, _payload(size), args.calls, compression))
        finally:
            daemon.stop()
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
