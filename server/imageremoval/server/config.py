"""Server configuration: one declaration per option (flag, environment variable, default, help, parsing), read
once at start so bad settings fail fast."""

from __future__ import annotations

import argparse
import importlib.metadata
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from imageremoval.server.domain.namespaces import is_valid_namespace

ENV_PREFIX = "IMAGEREMOVAL_"
_T = TypeVar("_T")
_V = TypeVar("_V", covariant=True)


class ConfigError(ValueError):
    """A setting is invalid; the message names the flag and the environment variable."""


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
class Option(Generic[_V]):
    """One setting: its flag, its IMAGEREMOVAL_* variable (derived from the flag), its default as a user would
    write it, its help, and the function that parses and checks a value (the default goes through it too)."""

    flag: str
    help: str
    parse: Callable[[str, str], _V]  # (flag / variable, text) -> value; raises ConfigError
    default: str = ""
    boolean: bool = False  # a flag without a value (`--insecure`); its variable takes true or false

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.lstrip("-").replace("-", "_").upper()

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def name(self) -> str:
        """How messages name it: `--flag / IMAGEREMOVAL_FLAG`."""
        return f"{self.flag} / {self.env}"

    def value(self, text: str) -> _V:
        return self.parse(self.name, text)

    @property
    def default_value(self) -> _V:
        return self.value(self.default)


def _text(name: str, text: str) -> str:
    return text


def _boolean(name: str, text: str) -> bool:
    folded = text.strip().lower()
    if folded not in {"true", "false", "1", "0", "yes", "no", ""}:
        raise ConfigError(f"{name}: expected true or false, got {text!r}")
    return folded in {"true", "1", "yes"}


def _number(low: float, high: float) -> Callable[[str, str], float]:
    def parse(name: str, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name}: not a number: {text!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}: must be between {low:g} and {high:g}, got {text}")
        return value

    return parse


def _integer(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{name}: not a number: {text!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}: must be between {low:g} and {high:g}, got {text}")
        return value

    return parse


def _listeners(name: str, text: str) -> tuple[str, ...]:
    listeners = tuple(part.strip() for part in text.split(",") if part.strip())
    if not listeners:
        raise ConfigError(f"{name}: at least one address is needed")
    return listeners


def _containerd_address(name: str, text: str) -> str | None:
    address = text.removeprefix("unix://") or None
    if address is not None and not address.startswith("/"):
        raise ConfigError(f"{name}: expected an absolute socket path, got {address!r}")
    return address


def _namespace(name: str, text: str) -> str:
    if not is_valid_namespace(text):
        raise ConfigError(f"{name}: {text!r} is not a valid containerd namespace")
    return text


def _log_level(name: str, text: str) -> str:
    level = text.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"{name}: unknown level {level!r}")
    return level


def _log_format(name: str, text: str) -> str:
    log_format = text.lower()
    if log_format not in {"json", "text", "auto"}:
        raise ConfigError(f"{name}: expected json, text or auto")
    return log_format


def _metrics_listen(name: str, text: str) -> str | None:
    if text:
        parse_listen(text)
    return text or None


def _health_listen(name: str, text: str) -> str | None:
    address = text.strip() or None
    if address is not None:
        if is_unix(address):
            raise ConfigError(f"{name}: expected HOST:PORT, got {address!r}")
        parse_listen(address)
    return address


def _namespaces(name: str, text: str) -> frozenset[str]:
    allowed = frozenset(filter(None, (n.strip() for n in text.split(","))))
    if not all(is_valid_namespace(n) for n in allowed):
        raise ConfigError(f"{name}: invalid namespace in {text!r}")
    return allowed


def _identity_map(name: str, text: str) -> dict[str, frozenset[str]]:
    mapping: dict[str, frozenset[str]] = {}
    for pair in filter(None, (p.strip() for p in text.split(";"))):
        identity, sep, namespaces = pair.rpartition("=")
        spaces = frozenset(filter(None, (n.strip() for n in namespaces.split("|"))))
        if not sep or not identity or not spaces or not all(is_valid_namespace(n) for n in spaces):
            raise ConfigError(f"{name}: expected IDENTITY=NS1|NS2, got {pair!r}")
        mapping[identity] = spaces
    return mapping


def _patterns(name: str, text: str) -> tuple[str, ...]:
    return tuple(filter(None, (p.strip() for p in text.split(","))))


def _plan_key_file(name: str, text: str) -> Path | None:
    path = Path(text) if text else None
    if path is not None and (not path.is_file() or len(path.read_bytes().strip()) < 16):
        raise ConfigError(f"{name}: needs a readable file with at least 16 bytes of key")
    return path


LISTEN = Option(
    "--listen", "HOST:PORT or unix:///path to serve on; comma-separated for several", _listeners, "127.0.0.1:50051"
)
CONTAINERD_ADDRESS = Option(
    "--containerd-address", "unix socket of an existing containerd (default: start a private one)", _containerd_address
)
NAMESPACE = Option("--namespace", "default containerd namespace for requests that name none", _namespace, "default")
RUN_DIR = Option("--run-dir", "where the private containerd keeps root, state and socket", _text, ".run")
GRACE_PERIOD = Option(
    "--grace-period", "seconds in-flight removals get to finish on shutdown", _number(0, 3600), "10.0"
)
DRAIN_DELAY = Option(
    "--drain-delay", "seconds health reports NOT_SERVING before the server stops accepting", _number(0, 3600), "0"
)
LOG_LEVEL = Option("--log-level", "DEBUG, INFO, WARNING or ERROR", _log_level, "INFO")
LOG_FORMAT = Option("--log-format", "json, text, or auto (JSON unless stderr is a terminal)", _log_format, "auto")
METRICS_LISTEN = Option(
    "--metrics-listen", "HOST:PORT for the Prometheus /metrics endpoint (default: off)", _metrics_listen
)
HEALTH_LISTEN = Option(
    "--health-listen",
    "HOST:PORT serving only grpc.health.v1 in plaintext, for probes when TLS is on (loopback unless --insecure)",
    _health_listen,
)
INSECURE = Option("--insecure", "allow plaintext on a non-loopback TCP address", _boolean, boolean=True)
TLS_CERT = Option("--tls-cert", "server certificate (PEM); re-read when the file changes", _text)
TLS_KEY = Option("--tls-key", "server private key (PEM)", _text)
TLS_CLIENT_CA = Option("--tls-client-ca", "CA bundle (PEM) for client certificates: enables mutual TLS", _text)
ALLOWED_NAMESPACES = Option(
    "--allowed-namespaces", "comma-separated containerd namespaces requests may name (default: any)", _namespaces
)
IDENTITY_NAMESPACES = Option(
    "--identity-namespaces",
    "with mutual TLS: ';'-separated IDENTITY=NS1|NS2 pairs (identity: uri:, dns: or cn: NAME; "
    "a bare spiffe://... is a URI SAN, another bare name a DNS SAN or CN)",
    _identity_map,
)
PROTECTED_IMAGES = Option(
    "--protected-images",
    "comma-separated name patterns never removed",
    _patterns,
    "registry.k8s.io/pause:*,k8s.gcr.io/pause:*",
)
ALLOW_FORCE_PROTECTED = Option(
    "--allow-force-protected", "let force remove protected and pinned images", _boolean, boolean=True
)
PLAN_KEY_FILE = Option(
    "--plan-key-file",
    "file holding the key that signs prune plans; give every replica the same one (default: a random key)",
    _plan_key_file,
)
CONTAINERD_ROOT = Option(
    "--containerd-root",
    "containerd's root directory, whose filesystem ReclaimSpace and the reclaim loop measure with statvfs "
    "(default: the private containerd's root; /var/lib/containerd with --containerd-address)",
    _text,
)
USAGE_WRITE_INTERVAL = Option(
    "--usage-write-interval", "seconds between last-used label writes of an image in use", _number(0, 86400), "300"
)
USAGE_SWEEP_INTERVAL = Option(
    "--usage-sweep-interval",
    "seconds between usage sweeps of every namespace (0: events only)",
    _number(0, 86400),
    "60",
)
USAGE_MIN_AGE = Option(
    "--usage-min-age", "seconds an image first seen or created is too young to prune by age", _number(0, 10**7), "120"
)
USAGE_TRACKING = Option(
    "--usage-tracking", "record first-seen and last-used labels on image records (true or false)", _boolean, "true"
)
RECLAIM_HIGH_PERCENT = Option(
    "--reclaim-high-percent",
    "usage of containerd's root filesystem that starts a reclaim (0: off)",
    _number(0, 99.9),
    "0",
)
RECLAIM_LOW_PERCENT = Option("--reclaim-low-percent", "usage a reclaim frees down to", _number(0, 99.9), "0")
RECLAIM_INTERVAL = Option("--reclaim-interval", "seconds between checks of the reclaim loop", _number(0.1, 86400), "60")
KEEPALIVE_TIME = Option("--keepalive-time", "seconds between keepalive pings", _number(1, 86400), "60.0")
KEEPALIVE_TIMEOUT = Option("--keepalive-timeout", "seconds to wait for a keepalive ack", _number(1, 3600), "20.0")
MAX_CONNECTION_AGE = Option(
    "--max-connection-age", "seconds before a connection is closed so clients rebalance", _number(1, 10**7), "300"
)
MAX_CONNECTION_AGE_GRACE = Option(
    "--max-connection-age-grace", "seconds calls get to finish on an aged connection", _number(0, 10**6), "30"
)
MAX_MESSAGE_BYTES = Option(
    "--max-message-bytes", "largest request or response message", _integer(1024, 2**31 - 1), str(1024 * 1024)
)
MAX_METADATA_BYTES = Option(
    "--max-metadata-bytes", "largest request metadata (headers)", _integer(1024, 2**24), str(16 * 1024)
)
MAX_CONCURRENT_REMOVALS = Option(
    "--max-concurrent-removals", "removals in flight before RESOURCE_EXHAUSTED", _integer(1, 100_000), "32"
)
MIN_DEADLINE = Option("--min-deadline", "seconds a request must have left to be started", _number(0, 60), "0.05")

# Every option, in the order `--help` lists them.
OPTIONS: tuple[Option[object], ...] = (
    LISTEN,
    CONTAINERD_ADDRESS,
    NAMESPACE,
    RUN_DIR,
    GRACE_PERIOD,
    DRAIN_DELAY,
    LOG_LEVEL,
    LOG_FORMAT,
    METRICS_LISTEN,
    HEALTH_LISTEN,
    INSECURE,
    TLS_CERT,
    TLS_KEY,
    TLS_CLIENT_CA,
    ALLOWED_NAMESPACES,
    IDENTITY_NAMESPACES,
    PROTECTED_IMAGES,
    ALLOW_FORCE_PROTECTED,
    PLAN_KEY_FILE,
    CONTAINERD_ROOT,
    USAGE_WRITE_INTERVAL,
    USAGE_SWEEP_INTERVAL,
    USAGE_MIN_AGE,
    USAGE_TRACKING,
    RECLAIM_HIGH_PERCENT,
    RECLAIM_LOW_PERCENT,
    RECLAIM_INTERVAL,
    KEEPALIVE_TIME,
    KEEPALIVE_TIMEOUT,
    MAX_CONNECTION_AGE,
    MAX_CONNECTION_AGE_GRACE,
    MAX_MESSAGE_BYTES,
    MAX_METADATA_BYTES,
    MAX_CONCURRENT_REMOVALS,
    MIN_DEADLINE,
)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Server certificate and key; with a client CA, clients must present a certificate it signed."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """Transport limits; the defaults (the options' own) suit a node-local service behind a mesh."""

    keepalive_time_s: float = KEEPALIVE_TIME.default_value
    keepalive_timeout_s: float = KEEPALIVE_TIMEOUT.default_value
    max_connection_age_s: float = MAX_CONNECTION_AGE.default_value
    max_connection_age_grace_s: float = MAX_CONNECTION_AGE_GRACE.default_value
    max_message_bytes: int = MAX_MESSAGE_BYTES.default_value
    max_metadata_bytes: int = MAX_METADATA_BYTES.default_value
    max_concurrent_removals: int = MAX_CONCURRENT_REMOVALS.default_value
    min_deadline_s: float = MIN_DEADLINE.default_value


@dataclass(frozen=True, slots=True)
class UsageSettings:
    """Usage tracking: how often last-used is written and the sweep runs, and the minimum age for age rules."""

    write_interval_s: float = USAGE_WRITE_INTERVAL.default_value  # an image used all the time: written this often
    sweep_interval_s: float = USAGE_SWEEP_INTERVAL.default_value  # catches what events missed (server down, drops)
    min_age_s: float = USAGE_MIN_AGE.default_value  # first seen or created less ago: never pruned or reclaimed by age
    enabled: bool = USAGE_TRACKING.default_value


@dataclass(frozen=True, slots=True)
class LoopSettings:
    """`--reclaim-high-percent`, `--reclaim-low-percent`, `--reclaim-interval`; high 0 means off."""

    high_percent: float = RECLAIM_HIGH_PERCENT.default_value
    low_percent: float = RECLAIM_LOW_PERCENT.default_value
    interval_s: float = RECLAIM_INTERVAL.default_value

    @property
    def enabled(self) -> bool:
        return self.high_percent > 0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server needs to start; built by `load_config` or directly by tests (same defaults)."""

    listen: str = LISTEN.default_value[0]
    extra_listen: tuple[str, ...] = LISTEN.default_value[1:]
    containerd_address: str | None = None
    namespace: str = NAMESPACE.default_value
    run_dir: Path = Path(RUN_DIR.default_value)
    grace_seconds: float = GRACE_PERIOD.default_value
    drain_seconds: float = DRAIN_DELAY.default_value
    log_level: str = LOG_LEVEL.default_value
    log_format: str = LOG_FORMAT.default_value
    metrics_listen: str | None = None
    health_listen: str | None = None
    insecure: bool = False
    tls: TlsConfig | None = None
    allowed_namespaces: frozenset[str] | None = None
    identity_namespaces: Mapping[str, frozenset[str]] = field(default_factory=dict)
    protected_images: tuple[str, ...] = PROTECTED_IMAGES.default_value
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


def version() -> str:
    """The installed distribution's version."""
    try:
        return importlib.metadata.version("imageremoval")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    """The command line of `imageremoval-server`; every flag also has an IMAGEREMOVAL_* variable."""
    parser = argparse.ArgumentParser(
        prog="imageremoval-server",
        description="Serve imageremoval.v1.ImageRemovalService over gRPC, removing images from containerd.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    for option in OPTIONS:
        shown = f", default {option.default}" if option.default else ""
        text = f"{option.help} (env {option.env}{shown})"
        if option.boolean:
            parser.add_argument(option.flag, action="store_true", default=None, help=text)
        else:
            parser.add_argument(option.flag, help=text)
    return parser


class _Settings:
    """The text of each option from the flag, else its variable (when not empty), else its default."""

    def __init__(self, args: Mapping[str, object], env: Mapping[str, str]) -> None:
        self._args = args
        self._env = env

    def text(self, option: Option[_T]) -> str:
        given = self._args[option.dest]
        if option.boolean:
            return "true" if given else self._env.get(option.env, "false")
        if given is not None:
            return str(given)
        return self._env.get(option.env) or option.default

    def __getitem__(self, option: Option[_T]) -> _T:
        return option.value(self.text(option))


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Flags win over environment variables, which win over defaults; anything invalid raises ConfigError.

    Each option parses and checks itself; what follows are the rules between options."""
    settings = _Settings(vars(build_parser().parse_args(argv)), os.environ if environ is None else environ)
    listeners = settings[LISTEN]
    insecure = settings[INSECURE]
    tls = _tls(settings)
    for address in listeners:
        if is_unix(address):
            if unix_path(address) == Path("/"):
                raise ConfigError(f"{LISTEN.name}: unix address without a path: {address!r}")
            continue
        host, _ = parse_listen(address)
        if tls is None and not insecure and not is_loopback(host):
            raise ConfigError(
                f"{LISTEN.name}: plaintext on non-loopback address {address} must be asked for with "
                f"--insecure ({INSECURE.env}=true), or configure --tls-cert and --tls-key"
            )
    health_listen = settings[HEALTH_LISTEN]
    if health_listen is not None and not insecure and not is_loopback(parse_listen(health_listen)[0]):
        raise ConfigError(
            f"{HEALTH_LISTEN.name}: the plaintext health listener on non-loopback address {health_listen} "
            f"must be asked for with --insecure ({INSECURE.env}=true)"
        )
    namespace = settings[NAMESPACE]
    containerd = settings[CONTAINERD_ADDRESS]
    log_level, log_format = settings[LOG_LEVEL], settings[LOG_FORMAT]
    metrics_listen = settings[METRICS_LISTEN]
    allowed = settings[ALLOWED_NAMESPACES]
    identities = settings[IDENTITY_NAMESPACES]
    plan_key_file = settings[PLAN_KEY_FILE]
    if identities and (tls is None or tls.client_ca is None):
        raise ConfigError(f"{IDENTITY_NAMESPACES.name}: needs mutual TLS (--tls-client-ca)")
    limits = Limits(
        keepalive_time_s=settings[KEEPALIVE_TIME],
        keepalive_timeout_s=settings[KEEPALIVE_TIMEOUT],
        max_connection_age_s=settings[MAX_CONNECTION_AGE],
        max_connection_age_grace_s=settings[MAX_CONNECTION_AGE_GRACE],
        max_message_bytes=settings[MAX_MESSAGE_BYTES],
        max_metadata_bytes=settings[MAX_METADATA_BYTES],
        max_concurrent_removals=settings[MAX_CONCURRENT_REMOVALS],
        min_deadline_s=settings[MIN_DEADLINE],
    )
    high, low = settings[RECLAIM_HIGH_PERCENT], settings[RECLAIM_LOW_PERCENT]
    if high and not 0 < low < high:
        raise ConfigError("--reclaim-low-percent must be above 0 and below --reclaim-high-percent")
    root = settings[CONTAINERD_ROOT] or ("/var/lib/containerd" if containerd is not None else "")
    return ServerConfig(
        containerd_root=Path(root) if root else None,
        usage=UsageSettings(
            write_interval_s=settings[USAGE_WRITE_INTERVAL],
            sweep_interval_s=settings[USAGE_SWEEP_INTERVAL],
            min_age_s=settings[USAGE_MIN_AGE],
            enabled=settings[USAGE_TRACKING],
        ),
        reclaim=LoopSettings(high_percent=high, low_percent=low, interval_s=settings[RECLAIM_INTERVAL]),
        listen=listeners[0],
        extra_listen=listeners[1:],
        containerd_address=containerd,
        namespace=namespace,
        run_dir=Path(settings[RUN_DIR]),
        grace_seconds=settings[GRACE_PERIOD],
        drain_seconds=settings[DRAIN_DELAY],
        log_level=log_level,
        log_format=log_format,
        metrics_listen=metrics_listen,
        health_listen=health_listen,
        insecure=insecure,
        tls=tls,
        allowed_namespaces=allowed or None,
        identity_namespaces=identities,
        protected_images=settings[PROTECTED_IMAGES],
        allow_force_protected=settings[ALLOW_FORCE_PROTECTED],
        limits=limits,
        plan_key_file=plan_key_file,
    )


def _tls(settings: _Settings) -> TlsConfig | None:
    """The server certificate, key and client CA, which go together."""
    cert, key, client_ca = settings[TLS_CERT], settings[TLS_KEY], settings[TLS_CLIENT_CA]
    if not (cert or key):
        if client_ca:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (cert and key):
        raise ConfigError("--tls-cert and --tls-key go together")
    for option, path in ((TLS_CERT, cert), (TLS_KEY, key), (TLS_CLIENT_CA, client_ca)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{option.name}: no such file: {path}")
    return TlsConfig(Path(cert), Path(key), Path(client_ca) if client_ca else None)
