"""The Prometheus endpoint: /metrics only (404 elsewhere), with process and runtime metrics on our own registry."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

METRICS_PATH = "/metrics"


class _Quiet(WSGIRequestHandler):
    """No access log line per scrape on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        return None


def metrics_app(registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving the registry at /metrics and 404 on every other path."""
    serve = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: metrics are at /metrics\n"]
        result: Iterable[bytes] = serve(environ, start_response)
        return result

    return app


def _server_class(host: str, port: int) -> type[ThreadingWSGIServer]:
    """The WSGI server for the host's address family: wsgiref's is IPv4 only, and `::1` or `::` need IPv6."""
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    return Server


def serve_metrics(host: str, port: int) -> tuple[PrometheusMetricReader, Callable[[], None], int]:
    """Start the endpoint in a daemon thread: the reader to give the meter provider, a stop function, the port.

    The host may be an IPv6 address, bracketed (`[::1]`, as --metrics-listen spells it) or not."""
    host = host.strip("[]")
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)  # process_*: CPU, RSS, virtual memory, fds, start time
    PlatformCollector(registry=registry)  # python_info
    GCCollector(registry=registry)  # python_gc_*
    reader = PrometheusMetricReader(registry=registry)  # target_info carries the resource (service.version)
    server = make_server(host, port, metrics_app(registry), _server_class(host, port), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="prometheus-metrics", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return reader, stop, int(server.server_port)
