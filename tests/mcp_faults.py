"""An MCP server written with the official SDK, for the client's fault tests: a slow tool, a
crash in the middle of a call, a huge result, an error, structured content, an image.

    python tests/mcp_faults.py            # stdio
    python tests/mcp_faults.py --http     # streamable HTTP on 127.0.0.1, a free port,
                                          # printed as ``port=N`` on stdout once listening

Over HTTP, when ``FAULTS_TOKEN`` is set, a request without ``Authorization: Bearer
$FAULTS_TOKEN`` is refused with 401."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import anyio
from mcp.server.mcpserver import Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("faults")

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@server.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after `seconds`."""
    await anyio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def crash() -> str:
    """Exit the process in the middle of the call."""
    os._exit(3)


@server.tool()
def huge(chars: int) -> str:
    """A result of `chars` characters."""
    return "x" * chars


@server.tool()
def fail(reason: str) -> str:
    """Always fails with `reason`."""
    raise ToolError(reason)


class Weather(BaseModel):
    city: str
    celsius: float


@server.tool()
def weather(city: str) -> Weather:
    """Structured content: the weather in `city`."""
    return Weather(city=city, celsius=21.5)


@server.tool()
def picture() -> Image:
    """A 1x1 PNG."""
    return Image(data=PNG, format="png")


@server.tool()
def env(name: str) -> str:
    """The value of environment variable `name` in this server, or `(unset)`."""
    return os.environ.get(name, "(unset)")


def _guarded(app: Any, token: str) -> Any:
    async def guard(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await app(scope, receive, send)

    return guard


async def _serve_http() -> None:
    import uvicorn

    app: Any = server.streamable_http_app()
    if token := os.environ.get("FAULTS_TOKEN"):
        app = _guarded(app, token)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # a client's connection waits in the backlog until uvicorn accepts it
    print(f"port={sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    if secret := os.environ.get("FAULTS_SECRET"):  # a careless server logs its token
        print(f"starting with token {secret}", file=sys.stderr, flush=True)
    if "--http" in sys.argv:
        anyio.run(_serve_http)
    else:
        server.run("stdio")
