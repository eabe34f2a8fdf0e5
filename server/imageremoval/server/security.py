"""Who may call: TLS credentials that follow certificate rotation, and namespace authorization."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from .config import TlsConfig

_log = logging.getLogger(__name__)


@dataclass
class RotatingCertificates:
    """Re-reads the certificate, key and client CA when any of the files changes (checked per handshake)."""

    tls: TlsConfig
    _stamp: tuple[float, ...] = field(default=(), init=False)

    def _mtimes(self) -> tuple[float, ...]:
        paths = [self.tls.cert, self.tls.key, *([self.tls.client_ca] if self.tls.client_ca else [])]
        return tuple(Path(p).stat().st_mtime_ns for p in paths)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        pair = [(self.tls.key.read_bytes(), self.tls.cert.read_bytes())]
        client_ca = self.tls.client_ca.read_bytes() if self.tls.client_ca else None
        return grpc.ssl_server_certificate_configuration(pair, root_certificates=client_ca)

    def initial(self) -> grpc.ServerCertificateConfiguration:
        self._stamp = self._mtimes()
        return self._load()

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each handshake: a new configuration when the files changed, else None."""
        try:
            stamp = self._mtimes()
            if stamp == self._stamp:
                return None
            config = self._load()
        except OSError as exc:
            _log.warning("keeping the current certificate: %s", exc)
            return None
        self._stamp = stamp
        _log.info("TLS certificate files changed: new handshakes use the new certificate")
        return config


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """TLS, or mutual TLS when a client CA is configured; certificates rotate without a restart."""
    certificates = RotatingCertificates(tls)
    return grpc.dynamic_ssl_server_credentials(
        certificates.initial(),
        certificates.fetch,  # type: ignore[arg-type]  # gRPC accepts None: "no change"
        require_client_authentication=tls.client_ca is not None,
    )


def peer_identities(auth_context: Mapping[str, Iterable[bytes]]) -> list[str]:
    """The client certificate's identities: SAN URIs (SPIFFE IDs), then DNS SANs, then the CN."""
    found: list[str] = []
    for key in ("peer_spiffe_id", "x509_uri", "x509_subject_alternative_name", "x509_common_name"):
        for value in auth_context.get(key, ()):
            text = value.decode(errors="replace")
            if text not in found:
                found.append(text)
    return found
