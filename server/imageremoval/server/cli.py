"""`imageremoval-server`: start a private containerd unless told to use one, serve, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from imageremoval.server.config import ConfigError, ServerConfig, is_loopback, is_unix, load_config, parse_listen

if TYPE_CHECKING:
    from imageremoval.server.telemetry.providers import Telemetry

_log = logging.getLogger("imageremoval.server")

# What `pip install 'imageremoval[server]'` adds to the client-only install (one module per distribution).
SERVER_EXTRA_MODULES = (
    "grpc_health",
    "grpc_reflection",
    "opentelemetry.sdk",
    "opentelemetry.exporter.prometheus",
    "opentelemetry.exporter.otlp.proto.grpc",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.instrumentation",
    "prometheus_client",
    "pythonjsonlogger",
    "docker_image",
)


def missing_server_extra() -> str | None:
    """The first module of the server extra that is not installed, so the script can say how to get it."""
    for name in SERVER_EXTRA_MODULES:
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # its parent package is absent
            found = None
        if found is None:
            return name
    return None


async def serve(config: ServerConfig, containerd_address: str, telemetry: Telemetry) -> None:
    """Serve until SIGTERM or SIGINT, then drain within the grace period."""
    from imageremoval.server.app import create_server

    app = create_server(
        config,
        containerd_address,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    await app.start()
    exposed = [a for a in config.listeners if not is_unix(a) and not is_loopback(parse_listen(a)[0])]
    if exposed and config.tls is None:
        _log.warning(
            "serving plaintext on %s as asked (--insecure): anyone who can reach it can remove images", exposed
        )
    shown = [a if is_unix(a) or app.port == 0 else f"{a.rsplit(':', 1)[0]}:{app.port}" for a in config.listeners]
    _log.info(
        "serving imageremoval.v1.ImageRemovalService on %s (%s; containerd %s; default namespace %s)",
        ", ".join(shown),
        "TLS" + (" with client certificates" if config.tls.client_ca else "") if config.tls else "plaintext",
        containerd_address,
        config.namespace,
    )
    if app.health_server is not None:
        _log.info("serving grpc.health.v1 only, plaintext, on port %d (--health-listen)", app.health_port)
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
    missing = missing_server_extra()
    if missing is not None:
        print(
            f"imageremoval-server: the server's libraries are not installed (no module {missing!r}); "
            "install them with: pip install 'imageremoval[server]'",
            file=sys.stderr,
        )
        return 2
    return _run(config)


def _run(config: ServerConfig) -> int:
    """Start telemetry, a private containerd if none was named, and serve (the server extra is installed)."""
    from imageremoval.server.containerd.daemon import DaemonError, PrivateContainerd
    from imageremoval.server.telemetry.logs import configure_logging
    from imageremoval.server.telemetry.providers import TelemetryConfigError, telemetry_from_env
    from imageremoval.server.transport.listeners import check_listeners

    configure_logging(config.log_level, config.log_format)
    try:
        metrics_listen = parse_listen(config.metrics_listen) if config.metrics_listen else None
        telemetry = telemetry_from_env(metrics_listen=metrics_listen)
    except (TelemetryConfigError, OSError) as exc:
        print(f"imageremoval-server: {exc}", file=sys.stderr)
        return 2
    daemon: PrivateContainerd | None = None
    address = config.containerd_address
    try:
        check_listeners(config.listeners)  # a taken address must not cost a private containerd start
        if address is None:
            daemon = PrivateContainerd(config.run_dir / "containerd")
            address = daemon.start()
            if config.containerd_root is None:
                config = dataclasses.replace(config, containerd_root=daemon.base_dir / "root")
            _log.info("started a private containerd at %s (root %s)", address, daemon.base_dir)
        asyncio.run(serve(config, address, telemetry))
    except DaemonError as exc:
        print(f"imageremoval-server: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"imageremoval-server: {exc}", file=sys.stderr)
        return 1
    finally:
        telemetry.shutdown()
        if daemon is not None:
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
