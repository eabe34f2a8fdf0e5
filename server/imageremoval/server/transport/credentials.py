"""Who is calling: TLS credentials that follow certificate rotation, the client certificate's identities and
the per-client key (which namespaces an identity may touch is domain/policy's)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from imageremoval.server.config import TlsConfig

_log = logging.getLogger(__name__)


@dataclass
class RotatingCertificates:
    """Re-reads the certificate, key and client CA when any of the files changes (checked per handshake).

    A deleted client-CA file revokes trust instead of leaving the old CA in force: until the file is back,
    the only trust anchor is our own leaf certificate (the first PEM block of the cert file, never the rest of
    a full chain, which may hold the CA that signs clients), and no client certificate chains to a leaf.
    """

    tls: TlsConfig
    _stamp: tuple[int | None, ...] = field(default=(), init=False)
    _pair: list[tuple[bytes, bytes]] = field(default_factory=list, init=False)

    def _paths(self) -> list[Path]:
        return [self.tls.cert, self.tls.key, *([self.tls.client_ca] if self.tls.client_ca else [])]

    def _mtimes(self) -> tuple[int | None, ...]:
        stamps: list[int | None] = []
        for path in self._paths():
            try:
                stamps.append(Path(path).stat().st_mtime_ns)
            except FileNotFoundError:
                stamps.append(None)
        return tuple(stamps)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        pair = [(self.tls.key.read_bytes(), self.tls.cert.read_bytes())]
        client_ca = self.tls.client_ca.read_bytes() if self.tls.client_ca else None
        config = grpc.ssl_server_certificate_configuration(pair, root_certificates=client_ca)
        self._pair = pair
        return config

    def initial(self) -> grpc.ServerCertificateConfiguration:
        self._stamp = self._mtimes()
        return self._load()

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each handshake: a new configuration when the files changed, else None."""
        stamp = self._mtimes()
        if stamp == self._stamp:
            return None
        missing = [str(path) for path, mtime in zip(self._paths(), stamp, strict=True) if mtime is None]
        config: grpc.ServerCertificateConfiguration | None = None
        if self.tls.client_ca is not None and stamp[-1] is None:
            _log.error(
                "client CA file %s is gone: refusing every client certificate until it is back", self.tls.client_ca
            )
            config = grpc.ssl_server_certificate_configuration(self._pair, root_certificates=_leaf(self._pair[0][1]))
        elif missing:
            _log.warning("keeping the current certificate: %s missing", ", ".join(missing))
        else:
            try:
                config = self._load()
            except OSError as exc:
                _log.warning("keeping the current certificate: %s", exc)
                return None
            _log.info("TLS certificate files changed: new handshakes use the new certificate")
        self._stamp = stamp
        return config


_PEM_END = b"-----END CERTIFICATE-----"


def _leaf(chain: bytes) -> bytes:
    """The first certificate of a PEM file (the server's own leaf), without the chain that may follow it."""
    end = chain.find(_PEM_END)
    return chain if end < 0 else chain[: end + len(_PEM_END)] + b"\n"


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """TLS, or mutual TLS when a client CA is configured; certificates rotate without a restart."""
    certificates = RotatingCertificates(tls)
    return grpc.dynamic_ssl_server_credentials(
        certificates.initial(),
        certificates.fetch,  # type: ignore[arg-type]  # gRPC accepts None: "no change"
        require_client_authentication=tls.client_ca is not None,
    )


# gRPC's auth-context keys for each kind of certificate name; the kinds are never mixed.
_IDENTITY_KEYS = (("uri", "peer_uri"), ("dns", "peer_dns"), ("cn", "x509_common_name"))


def peer_identities(auth_context: Mapping[str, Iterable[bytes]]) -> list[str]:
    """The client certificate's identities, each with its kind: `uri:` SANs (SPIFFE IDs), `dns:` SANs, `cn:`."""
    found: list[str] = []
    for kind, key in _IDENTITY_KEYS:
        for value in auth_context.get(key, ()):
            text = f"{kind}:{value.decode(errors='replace')}"
            if text not in found:
                found.append(text)
    return found


def client_key(peer: str, identities: Iterable[str]) -> str:
    """Who is calling, for the per-client share of removal slots: the certificate, else the peer's address.

    The port is dropped, so a client cannot get more slots by opening more connections; every caller on
    a unix socket is one client.
    """
    for identity in identities:
        return identity
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer.split(":", 1)[0]
