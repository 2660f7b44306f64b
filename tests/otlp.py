"""An OTLP/HTTP trace receiver on loopback, for the tracing tests: what the exporter sends to
``/v1/traces`` is decoded with the official ``opentelemetry-proto`` messages and kept. Given a
server TLS context, it speaks HTTPS."""

from __future__ import annotations

import gzip
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def value(v: AnyValue) -> Any:
    """An attribute's value as Python."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    start: int
    end: int
    attributes: dict[str, Any]
    status: int  # 0 unset, 1 ok, 2 error
    events: list[str]
    resource: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    message: str = ""  # the status's

    def __getitem__(self, key: str) -> Any:
        return self.attributes[key]


class Receiver:
    """Collects the spans every export brings; ``wait`` for enough of them (no sleeps)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.spans: list[Span] = []
        self.posts: list[str] = []  # the paths posted to
        self.names: list[list[str]] = []  # each post's header names, in lower case, as sent
        self.refuse: list[int] = []  # statuses to answer first (with Retry-After: 0)
        self.hold: threading.Event | None = None  # set: posts are answered once it is set
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if (hold := receiver.hold) is not None and not hold.wait(30):
                    return  # never released: the connection just closes
                with receiver._changed:
                    status = receiver.refuse.pop(0) if receiver.refuse else 0
                if status:
                    self.send_response(status)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with receiver._changed:
                    receiver.names.append([k.lower() for k in self.headers])
                receiver._add(request, self.path, {k.lower(): v for k, v in self.headers.items()})
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:  # each connection's handshake is made as it is accepted
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def _add(self, request: ExportTraceServiceRequest, path: str, headers: dict[str, str]) -> None:
        got = []
        for rs in request.resource_spans:
            resource = {a.key: value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            start=s.start_time_unix_nano,
                            end=s.end_time_unix_nano,
                            attributes={a.key: value(a.value) for a in s.attributes},
                            status=s.status.code,
                            events=[e.name for e in s.events],
                            resource=resource,
                            headers=headers,
                            message=s.status.message,
                        )
                    )
        with self._changed:
            self.spans += got
            self.posts.append(path)
            self._changed.notify_all()

    def wait(self, enough: Callable[[list[Span]], bool], timeout: float = 20) -> list[Span]:
        """The spans so far, once ``enough`` says so (TimeoutError after ``timeout`` s)."""
        with self._changed:
            if not self._changed.wait_for(lambda: enough(self.spans), timeout):
                names = [s.name for s in self.spans]
                raise TimeoutError(f"spans received: {names}")
            return list(self.spans)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def named(spans: list[Span], name: str) -> list[Span]:
    return [s for s in spans if s.name == name]


def children(spans: list[Span], parent: Span) -> Iterator[Span]:
    return (s for s in spans if s.parent_id == parent.span_id)


def whole_run(spans: list[Span]) -> bool:
    """Whether a run's root span has come (``Receiver.wait(whole_run)``)."""
    return any(s.name.startswith("invoke_workflow ") for s in spans)


def observability_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings traces and metrics logged."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("massgen.observability") and r.levelno == logging.WARNING
    ]
