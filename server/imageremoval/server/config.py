"""Server configuration from flags and environment, validated once at start so bad settings fail fast."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_NAMESPACE = "default"
DEFAULT_RUN_DIR = ".run"
DEFAULT_GRACE_SECONDS = 10.0

# containerd's own identifier rule for namespaces (pkg/identifiers): alphanumerics joined by . _ -
_NAMESPACE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
NAMESPACE_MAX_LENGTH = 76

ENV_LISTEN = "IMAGEREMOVAL_LISTEN"
ENV_CONTAINERD_ADDRESS = "IMAGEREMOVAL_CONTAINERD_ADDRESS"
ENV_NAMESPACE = "IMAGEREMOVAL_NAMESPACE"
ENV_RUN_DIR = "IMAGEREMOVAL_RUN_DIR"
ENV_GRACE = "IMAGEREMOVAL_GRACE_PERIOD"
ENV_LOG_LEVEL = "IMAGEREMOVAL_LOG_LEVEL"


class ConfigError(ValueError):
    """A setting is invalid; the message names the flag and the environment variable."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server needs to start; built by `load_config` or directly by tests."""

    listen: str = DEFAULT_LISTEN
    containerd_address: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    run_dir: Path = Path(DEFAULT_RUN_DIR)
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    log_level: str = "INFO"


def is_valid_namespace(namespace: str) -> bool:
    """Whether containerd would accept this namespace name."""
    return len(namespace) <= NAMESPACE_MAX_LENGTH and _NAMESPACE.fullmatch(namespace) is not None


def parse_listen(listen: str) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 in brackets); port 0 asks the OS for a free port."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"--listen / {ENV_LISTEN}: expected HOST:PORT, got {listen!r}")
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"--listen / {ENV_LISTEN}: port {port} is out of range")
    return host, port


def build_parser() -> argparse.ArgumentParser:
    """The command line of `imageremoval-server`; every flag also has an environment variable."""
    parser = argparse.ArgumentParser(
        prog="imageremoval-server",
        description="Serve imageremoval.v1.ImageRemovalService over gRPC, removing images from containerd.",
    )
    parser.add_argument(
        "--listen", help=f"HOST:PORT to serve on (env {ENV_LISTEN}, default {DEFAULT_LISTEN})"
    )
    parser.add_argument(
        "--containerd-address",
        help=f"unix socket of an existing containerd to use (env {ENV_CONTAINERD_ADDRESS}); "
        "without it a private containerd is started under --run-dir",
    )
    parser.add_argument(
        "--namespace", help=f"default containerd namespace (env {ENV_NAMESPACE}, default {DEFAULT_NAMESPACE})"
    )
    parser.add_argument(
        "--run-dir",
        help=f"where the private containerd keeps root, state and socket (env {ENV_RUN_DIR}, "
        f"default {DEFAULT_RUN_DIR})",
    )
    parser.add_argument(
        "--grace-period",
        help=f"seconds in-flight removals get to finish on SIGTERM (env {ENV_GRACE}, "
        f"default {DEFAULT_GRACE_SECONDS:g})",
    )
    parser.add_argument(
        "--log-level", help=f"DEBUG, INFO, WARNING or ERROR (env {ENV_LOG_LEVEL}, default INFO)"
    )
    return parser


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Flags win over environment variables, which win over defaults; anything invalid raises ConfigError."""
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)

    def pick(flag: str | None, name: str, default: str) -> str:
        if flag is not None:
            return flag
        return env.get(name) or default

    listen = pick(args.listen, ENV_LISTEN, DEFAULT_LISTEN)
    parse_listen(listen)
    namespace = pick(args.namespace, ENV_NAMESPACE, DEFAULT_NAMESPACE)
    if not is_valid_namespace(namespace):
        raise ConfigError(f"--namespace / {ENV_NAMESPACE}: {namespace!r} is not a valid containerd namespace")
    address = pick(args.containerd_address, ENV_CONTAINERD_ADDRESS, "") or None
    if address is not None:
        address = address.removeprefix("unix://")
        if not address.startswith("/"):
            raise ConfigError(
                f"--containerd-address / {ENV_CONTAINERD_ADDRESS}: expected an absolute socket path, "
                f"got {address!r}"
            )
    grace_text = pick(args.grace_period, ENV_GRACE, str(DEFAULT_GRACE_SECONDS))
    try:
        grace = float(grace_text)
    except ValueError:
        raise ConfigError(f"--grace-period / {ENV_GRACE}: not a number: {grace_text!r}") from None
    if not 0 <= grace <= 3600:
        raise ConfigError(f"--grace-period / {ENV_GRACE}: must be between 0 and 3600 seconds")
    log_level = pick(args.log_level, ENV_LOG_LEVEL, "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"--log-level / {ENV_LOG_LEVEL}: unknown level {log_level!r}")
    return ServerConfig(
        listen=listen,
        containerd_address=address,
        namespace=namespace,
        run_dir=Path(pick(args.run_dir, ENV_RUN_DIR, DEFAULT_RUN_DIR)),
        grace_seconds=grace,
        log_level=log_level,
    )
