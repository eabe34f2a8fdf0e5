"""`imageremoval-server`: start a private containerd unless told to use one, serve, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from .app import create_server
from .config import ConfigError, ServerConfig, load_config
from .daemon import DaemonError, PrivateContainerd

_log = logging.getLogger("imageremoval.server")


async def serve(config: ServerConfig, containerd_address: str) -> None:
    """Serve until SIGTERM or SIGINT, then drain within the grace period."""
    app = create_server(config, containerd_address)
    await app.start()
    _log.info(
        "serving imageremoval.v1.ImageRemovalService on %s (containerd %s, default namespace %s)",
        config.listen.rsplit(":", 1)[0] + f":{app.port}",
        containerd_address,
        config.namespace,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    _log.info("shutting down: draining in-flight removals for up to %gs", config.grace_seconds)
    await app.stop(config.grace_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"imageremoval-server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    daemon: PrivateContainerd | None = None
    address = config.containerd_address
    try:
        if address is None:
            daemon = PrivateContainerd(config.run_dir / "containerd")
            address = daemon.start()
            _log.info("started a private containerd at %s (root %s)", address, daemon.base_dir)
        asyncio.run(serve(config, address))
    except DaemonError as exc:
        print(f"imageremoval-server: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"imageremoval-server: {exc}", file=sys.stderr)
        return 1
    finally:
        if daemon is not None:
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
