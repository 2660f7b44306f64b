"""Serve recorded provider traffic byte for byte from a loopback HTTP server.

A recording is a file another project committed (a vcrpy YAML cassette, pydantic-ai's
variant of one with ``parsed_body``, a raw HTTP response ``.http``: status line, headers,
blank line, body; or a ``.chunks.txt`` of recorded stream events, one JSON object a line,
as the Vercel AI SDK keeps them), copied unchanged beside an
``ORIGINS.toml`` that names where each file came from. :func:`load` reads the responses
out of one; :class:`ReplayServer` answers each request with the next response, the body's
bytes exactly as recorded, and can vary how they travel on the wire:

- ``exact``: the body in one write, with ``Content-Length``;
- ``crlf``: an event stream's line ends turned into CRLF (the SSE spec allows CR, LF, CRLF);
- ``split``: chunked transfer, the body written in pieces of 1 to 257 bytes that cut
  ``data:`` lines (and UTF-8 sequences) in two;
- ``comments``: an event stream with ``: keep-alive`` comment lines between events (as
  OpenRouter sends ``: OPENROUTER PROCESSING``);
- ``gzip``: the body gzip-compressed with ``Content-Encoding: gzip`` even if not asked;
- ``deflate``: likewise with ``Content-Encoding: deflate`` (zlib-wrapped, as RFC 9110 says),
  and ``deflate-raw``: a raw deflate stream under that same header, as some servers send.
  These two are not in :data:`VARIANTS` (the set every suite runs): ask for them by name.

The recorded ``Content-Length``, ``Transfer-Encoding``, ``Content-Encoding`` and
``Connection`` headers describe the original exchange, not ours: they are dropped and set
anew for the bytes this server sends. Every other header (``retry-after``, request ids,
rate-limit headers) is sent as recorded.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import socketserver
import threading
import tomllib
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
VARIANTS = ("exact", "crlf", "split", "comments", "gzip")
EXTRA_VARIANTS = ("deflate", "deflate-raw")
_HOP = {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"}


@dataclass(frozen=True)
class Recorded:
    """One recorded response (and, when the cassette has it, the request that got it)."""

    name: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    request: dict[str, Any] | None = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def is_stream(self) -> bool:
        return "text/event-stream" in (self.header("content-type") or "")


def origins(directory: Path) -> dict[str, dict[str, str]]:
    """``ORIGINS.toml`` of a recordings folder: file name -> {repo, path, commit?, note?}."""
    with (directory / "ORIGINS.toml").open("rb") as fh:
        return tomllib.load(fh)


def recordings(provider: str) -> list[Path]:
    """Every recording file of a provider folder (``tests/recorded/<provider>/``)."""
    directory = HERE / provider
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in {".yaml", ".yml", ".http"} or p.name.endswith(".chunks.txt")
    )


def load(path: Path) -> list[Recorded]:
    """The responses in one recording file, in order."""
    if path.suffix == ".http":
        return [_load_http(path)]
    if path.name.endswith(".chunks.txt"):
        return [_load_chunks(path)]
    return _load_cassette(path)


def _load_chunks(path: Path) -> Recorded:
    """Recorded stream events, one a line: served as the Vercel AI SDK's own tests serve
    them, each line as one ``data:`` event, then ``data: [DONE]``."""
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    body = b"".join(b"data: " + line + b"\n\n" for line in lines) + b"data: [DONE]\n\n"
    return Recorded(path.name, 200, (("Content-Type", "text/event-stream"),), body)


def _load_http(path: Path) -> Recorded:
    raw = path.read_bytes()
    crlf, lf = raw.find(b"\r\n\r\n"), raw.find(b"\n\n")
    sep = b"\r\n\r\n" if crlf != -1 and (lf == -1 or crlf < lf) else b"\n\n"
    head, _, body = raw.partition(sep)
    lines = head.decode("latin-1").splitlines()
    status = int(lines[0].split()[1])
    headers = tuple(
        tuple(s.strip() for s in line.split(":", 1)) for line in lines[1:] if ":" in line
    )
    return Recorded(path.name, status, headers, body)  # type: ignore[arg-type]


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, dict):
        if "string" in body:
            return _body_bytes(body["string"])
        if "base64_string" in body:
            return base64.b64decode(body["base64_string"])
    raise ValueError(f"unknown body form: {type(body).__name__}")


def _load_cassette(path: Path) -> list[Recorded]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_CassetteLoader)
    out = []
    for i, interaction in enumerate(data["interactions"]):
        resp = interaction["response"]
        status = resp["status"]["code"] if isinstance(resp["status"], dict) else int(resp["status"])
        headers: list[tuple[str, str]] = []
        for key, values in (resp.get("headers") or {}).items():
            for value in values if isinstance(values, list) else [values]:
                headers.append((str(key), str(value)))
        if "parsed_body" in resp:
            # pydantic-ai's cassettes keep a JSON body parsed; its own loader serves it back
            # as ``json.dumps`` of that value, and so does this one.
            raw = json.dumps(resp["parsed_body"]).encode()
        else:
            raw = _body_bytes(resp.get("body"))
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        out.append(
            Recorded(f"{path.name}#{i}", status, tuple(headers), raw, interaction.get("request"))
        )
    return out


_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader where PyYAML has it: the recordings load at collection, ten times faster."""


class _CassetteLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that also reads the ``!!binary`` and python tags vcrpy writes for bodies."""


def _binary(loader: yaml.SafeLoader, node: yaml.Node) -> bytes:
    return base64.b64decode(loader.construct_scalar(node))  # type: ignore[arg-type]


_CassetteLoader.add_constructor("tag:yaml.org,2002:binary", _binary)
_CassetteLoader.add_constructor("tag:yaml.org,2002:python/bytes", _binary)


def variant_body(rec: Recorded, variant: str) -> bytes:
    body = rec.body
    if variant == "crlf" and rec.is_stream:
        body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    elif variant == "comments" and rec.is_stream:
        text = body.replace(b"\r\n", b"\n")
        body = b": keep-alive\n\n" + text.replace(b"\n\n", b"\n\n: OPENROUTER PROCESSING\n\n")
    return body


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ReplayServer:
    """A loopback server answering request *n* with ``responses[n]`` (the last one repeats).

    Use as a context manager; ``url`` is ``http://127.0.0.1:PORT``; ``received`` lists the
    requests it got, so a test can check what the client sent.
    """

    responses: Sequence[Recorded]
    variant: str = "exact"
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.responses, Recorded):
            self.responses = [self.responses]
        if self.variant not in VARIANTS + EXTRA_VARIANTS:
            raise ValueError(self.variant)
        self._lock = threading.Lock()
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while owner._serve_one(self.rfile, self.connection):
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        # shutdown() waits for the serving loop to look at its flag, once per poll interval
        # (half a second by default): a short one keeps each test's teardown short.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self) -> Recorded:
        with self._lock:
            n = len(self.received) - 1
            return self.responses[min(n, len(self.responses) - 1)]

    def _serve_one(self, rfile: Any, conn: socket.socket) -> bool:
        line = rfile.readline(65536)
        if not line.strip():
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            h = rfile.readline(65536)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        body = rfile.read(int(headers.get("content-length", "0") or 0))
        with self._lock:
            self.received.append(Received(method, target, headers, body))
        rec = self._next()
        conn.sendall(b"".join(self.encode(rec)) if self.variant != "split" else self.encode(rec)[0])
        if self.variant == "split":
            for piece in self.encode(rec)[1:]:
                conn.sendall(piece)
        return headers.get("connection", "").lower() != "close"

    def encode(self, rec: Recorded) -> list[bytes]:
        """The response as the pieces written to the socket."""
        body = variant_body(rec, self.variant)
        headers = [(k, v) for k, v in rec.headers if k.lower() not in _HOP]
        if self.variant == "gzip":
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        elif self.variant.startswith("deflate"):
            raw = self.variant == "deflate-raw"
            packer = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
            body = packer.compress(body) + packer.flush()
            headers.append(("Content-Encoding", "deflate"))
        try:
            phrase = HTTPStatus(rec.status).phrase
        except ValueError:
            phrase = "Overloaded" if rec.status == 529 else "Unknown"
        if self.variant == "split":
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            headers.append(("Content-Length", str(len(body))))
        head = (
            f"HTTP/1.1 {rec.status} {phrase}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers)
            + "\r\n"
        )
        if self.variant != "split":
            return [head.encode("latin-1") + body]
        pieces = [head.encode("latin-1")]
        for piece in _pieces(body):
            pieces.append(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        pieces.append(b"0\r\n\r\n")
        return pieces


_PIECE_SIZES = (7, 3, 61, 1, 257)
"""Sizes of the split variant's pieces, in turn: small enough to cut lines, ``data:``
prefixes and UTF-8 sequences anywhere, large enough that a 200 kB stream is not 30,000
writes."""


def _pieces(data: bytes) -> Iterator[bytes]:
    i = n = 0
    while i < len(data):
        size = _PIECE_SIZES[n % len(_PIECE_SIZES)]
        yield data[i : i + size]
        i, n = i + size, n + 1
