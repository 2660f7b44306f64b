"""The native client's pool over TLS: certificates are verified, connections reused."""

from __future__ import annotations

import asyncio
import json
import ssl

import pytest
import trustme

from massgen.backends.http_pool import Pool, TransportError

BODY = json.dumps({"ok": True}).encode()


class TLSServer:
    """A tiny HTTPS/1.1 server on loopback that answers every request with BODY."""

    def __init__(self, ca: trustme.CA) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(self.context)
        self.connections = 0
        self.requests = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TLSServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                self.requests += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
                    + BODY
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


async def test_requests_over_tls_reuse_one_verified_connection():
    ca = trustme.CA()
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with TLSServer(ca) as server:
        pool = Pool(ssl_context=client_context)
        try:
            for _ in range(3):
                async with pool.request(
                    "POST",
                    f"https://localhost:{server.port}/v1/chat/completions",
                    headers=[("Content-Type", "application/json")],
                    content=b"{}",
                    seconds=5,
                ) as response:
                    assert response.status == 200
                    assert json.loads(await response.aread()) == {"ok": True}
        finally:
            await pool.aclose()
    assert server.requests == 3 and server.connections == 1


async def test_a_certificate_from_an_untrusted_ca_is_refused():
    async with TLSServer(trustme.CA()) as server:
        pool = Pool(ssl_context=ssl.create_default_context())  # does not trust that CA
        try:
            with pytest.raises(TransportError, match="(?i)certificate"):
                async with pool.request(
                    "POST", f"https://localhost:{server.port}/", content=b"{}", seconds=5
                ):
                    pass
        finally:
            await pool.aclose()
    assert server.requests == 0
