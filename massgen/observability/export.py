"""The export half of a tracer: spans encoded as their run ends, in batches posted over
OTLP/HTTP on massgen's aiohttp session when a batch is full or ``delay`` after its first
span (a timer on the loop, never a polling task); :meth:`Exporter.aclose` sends what is
left. Imported with :mod:`massgen.observability.tracing`, only when tracing is on."""

from __future__ import annotations

import asyncio
import gzip
import logging
import ssl
import zlib
from collections import deque
from typing import TYPE_CHECKING, Any

from massgen import __version__
from massgen.backends._common import tls_context
from massgen.backends._errors import parse_retry_after
from massgen.backends.openai_http import acquire_session, proxy_for, release_session
from massgen.errors import ConfigError
from massgen.observability import Export, Given
from massgen.observability.otlp import Encoder, Span, request, resource

if TYPE_CHECKING:
    import aiohttp

_RETRY = frozenset({429, 502, 503, 504})
_log = logging.getLogger("massgen.observability.tracing")
_CA = "the PEM file of the CA that signed the collector's certificate"
_UNTRUSTED = (
    "its certificate is not trusted: give the CA that signed it as"
    " OTEL_EXPORTER_OTLP_CERTIFICATE or observability.certificate_file"
)
_CERT = "massgen's certificate (PEM) and its private key, for a collector that asks for one"


def tls(x: Export) -> ssl.SSLContext | None:
    """The TLS of an ``https`` export, made once as its exporter starts: the context every
    client shares, or, as the OpenTelemetry SDK takes its files, one trusting only the CA
    file given, showing massgen's certificate if one is given. A file it cannot use is a
    :class:`ConfigError` naming the variable (or key) that gave it."""
    if not x.url.startswith("https:"):
        return None
    ca, cert, key = x.certificate, x.client_certificate, x.client_key
    if not (ca or cert or key):
        return tls_context()
    if key is not None and cert is None:
        other = key.name.replace("KEY", "CERTIFICATE").replace("key", "certificate")
        hint = f"give its certificate too, as {other}"
        raise ConfigError("a client key without its certificate", key=key.name, hint=hint)
    for given, what in ((ca, _CA), (cert, _CERT), (key, _CERT)):
        if given is not None:
            try:
                open(given.value, "rb").close()
            except OSError as e:
                why = f"cannot read {given.value}: {e.strerror or type(e).__name__}"
                raise ConfigError(why, key=given.name, hint=f"give {what}") from None
    if ca is None:
        context = tls_context.__wrapped__()  # one of its own, trusting the system's CAs
    else:
        try:
            context = ssl.create_default_context(cafile=ca.value)
        except ssl.SSLError:
            why = f"{ca.value} holds no PEM certificate"
            raise ConfigError(why, key=ca.name, hint=f"give {_CA}") from None
    if cert is not None:
        _certify(context, cert, key)
    return context


def _certify(context: ssl.SSLContext, cert: Given, key: Given | None) -> None:
    """Show ``cert`` to the collector, with ``key`` (else the key in the same file)."""
    held = key or cert

    def encrypted() -> bytes:  # asked for a password: never prompt at the terminal
        hint = "give the key unencrypted, as the OpenTelemetry SDK reads it"
        raise ConfigError(f"{held.value}: the key is encrypted", key=held.name, hint=hint)

    try:
        context.load_cert_chain(cert.value, key.value if key else None, password=encrypted)
    except ssl.SSLError:
        also = f" with {key.value} ({key.name})" if key else ""
        why = f"{cert.value}{also}: not a PEM certificate and its private key"
        raise ConfigError(why, key=cert.name, hint=f"give {_CERT}") from None


class Exporter:
    """Where spans go and how (``export``), what is waiting to go, and the sending."""

    def __init__(self, export: Export) -> None:
        self.export = export
        self._encode = Encoder()
        self._head = resource(export.resource)
        # one of each (aiohttp sends both), as the SDK merges them: the given one, except
        # for what says how the body is written, which only the exporter knows
        self._headers = {"user-agent": f"massgen/{__version__}"}
        self._headers.update((k.lower(), v) for k, v in export.headers.items())
        self._headers["content-type"] = "application/x-protobuf"
        self._headers.pop("content-encoding", None)
        if export.compression:
            self._headers["content-encoding"] = export.compression
        self._pending: list[bytes] = []  # spans encoded, not sent yet
        self._timer: asyncio.TimerHandle | None = None
        self._batches: deque[list[bytes]] = deque()  # ready, sent one request at a time
        self._queued = 0  # spans in them
        self._sender: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned = False
        self._tls = tls(export)
        self._proxy = proxy_for(export.url)  # read once: it scans the environment
        protocol = export.protocol
        if protocol and protocol.value.strip().lower() != "http/protobuf":
            _log.warning(
                "traces: %s=%s is not spoken here: spans are sent as http/protobuf, which "
                "needs the collector's OTLP/HTTP endpoint (usually port 4318)",
                protocol.name,
                protocol.value,
            )

    def ended(self, span: Span, at: int) -> None:
        """``span`` ended at ``at``: see :meth:`queue`."""
        span.stop = at
        self.queue([span])

    def queue(self, spans: list[Span], encoded: list[bytes] | None = None) -> None:
        """Encode ``spans`` (ended) in one pass, with ``encoded`` (spans written already);
        send the batch once it is full, or ``delay`` after it began. Encoded at once, not
        kept as objects: spans waiting as objects made the garbage collector run (and
        rescan everything) several times as often."""
        pending = self._pending
        pending += self._encode.spans(spans)
        if encoded:
            pending += encoded
        if len(pending) >= self.export.batch:
            self._send()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop here: :meth:`flush` sends it
                return
            self._timer = loop.call_later(self.export.delay, self._send)

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop here: :meth:`flush` sends them
            return
        pending, size = self._pending, self.export.batch
        if pending:
            self._pending = []
            for at in range(0, len(pending), size):
                self._batches.append(pending[at : at + size])
            self._queued += len(pending)
            keep = 1 if self._sender is None else 0  # the first batch leaves now: not waiting
            leaving = len(self._batches[0]) if keep else 0
            while self._queued - leaving > self.export.queue:  # the collector is slower
                self._queued -= len(self._batches[keep])
                del self._batches[keep]
                self._warn("too slow, spans dropped")
        if self._batches and self._sender is None:
            self._sender = loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._batches:
                batch = self._batches.popleft()
                self._queued -= len(batch)
                await self._post(request(self._head, batch))
        finally:
            self._sender = None

    async def _post(self, body: bytes) -> None:
        """POST one request; retry what a busy collector answers, warn once of what fails."""
        import aiohttp

        x = self.export
        if x.compression == "gzip":
            body = gzip.compress(body, compresslevel=6, mtime=0)
        elif x.compression == "deflate":
            body = zlib.compress(body)
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session, self._loop = await acquire_session(), loop
        options: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(total=x.timeout)}
        if self._tls is not None:
            options["ssl"] = self._tls
        if self._proxy:
            options["proxy"] = self._proxy
        for attempt in range(3):
            try:
                async with self._session.post(
                    x.url, data=body, headers=self._headers, **options
                ) as response:
                    await response.read()
                    if response.status < 300:
                        return
                    if response.status not in _RETRY or attempt == 2:
                        return self._warn(f"HTTP {response.status}")
                    wait = parse_retry_after(response.headers)
                    wait = 0.5 * 2**attempt if wait is None else wait
            except aiohttp.ClientConnectorCertificateError:
                return self._warn(_UNTRUSTED)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                if attempt or not isinstance(e, aiohttp.ServerDisconnectedError):
                    if isinstance(tls := e.__cause__, ssl.SSLError):  # e.g. no client certificate
                        return self._warn(f"TLS failed: {tls.reason or tls}")
                    return self._warn(type(e).__name__)
                wait = 0  # a kept-alive connection the collector had closed: once more
            await asyncio.sleep(min(wait, x.timeout))

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            _log.warning(
                "traces: the collector at %s did not take spans (%s)", self.export.url, why
            )

    async def flush(self) -> None:
        """Send every span ended so far, within the export timeout."""
        self._send()
        if (sender := self._sender) is not None:
            _, late = await asyncio.wait({sender}, timeout=self.export.timeout)
            if late:
                sender.cancel()
                self._batches.clear()
                self._queued = 0
                self._warn("timed out")

    async def aclose(self) -> None:
        """Send what is left, then let go of the HTTP session."""
        await self.flush()
        session, self._session = self._session, None
        if session is not None and self._loop is asyncio.get_running_loop():
            await release_session(session)
