"""Server configuration from flags and environment, validated once at start so bad settings fail fast."""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imageremoval.server.domain.namespaces import is_valid_namespace

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_NAMESPACE = "default"
DEFAULT_RUN_DIR = ".run"
DEFAULT_GRACE_SECONDS = 10.0
DEFAULT_DRAIN_SECONDS = 0.0
DEFAULT_PROTECTED = ("registry.k8s.io/pause:*", "k8s.gcr.io/pause:*")

# containerd's own identifier rule for namespaces (pkg/identifiers): alphanumerics joined by . _ -
ENV_PREFIX = "IMAGEREMOVAL_"


class ConfigError(ValueError):
    """A setting is invalid; the message names the flag and the environment variable."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Server certificate and key; with a client CA, clients must present a certificate it signed."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """Transport limits; the defaults suit a node-local service behind a mesh."""

    keepalive_time_s: float = 60.0
    keepalive_timeout_s: float = 20.0
    max_connection_age_s: float = 300.0
    max_connection_age_grace_s: float = 30.0
    max_message_bytes: int = 1024 * 1024
    max_metadata_bytes: int = 16 * 1024
    max_concurrent_removals: int = 32
    min_deadline_s: float = 0.05


@dataclass(frozen=True, slots=True)
class UsageSettings:
    """Usage tracking: how often last-used is written and the sweep runs, and the minimum age for age rules."""

    write_interval_s: float = 300.0  # an image used all the time is written at most this often
    sweep_interval_s: float = 60.0  # the sweep catches what events missed (server down, events dropped)
    min_age_s: float = 120.0  # first seen or created less than this ago: never pruned or reclaimed by age
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class LoopSettings:
    """`--reclaim-high-percent`, `--reclaim-low-percent`, `--reclaim-interval`; high 0 means off."""

    high_percent: float = 0.0
    low_percent: float = 0.0
    interval_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return self.high_percent > 0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server needs to start; built by `load_config` or directly by tests."""

    listen: str = DEFAULT_LISTEN
    extra_listen: tuple[str, ...] = ()
    containerd_address: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    run_dir: Path = Path(DEFAULT_RUN_DIR)
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    log_level: str = "INFO"
    log_format: str = "auto"
    metrics_listen: str | None = None
    health_listen: str | None = None
    insecure: bool = False
    tls: TlsConfig | None = None
    allowed_namespaces: frozenset[str] | None = None
    identity_namespaces: Mapping[str, frozenset[str]] = field(default_factory=dict)
    protected_images: tuple[str, ...] = DEFAULT_PROTECTED
    allow_force_protected: bool = False
    limits: Limits = field(default_factory=Limits)
    plan_key_file: Path | None = None  # HMAC key for prune plans, shared by replicas; None: a random one
    containerd_root: Path | None = None  # containerd's root (statvfs for ReclaimSpace); None: not measured
    usage: UsageSettings = field(default_factory=UsageSettings)
    reclaim: LoopSettings = field(default_factory=LoopSettings)

    @property
    def listeners(self) -> tuple[str, ...]:
        """Every address to serve on: TCP `host:port` and/or `unix:///path`."""
        return (self.listen, *self.extra_listen)


def is_unix(address: str) -> bool:
    """Whether a listen address is a unix socket (`unix:///path` or `unix:/path`)."""
    return address.startswith("unix:")


def unix_path(address: str) -> Path:
    """The socket path of a unix listen address."""
    return Path("/" + address.removeprefix("unix:").lstrip("/"))


def parse_listen(listen: str) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 in brackets); port 0 asks the OS for a free port."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"--listen / {ENV_PREFIX}LISTEN: expected HOST:PORT or unix:///path, got {listen!r}")
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"--listen / {ENV_PREFIX}LISTEN: port {port} is out of range")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether a listen host is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class _Option:
    flag: str
    help: str
    default: str = ""
    boolean: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.lstrip("-").replace("-", "_").upper()

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


_L = Limits()
OPTIONS: tuple[_Option, ...] = (
    _Option("--listen", "HOST:PORT or unix:///path to serve on; comma-separated for several", DEFAULT_LISTEN),
    _Option("--containerd-address", "unix socket of an existing containerd (default: start a private one)"),
    _Option("--namespace", "default containerd namespace for requests that name none", DEFAULT_NAMESPACE),
    _Option("--run-dir", "where the private containerd keeps root, state and socket", DEFAULT_RUN_DIR),
    _Option("--grace-period", "seconds in-flight removals get to finish on shutdown", str(DEFAULT_GRACE_SECONDS)),
    _Option("--drain-delay", "seconds health reports NOT_SERVING before the server stops accepting", "0"),
    _Option("--log-level", "DEBUG, INFO, WARNING or ERROR", "INFO"),
    _Option("--log-format", "json, text, or auto (JSON unless stderr is a terminal)", "auto"),
    _Option("--metrics-listen", "HOST:PORT for the Prometheus /metrics endpoint (default: off)"),
    _Option(
        "--health-listen",
        "HOST:PORT serving only grpc.health.v1 in plaintext, for probes when TLS is on (loopback unless --insecure)",
    ),
    _Option("--insecure", "allow plaintext on a non-loopback TCP address", boolean=True),
    _Option("--tls-cert", "server certificate (PEM); re-read when the file changes"),
    _Option("--tls-key", "server private key (PEM)"),
    _Option("--tls-client-ca", "CA bundle (PEM) for client certificates: enables mutual TLS"),
    _Option("--allowed-namespaces", "comma-separated containerd namespaces requests may name (default: any)"),
    _Option(
        "--identity-namespaces",
        "with mutual TLS: ';'-separated IDENTITY=NS1|NS2 pairs (identity: uri:, dns: or cn: NAME; "
        "a bare spiffe://... is a URI SAN, another bare name a DNS SAN or CN)",
    ),
    _Option("--protected-images", "comma-separated name patterns never removed", ",".join(DEFAULT_PROTECTED)),
    _Option("--allow-force-protected", "let force remove protected and pinned images", boolean=True),
    _Option(
        "--plan-key-file",
        "file holding the key that signs prune plans; give every replica the same one (default: a random key)",
    ),
    _Option(
        "--containerd-root",
        "containerd's root directory, whose filesystem ReclaimSpace and the reclaim loop measure with statvfs "
        "(default: the private containerd's root; /var/lib/containerd with --containerd-address)",
    ),
    _Option("--usage-write-interval", "seconds between last-used label writes of an image in use", "300"),
    _Option("--usage-sweep-interval", "seconds between usage sweeps of every namespace (0: events only)", "60"),
    _Option("--usage-min-age", "seconds an image first seen or created is too young to prune by age", "120"),
    _Option("--usage-tracking", "record first-seen and last-used labels on image records (true or false)", "true"),
    _Option("--reclaim-high-percent", "usage of containerd's root filesystem that starts a reclaim (0: off)", "0"),
    _Option("--reclaim-low-percent", "usage a reclaim frees down to", "0"),
    _Option("--reclaim-interval", "seconds between checks of the reclaim loop", "60"),
    _Option("--keepalive-time", "seconds between keepalive pings", str(_L.keepalive_time_s)),
    _Option("--keepalive-timeout", "seconds to wait for a keepalive ack", str(_L.keepalive_timeout_s)),
    _Option("--max-connection-age", "seconds before a connection is closed so clients rebalance", "300"),
    _Option("--max-connection-age-grace", "seconds calls get to finish on an aged connection", "30"),
    _Option("--max-message-bytes", "largest request or response message", str(_L.max_message_bytes)),
    _Option("--max-metadata-bytes", "largest request metadata (headers)", str(_L.max_metadata_bytes)),
    _Option("--max-concurrent-removals", "removals in flight before RESOURCE_EXHAUSTED", "32"),
    _Option("--min-deadline", "seconds a request must have left to be started", str(_L.min_deadline_s)),
)


def build_parser() -> argparse.ArgumentParser:
    """The command line of `imageremoval-server`; every flag also has an IMAGEREMOVAL_* variable."""
    parser = argparse.ArgumentParser(
        prog="imageremoval-server",
        description="Serve imageremoval.v1.ImageRemovalService over gRPC, removing images from containerd.",
    )
    for option in OPTIONS:
        shown = f", default {option.default}" if option.default else ""
        text = f"{option.help} (env {option.env}{shown})"
        if option.boolean:
            parser.add_argument(option.flag, action="store_true", default=None, help=text)
        else:
            parser.add_argument(option.flag, help=text)
    return parser


def _number(name: str, text: str, low: float, high: float, kind: Callable[[str], Any] = float) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{name}: not a number: {text!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low:g} and {high:g}, got {text}")
    return value


def _identity_map(name: str, text: str) -> dict[str, frozenset[str]]:
    mapping: dict[str, frozenset[str]] = {}
    for pair in filter(None, (p.strip() for p in text.split(";"))):
        identity, sep, namespaces = pair.rpartition("=")
        spaces = frozenset(filter(None, (n.strip() for n in namespaces.split("|"))))
        if not sep or not identity or not spaces or not all(is_valid_namespace(n) for n in spaces):
            raise ConfigError(f"{name}: expected IDENTITY=NS1|NS2, got {pair!r}")
        mapping[identity] = spaces
    return mapping


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Flags win over environment variables, which win over defaults; anything invalid raises ConfigError."""
    env = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(argv))
    raw: dict[str, str] = {}
    named: dict[str, str] = {}
    for option in OPTIONS:
        named[option.dest] = f"{option.flag} / {option.env}"
        value = args[option.dest]
        if option.boolean:
            raw[option.dest] = "true" if value else env.get(option.env, "false")
        elif value is not None:
            raw[option.dest] = value
        else:
            raw[option.dest] = env.get(option.env) or option.default

    def flag(dest: str) -> bool:
        text = raw[dest].strip().lower()
        if text not in {"true", "false", "1", "0", "yes", "no", ""}:
            raise ConfigError(f"{named[dest]}: expected true or false, got {raw[dest]!r}")
        return text in {"true", "1", "yes"}

    listeners = [part.strip() for part in raw["listen"].split(",") if part.strip()]
    if not listeners:
        raise ConfigError(f"{named['listen']}: at least one address is needed")
    insecure = flag("insecure")
    tls = None
    if raw["tls_cert"] or raw["tls_key"]:
        if not (raw["tls_cert"] and raw["tls_key"]):
            raise ConfigError("--tls-cert and --tls-key go together")
        for dest in ("tls_cert", "tls_key", "tls_client_ca"):
            if raw[dest] and not Path(raw[dest]).is_file():
                raise ConfigError(f"{named[dest]}: no such file: {raw[dest]}")
        client_ca = Path(raw["tls_client_ca"]) if raw["tls_client_ca"] else None
        tls = TlsConfig(Path(raw["tls_cert"]), Path(raw["tls_key"]), client_ca)
    elif raw["tls_client_ca"]:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
    for address in listeners:
        if is_unix(address):
            if unix_path(address) == Path("/"):
                raise ConfigError(f"{named['listen']}: unix address without a path: {address!r}")
            continue
        host, _ = parse_listen(address)
        if tls is None and not insecure and not is_loopback(host):
            raise ConfigError(
                f"{named['listen']}: plaintext on non-loopback address {address} must be asked for with "
                f"--insecure ({ENV_PREFIX}INSECURE=true), or configure --tls-cert and --tls-key"
            )
    health_listen = raw["health_listen"].strip() or None
    if health_listen is not None:
        if is_unix(health_listen):
            raise ConfigError(f"{named['health_listen']}: expected HOST:PORT, got {health_listen!r}")
        health_host, _ = parse_listen(health_listen)
        if not insecure and not is_loopback(health_host):
            raise ConfigError(
                f"{named['health_listen']}: the plaintext health listener on non-loopback address {health_listen} "
                f"must be asked for with --insecure ({ENV_PREFIX}INSECURE=true)"
            )
    namespace = raw["namespace"]
    if not is_valid_namespace(namespace):
        raise ConfigError(f"{named['namespace']}: {namespace!r} is not a valid containerd namespace")
    containerd: str | None = raw["containerd_address"].removeprefix("unix://") or None
    if containerd is not None and not containerd.startswith("/"):
        raise ConfigError(f"{named['containerd_address']}: expected an absolute socket path, got {containerd!r}")
    log_level = raw["log_level"].upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"{named['log_level']}: unknown level {log_level!r}")
    log_format = raw["log_format"].lower()
    if log_format not in {"json", "text", "auto"}:
        raise ConfigError(f"{named['log_format']}: expected json, text or auto")
    metrics_listen = raw["metrics_listen"] or None
    if metrics_listen is not None:
        parse_listen(metrics_listen)
    allowed = frozenset(filter(None, (n.strip() for n in raw["allowed_namespaces"].split(","))))
    if not all(is_valid_namespace(n) for n in allowed):
        raise ConfigError(f"{named['allowed_namespaces']}: invalid namespace in {raw['allowed_namespaces']!r}")
    identities = _identity_map(named["identity_namespaces"], raw["identity_namespaces"])
    plan_key_file = Path(raw["plan_key_file"]) if raw["plan_key_file"] else None
    if plan_key_file is not None and (not plan_key_file.is_file() or len(plan_key_file.read_bytes().strip()) < 16):
        raise ConfigError(f"{named['plan_key_file']}: needs a readable file with at least 16 bytes of key")
    if identities and (tls is None or tls.client_ca is None):
        raise ConfigError(f"{named['identity_namespaces']}: needs mutual TLS (--tls-client-ca)")
    limits = Limits(
        keepalive_time_s=_number(named["keepalive_time"], raw["keepalive_time"], 1, 86400),
        keepalive_timeout_s=_number(named["keepalive_timeout"], raw["keepalive_timeout"], 1, 3600),
        max_connection_age_s=_number(named["max_connection_age"], raw["max_connection_age"], 1, 10**7),
        max_connection_age_grace_s=_number(
            named["max_connection_age_grace"], raw["max_connection_age_grace"], 0, 10**6
        ),
        max_message_bytes=_number(named["max_message_bytes"], raw["max_message_bytes"], 1024, 2**31 - 1, int),
        max_metadata_bytes=_number(named["max_metadata_bytes"], raw["max_metadata_bytes"], 1024, 2**24, int),
        max_concurrent_removals=_number(
            named["max_concurrent_removals"], raw["max_concurrent_removals"], 1, 100_000, int
        ),
        min_deadline_s=_number(named["min_deadline"], raw["min_deadline"], 0, 60),
    )
    high = _number(named["reclaim_high_percent"], raw["reclaim_high_percent"], 0, 99.9)
    low = _number(named["reclaim_low_percent"], raw["reclaim_low_percent"], 0, 99.9)
    if high and not 0 < low < high:
        raise ConfigError("--reclaim-low-percent must be above 0 and below --reclaim-high-percent")
    root = raw["containerd_root"] or ("/var/lib/containerd" if containerd is not None else "")
    return ServerConfig(
        containerd_root=Path(root) if root else None,
        usage=UsageSettings(
            write_interval_s=_number(named["usage_write_interval"], raw["usage_write_interval"], 0, 86400),
            sweep_interval_s=_number(named["usage_sweep_interval"], raw["usage_sweep_interval"], 0, 86400),
            min_age_s=_number(named["usage_min_age"], raw["usage_min_age"], 0, 10**7),
            enabled=flag("usage_tracking"),
        ),
        reclaim=LoopSettings(
            high_percent=high,
            low_percent=low,
            interval_s=_number(named["reclaim_interval"], raw["reclaim_interval"], 0.1, 86400),
        ),
        listen=listeners[0],
        extra_listen=tuple(listeners[1:]),
        containerd_address=containerd,
        namespace=namespace,
        run_dir=Path(raw["run_dir"]),
        grace_seconds=_number(named["grace_period"], raw["grace_period"], 0, 3600),
        drain_seconds=_number(named["drain_delay"], raw["drain_delay"], 0, 3600),
        log_level=log_level,
        log_format=log_format,
        metrics_listen=metrics_listen,
        health_listen=health_listen,
        insecure=insecure,
        tls=tls,
        allowed_namespaces=allowed or None,
        identity_namespaces=identities,
        protected_images=tuple(filter(None, (p.strip() for p in raw["protected_images"].split(",")))),
        allow_force_protected=flag("allow_force_protected"),
        limits=limits,
        plan_key_file=plan_key_file,
    )
