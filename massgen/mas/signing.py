"""HMAC signing of messages, so no one without the shared secret can speak as an agent.

The MAC (HMAC-SHA256) covers the whole body: sender, target, id, timestamp, kind,
correlation, reply-to and payload. Change any of it, the sender above all, and the MAC
fails. Freshness and replay checks use the time the message entered the inbox (set by Redis,
not by the sender), so a message that waits for an offline agent stays valid while a copy
replayed later is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from enum import StrEnum

SECRET_ENV = "MASSGEN_SECRET"
_DOMAIN = b"massgen.mas.v1\n"
_PROOF = b"registry proof\n"


class Verdict(StrEnum):
    """Why a received message was accepted or refused."""

    OK = "ok"
    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    BAD_MAC = "bad signature (forged or altered)"
    STALE = "stale timestamp"
    REPLAYED = "replayed message id"
    WRONG_TARGET = "addressed to another agent"


class Signer:
    """Signs and checks message bodies with one shared secret.

    ``window`` (seconds) is how far the sender's timestamp may be from the time the message
    entered the inbox; ids are remembered long enough to refuse replays inside it.
    """

    __slots__ = ("_key", "window")

    def __init__(self, secret: str | bytes, *, window: float = 60.0) -> None:
        if not secret:
            raise ValueError("an empty secret signs nothing; pass None to turn signing off")
        raw = secret.encode() if isinstance(secret, str) else secret
        self._key = hashlib.sha256(_DOMAIN + raw).digest()
        self.window = window

    @classmethod
    def resolve(cls, secret: str | bytes | None, *, window: float = 60.0) -> Signer | None:
        """The signer for ``secret``, else for ``$MASSGEN_SECRET``, else ``None``."""
        secret = secret or os.environ.get(SECRET_ENV) or None
        return cls(secret, window=window) if secret else None

    def __repr__(self) -> str:
        return f"Signer(window={self.window})"  # never the key

    def sign(self, body: bytes) -> str:
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def verify(self, body: bytes, mac: str | None) -> Verdict:
        """Check the MAC only; freshness and replays need the inbox time (see Agent)."""
        if not mac:
            return Verdict.UNSIGNED
        if not hmac.compare_digest(self.sign(body), mac):
            return Verdict.BAD_MAC
        return Verdict.OK

    def fresh(self, created_at: float, enqueued_at: float) -> bool:
        return abs(enqueued_at - created_at) <= self.window

    def proof(self, instance_id: str) -> str:
        """What an agent instance publishes in its registry record to show which secret it
        signs with: a MAC over its instance id (the secret itself is never published)."""
        return self.sign(_PROOF + instance_id.encode())

    def proves(self, instance_id: str, proof: str) -> bool:
        """Whether ``proof`` was made with this secret (so that instance's signatures
        verify here)."""
        return bool(proof) and hmac.compare_digest(self.proof(instance_id), proof)


def same_secret(signer: Signer | None, instance_id: str, proof: str) -> bool:
    """Whether the instance that published ``proof`` signs as ``signer`` does: both with
    the same secret, or both without one."""
    if signer is None:
        return not proof
    return signer.proves(instance_id, proof)
