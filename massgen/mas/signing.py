"""HMAC-SHA256 over the whole message body, so nobody without the shared secret can speak as
an agent. Freshness and replays are judged on the inbox's own (Redis) time, not the sender's."""

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
    """Signs and checks bodies with one secret; ``window`` is how far (seconds) a sender's
    clock may be from the inbox's, and how long ids are remembered against replays."""

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
        if not mac:
            return Verdict.UNSIGNED
        return Verdict.OK if hmac.compare_digest(self.sign(body), mac) else Verdict.BAD_MAC

    def fresh(self, created_at: float, enqueued_at: float) -> bool:
        return abs(enqueued_at - created_at) <= self.window

    def proof(self, instance_id: str) -> str:
        """Published in the registry to show which secret an instance signs with (a MAC of
        its id: the secret itself is never published)."""
        return self.sign(_PROOF + instance_id.encode())

    def proves(self, instance_id: str, proof: str) -> bool:
        return bool(proof) and hmac.compare_digest(self.proof(instance_id), proof)


def same_secret(signer: Signer | None, instance_id: str, proof: str) -> bool:
    """Whether that instance signs as ``signer`` does (same secret, or both without one)."""
    return not proof if signer is None else signer.proves(instance_id, proof)
