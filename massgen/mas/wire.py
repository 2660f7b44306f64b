"""How a message becomes bytes and back: a blob is ``hex MAC (or nothing) + b"\\n" + JSON
body``; the MAC covers the exact body bytes, so no re-serialisation fails an honest message."""

from __future__ import annotations

from json.encoder import encode_basestring as _quote

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json

from massgen.errors import WireError
from massgen.mas.message import AgentMessage

_ADAPTER = TypeAdapter(AgentMessage)
_EXCLUDE = frozenset({"attempt", "entry_id", "context"})
_TEMPLATE = (
    '{"id":%s,"sender_id":%s,"target_id":%s,"payload":%s,"kind":%s,"created_at":%r,'
    '"correlation_id":%s,"reply_to":%s,"error":%s}'
)

__all__ = ["WireError", "decode", "encode", "pack", "slow_encode", "unpack"]


def encode(message: AgentMessage) -> bytes:
    """The body as sent and signed: pydantic's JSON (a test checks byte for byte) at half its
    cost, formatting the envelope here; anything unusual takes :func:`slow_encode`."""
    m = message
    created = m.created_at
    cid, rto, err = m.correlation_id, m.reply_to, m.error
    if (
        type(m.id) is not str
        or type(m.sender_id) is not str
        or type(m.target_id) is not str
        or not isinstance(m.kind, str)
        or type(created) is not float
        or not (created == 0.0 or 1e-4 <= abs(created) < 1e16)  # repr has no exponent
        or not (cid is None or type(cid) is str)
        or not (rto is None or type(rto) is str)
        or not (err is None or type(err) is str)
    ):
        return slow_encode(m)
    try:
        text = _TEMPLATE % (
            _quote(m.id),
            _quote(m.sender_id),
            _quote(m.target_id),
            to_json(m.payload, inf_nan_mode="null").decode(),
            _quote(m.kind),
            created,
            "null" if cid is None else _quote(cid),
            "null" if rto is None else _quote(rto),
            "null" if err is None else _quote(err),
        )
        return text.encode()
    except UnicodeEncodeError:  # lone surrogates: let pydantic decide
        return slow_encode(m)


def slow_encode(message: AgentMessage) -> bytes:
    """The body as pydantic dumps the whole message."""
    return _ADAPTER.dump_json(message, exclude=_EXCLUDE)  # type: ignore[arg-type]


def decode(body: bytes) -> AgentMessage:
    """Parse and validate a body; :class:`WireError` if it is not a valid message."""
    try:
        return _ADAPTER.validate_json(body)
    except ValidationError as e:
        raise WireError(f"malformed message: {e.error_count()} error(s)") from e


def pack(body: bytes, mac: str | None) -> bytes:
    return (mac.encode() if mac else b"") + b"\n" + body


def unpack(blob: bytes) -> tuple[bytes, str | None]:
    sig, sep, body = blob.partition(b"\n")
    if not sep:
        raise WireError("malformed message: no signature separator")
    return body, (sig.decode("ascii", "replace") or None)
