"""Plans are signed with an HMAC so that any replica holding the same key can trust and execute them."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from pathlib import Path

_log = logging.getLogger(__name__)
MIN_KEY_BYTES = 16


class PlanSeal:
    """HMAC-SHA256 under the server's plan key; the key ID says which key signed a plan."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the plan key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self.key_id = hashlib.sha256(key).hexdigest()[:16]

    @classmethod
    def from_file(cls, path: Path | None) -> PlanSeal:
        """The key in a file (surrounding whitespace ignored, so `openssl rand -hex 32` works), shared by every
        replica; without one, a random key: plans then execute only on the process that made them."""
        if path is None:
            _log.warning("no --plan-key-file: prune plans can only be executed by this server process")
            return cls(secrets.token_bytes(32))
        return cls(path.read_bytes().strip())

    def sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def verify(self, payload: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(payload), signature)
