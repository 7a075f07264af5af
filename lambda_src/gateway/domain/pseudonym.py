"""Principal pseudonyms (GDPR; docs/audit.md).

The audit trail names a principal only by HMAC-SHA256(secret, principal id), where the secret is
per principal and kept in the tenants table. Export recomputes the pseudonym from the secret;
erasure deletes the secret, after which no record in the immutable trail can be linked back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh per-principal secret, hex encoded (what the tenants table stores)."""
    return secrets.token_hex(SECRET_BYTES)


def pseudonym(secret_hex: str, principal_id: str) -> str:
    return hmac.new(bytes.fromhex(secret_hex), principal_id.encode(), hashlib.sha256).hexdigest()


def pseudonymize(secret_hex: str, kind: str, value: str) -> str:
    """A value that identifies a person (source IP, user agent) as it may stand in the immutable trail:
    keyed by the principal's secret, so erasing the secret unlinks it too."""
    return hmac.new(bytes.fromhex(secret_hex), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]
