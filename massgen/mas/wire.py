"""How a message becomes bytes and back.

The body is compact JSON of every field but the delivery ones (``attempt``, ``entry_id``,
``context``). A stored blob is ``signature + b"\\n" + body``: the signature is the hex
HMAC of the exact body bytes (empty when no secret is configured). JSON never holds a raw
newline, so splitting at the first one is unambiguous, and the receiver checks the MAC over
the bytes it received, so no re-serialisation can make an honest message fail.
"""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from massgen.mas.message import AgentMessage

_ADAPTER = TypeAdapter(AgentMessage)
_EXCLUDE = frozenset({"attempt", "entry_id", "context"})


class WireError(ValueError):
    """A stored message could not be read (not ours, truncated, or wrong types)."""


def encode(message: AgentMessage) -> bytes:
    """The message body as sent and signed."""
    return _ADAPTER.dump_json(message, exclude=_EXCLUDE)  # type: ignore[arg-type]


def decode(body: bytes) -> AgentMessage:
    """Parse and validate a body; raise :class:`WireError` if it is not a valid message."""
    try:
        return _ADAPTER.validate_json(body)
    except ValidationError as e:
        raise WireError(f"malformed message: {e.error_count()} error(s)") from e


def pack(body: bytes, mac: str | None) -> bytes:
    """One blob for a stream entry or a reply key."""
    return (mac.encode() if mac else b"") + b"\n" + body


def unpack(blob: bytes) -> tuple[bytes, str | None]:
    """Split a blob into ``(body, mac)``."""
    sig, sep, body = blob.partition(b"\n")
    if not sep:
        raise WireError("malformed message: no signature separator")
    return body, (sig.decode("ascii", "replace") or None)
