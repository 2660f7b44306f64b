"""OTLP trace protobuf (opentelemetry/proto/trace/v1/trace.proto), written by hand, and the
span record it encodes.

Why not the OpenTelemetry SDK: issue 13 allows traces 5 % more CPU per run. With the SDK a
3-agent consensus run (bench/bench_observability.py) took 8.94 ms of CPU instead of 4.53 ms:
~130 µs per span all told, ~55 µs of it the SDK's own (36 to create and end a span, 18 to
encode it), and ~60 ms to import. Here a span is a small record, encoded with the rest of its
run's spans straight to protobuf bytes (the wire format is three rules: varints, fixed64,
length-delimited), with what repeats (names, attributes, resource, scope) encoded once:
~4.5 µs per span from event to bytes, replaying a run's events (the SDK, replayed alike:
~60-90 µs).
tests/test_tracing_otlp.py decodes what this writes with the official ``opentelemetry-proto``
messages.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from massgen import __version__

if TYPE_CHECKING:
    from massgen.types import Usage

INTERNAL, SERVER, CLIENT = 1, 2, 3  # SpanKind
ERROR = 2  # StatusCode
_SMALL = [bytes((i,)) for i in range(128)]
_KIND = [b"\x30" + _SMALL[i] for i in range(6)]  # Span.kind (6)
_TIMES = struct.Struct("<BQBQ").pack  # Span.start_time_unix_nano (7), end (8): fixed64
_TIME = struct.Struct("<BQ").pack
_DOUBLE = struct.Struct("<Bd").pack
_IN, _OUT = "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"
_PARTS = (  # of Usage's cached_tokens, cache_write_tokens and reasoning_tokens
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.reasoning.output_tokens",
)
_CACHED = 4096  # at most this many encoded names (or attributes of a type), then start again


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    if n < 16384:  # most lengths: two bytes
        return bytes((n & 127 | 128, n >> 7))
    out = bytearray()
    while n > 127:
        out.append(n & 127 | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, body: bytes) -> bytes:
    """A length-delimited field (``tag``: its number << 3 | 2)."""
    return _SMALL[tag] + _varint(len(body)) + body


def _any(v: Any) -> bytes:
    """An AnyValue: str, bool, int, float or a list of them (anything else as its str)."""
    t = type(v)
    if t is str:
        return _field(0x0A, v.encode())
    if t is bool:
        return b"\x10\x01" if v else b"\x10\x00"
    if t is int:
        return b"\x18" + _varint(v & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement
    if t is float:
        return _DOUBLE(0x21, v)
    if t is list or t is tuple:
        return _field(0x2A, b"".join([_field(0x0A, _any(x)) for x in v]))
    return _field(0x0A, str(v).encode())


def _pair(key: str, v: Any) -> bytes:
    """A KeyValue."""
    return _field(0x0A, key.encode()) + _field(0x12, _any(v))


class Encoder:
    """Spans as ``ScopeSpans.spans`` fields; names and attributes encoded once (bounded)."""

    def __init__(self) -> None:
        self.names: dict[str, bytes] = {}
        self.keys: dict[str, bytes] = {}
        self.heads: dict[str, list[bytes]] = {}
        self.attrs: dict[type, dict[tuple[str, Any], bytes]] = {
            t: {} for t in (str, int, bool, tuple)
        }
        self._usage = self._heads(_IN), self._heads(_OUT)  # for :meth:`tokens`

    def name(self, name: str) -> bytes:
        got = self.names.get(name)
        if got is None:
            if len(self.names) >= _CACHED:
                self.names.clear()
            got = self.names[name] = _field(0x2A, name.encode())
        return got

    def attr(self, key: str, v: Any) -> bytes:
        """A ``Span.attributes`` field, encoded once for each key and value that repeat
        (and its type: a dict per type, as ``1 == 1.0 == True``): names, small numbers,
        short texts. Token counts, costs and long texts are encoded each time: kept, they
        would only fill the cache (and make the garbage collector run)."""
        t = type(v)
        if t is int and not 0 <= v < 1024 or t is float:
            return _field(0x4A, self._key(key) + _field(0x12, _any(v)))
        seen = self.attrs.get(t)
        if seen is None:
            return _field(0x4A, _pair(key, v))
        got = seen.get((key, v))
        if got is None:
            got = _field(0x4A, _pair(key, v))
            if t is str and len(v) > 256 or t is tuple and any(type(x) is not str for x in v):
                return got  # long texts are rarely the same; and (1,) == (True,)
            if len(seen) >= _CACHED:
                seen.clear()
            seen[(key, v)] = got
        return got

    def once(self, key: str, v: str) -> bytes:
        """``attr`` of a text that never repeats (a run's or a tool call's id): not cached,
        where it would only fill the cache and keep the collector busy."""
        return _field(0x4A, self._key(key) + _field(0x12, _field(0x0A, v.encode())))

    def tokens(self, used: Usage) -> bytes:
        """``gen_ai.usage.input_tokens`` and ``gen_ai.usage.output_tokens``, as :meth:`number`
        writes them (most spans have both), and the cached and reasoning parts if any."""
        a, b = self._usage
        n_in, n_out = used.input_tokens, used.output_tokens
        if 0 <= n_in < 128:
            got = a[1] + _SMALL[n_in]
        elif 128 <= n_in < 16384:
            got = a[2] + bytes((n_in & 127 | 128, n_in >> 7))
        else:
            got = self.number(_IN, n_in)
        if 0 <= n_out < 128:
            got += b[1] + _SMALL[n_out]
        elif 128 <= n_out < 16384:
            got += b[2] + bytes((n_out & 127 | 128, n_out >> 7))
        else:
            got += self.number(_OUT, n_out)
        if used.cached_tokens or used.cache_write_tokens or used.reasoning_tokens:
            parts = used.cached_tokens, used.cache_write_tokens, used.reasoning_tokens
            got += b"".join([self.number(k, n) for k, n in zip(_PARTS, parts, strict=True) if n])
        return got

    def number(self, key: str, v: float) -> bytes:
        """``attr`` of a number that seldom repeats (tokens, a cost), without a cache: the
        field's bytes before the value are made once per key and size (:meth:`_heads`)."""
        heads = self.heads.get(key) or self._heads(key)
        if type(v) is int and v >= 0:
            if v < 128:
                return heads[1] + _SMALL[v]
            if v < 16384:
                return heads[2] + bytes((v & 127 | 128, v >> 7))
            n = _varint(v)
            return heads[len(n)] + n
        if type(v) is float:
            return heads[0] + _DOUBLE(0x21, v)
        return self.attr(key, v)

    def _heads(self, key: str) -> list[bytes]:
        """The bytes of a ``Span.attributes`` field of ``key`` before its value: a double's
        (``[0]``), and an int's whose varint takes ``i`` bytes (``[i]``)."""
        name = self._key(key)
        got = [b"\x4a" + _varint(len(name) + 11) + name + b"\x12\x09"]
        got += [
            b"\x4a" + _varint(len(name) + 3 + i) + name + bytes((0x12, i + 1, 0x18))
            for i in range(1, 11)
        ]
        if len(self.heads) >= _CACHED:
            self.heads.clear()
        self.heads[key] = got
        return got

    def _key(self, key: str) -> bytes:
        """``KeyValue.key``, encoded once."""
        got = self.keys.get(key)
        if got is None:
            if len(self.keys) >= _CACHED:
                self.keys.clear()
            got = self.keys[key] = _field(0x0A, key.encode())
        return got

    def attributes(self, attrs: Mapping[str, Any]) -> bytes:
        """``attrs`` as a span's attribute fields, for :attr:`Span.head`."""
        return b"".join([self.attr(k, v) for k, v in attrs.items()])

    def span(self, s: Span, end: int) -> bytes:
        """One span, ended at ``end``, as a ``ScopeSpans.spans`` field."""
        s.stop = end
        return self.spans([s])[0]

    def lead(self, name: str, kind: int) -> bytes:
        """A span's name and kind fields, as :meth:`chat` takes them before the attributes."""
        return self.name(name) + _KIND[kind]

    def chat(
        self, ids: tuple[bytes, bytes, bytes], head: bytes, start: int, end: int, tokens: bytes
    ) -> bytes:
        """A provider attempt's span that went well, written at once (no :class:`Span`):
        ``ids`` (trace, span, parent), ``head`` its name, kind and attributes encoded
        (a :meth:`name`, a kind, :meth:`attributes`), ``tokens`` (:meth:`tokens`)."""
        body = b"".join(
            (
                b"\x0a\x10",
                ids[0],
                b"\x12\x08",
                ids[1],
                b"\x22\x08",
                ids[2],
                _TIMES(0x39, start, 0x41, end),
                head,
                tokens,
            )
        )
        return _field(0x12, body)

    def spans(self, ended: list[Span]) -> list[bytes]:
        """``ended`` (each at its ``stop``) as ``ScopeSpans.spans`` fields, in one pass."""
        out: list[bytes] = []
        add, names, kinds = out.append, self.names, _KIND
        for s in ended:
            body = b"".join(
                (
                    b"\x0a\x10",
                    s.trace_id,
                    b"\x12\x08",
                    s.span_id,
                    b"\x22\x08" + s.parent if s.parent else b"",
                    names.get(s.name) or self.name(s.name),
                    kinds[s.kind],
                    _TIMES(0x39, s.start, 0x41, s.stop),
                    s.head,
                )
            )
            if s.attrs or s.events or s.status:
                body += self._rest(s)
            add(_field(0x12, body))
        return out

    def _rest(self, s: Span) -> bytes:
        """What a span has beyond its ids, name, times and :attr:`Span.head`: attributes
        set since, events, an error status."""
        by_type, parts = self.attrs, []
        for k, v in s.attrs.items():
            seen = by_type.get(type(v))
            got = seen.get((k, v)) if seen is not None else None
            parts.append(got or self.attr(k, v))
        for what, at, attrs in s.events or ():
            pairs = b"".join([_field(0x1A, _pair(k, v)) for k, v in attrs.items()])
            parts.append(_field(0x5A, _TIME(0x09, at) + _field(0x12, what.encode()) + pairs))
        if s.status:
            message = _field(0x12, s.message.encode()) if s.message else b""
            parts.append(_field(0x7A, message + b"\x18" + _SMALL[s.status]))
        return b"".join(parts)


def resource(attrs: Mapping[str, Any]) -> bytes:
    """``ResourceSpans.resource``, encoded once per :class:`Tracing`."""
    return _field(0x0A, b"".join([_field(0x0A, _pair(k, v)) for k, v in attrs.items()]))


_SCOPE = _field(0x0A, _field(0x0A, b"massgen") + _field(0x12, __version__.encode()))


def request(head: bytes, spans: list[bytes]) -> bytes:
    """An ExportTraceServiceRequest: one resource (``head``: :func:`resource`), one scope;
    joined once (a batch is some 200 kB)."""
    scope = len(_SCOPE) + sum(map(len, spans))
    scoped = _SMALL[0x12] + _varint(scope)
    outer = _SMALL[0x0A] + _varint(len(head) + len(scoped) + scope)
    return b"".join([outer, head, scoped, _SCOPE, *spans])


class Span:
    """An open span: its ids (trace, its own, its parent's or ``b""``), times, attributes,
    events and status; :meth:`end` hands it to ``end`` (its tracer, which encodes it)."""

    __slots__ = (
        "_end", "trace_id", "span_id", "parent", "name", "kind", "start", "attrs", "events",
        "status", "message", "head", "stop",
    )  # fmt: skip

    def __init__(
        self, end: Callable[[Span, int], None], ids: tuple[bytes, bytes, bytes], name: str,
        kind: int, start: int,
        attrs: dict[str, Any],
    ) -> None:  # fmt: skip
        self._end, (self.trace_id, self.span_id, self.parent) = end, ids
        self.name, self.kind, self.start, self.attrs = name, kind, start, attrs
        self.events: list[tuple[str, int, dict[str, Any]]] | None = None
        self.status, self.message = 0, ""
        self.head = b""  # attributes encoded already (:meth:`Encoder.attributes`), not in attrs
        self.stop = 0  # its end (ns), once ended

    def set_attribute(self, key: str, value: Any) -> None:
        self.attrs[key] = value

    def add_event(self, name: str, attrs: dict[str, Any], at: int) -> None:
        if self.events is None:
            self.events = []
        self.events.append((name, at, attrs))

    def fail(self, message: str = "") -> None:
        self.status, self.message = ERROR, message

    def end(self, at: int | None = None) -> None:
        self._end(self, at or time.time_ns())

    def traceparent(self, sampled: bool = True) -> str:
        flags = "01" if sampled else "00"
        return f"00-{self.trace_id.hex()}-{self.span_id.hex()}-{flags}"


def parse_traceparent(value: str) -> tuple[bytes, bytes, bool] | None:
    """A W3C traceparent's trace id, span id and sampled flag (``None``: not a valid one)."""
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    try:
        trace, span, flags = bytes.fromhex(parts[1]), bytes.fromhex(parts[2]), int(parts[3], 16)
    except ValueError:
        return None
    if len(trace) != 16 or len(span) != 8 or not any(trace) or not any(span):
        return None
    return trace, span, bool(flags & 1)
