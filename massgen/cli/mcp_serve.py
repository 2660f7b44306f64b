"""The MCP server behind `massgen mcp` (massgen/cli/mcp.py), built with the official SDK:
imported only by that command. ``ask_team`` runs the orchestrator once per call; the run's
events reach the calling client as progress notifications (one per round)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from typing import TYPE_CHECKING, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent

from massgen.errors import ConfigError, MassGenError
from massgen.events import RoundDone, short_error
from massgen.serve.runs import LiveRun, round_note, summarize

if TYPE_CHECKING:
    from massgen.orchestrator import Orchestrator

StrategyName = Literal["parallel", "sequential", "consensus"]


def build_server(orchestrator: Orchestrator, name: str) -> Any:
    """The SDK's MCPServer with the tool ``ask_team`` running ``orchestrator``."""
    server: Any = MCPServer(name, log_level="WARNING")

    @server.tool()
    async def ask_team(
        task: str, ctx: Context, strategy: StrategyName | None = None
    ) -> CallToolResult:
        """Ask the team: its agents answer (and, by strategy, review and vote); returns the
        final answer, with winner, votes, agreement, tokens and cost as structured content."""
        run = LiveRun(orchestrator, task, strategy)
        try:
            sent = 0
            async for event in run:
                if isinstance(event, RoundDone):
                    sent += 1
                    await ctx.report_progress(sent, None, round_note(event))
            result = await run.result()
        except MassGenError as e:
            raise ToolError(f"the team failed: {short_error(e)}") from None
        except Exception as e:  # a bug of ours: the reason, never a traceback
            raise ToolError(f"the team failed: internal error ({type(e).__name__})") from None
        finally:
            await run.stopped()  # nothing is left running when the call ends (or is cancelled)
        summary = summarize(result, len(orchestrator.seats()))
        return CallToolResult(
            content=[TextContent(type="text", text=result.final_answer)],
            structured_content=summary,
        )

    return server


async def serve(server: Any, port: int | None, host: str) -> None:
    """Serve over stdio, or streamable HTTP on ``host:port`` (0: a free port, told on
    stderr). Cancelled, it stops: uvicorn is told to exit and is waited for."""
    if port is None:
        await server.run_stdio_async()
        return
    import uvicorn

    app = server.streamable_http_app(host=host)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}", key="--http") from None
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    web = uvicorn.Server(config)
    web.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # ours stop it
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    shown = f"[{host}]" if ":" in host else host
    where = f"http://{shown}:{sock.getsockname()[1]}/mcp"
    print(f"massgen mcp: serving on {where}", file=sys.stderr, flush=True)
    running = asyncio.ensure_future(web.serve(sockets=[sock]))
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        web.should_exit = True
        await running
        raise
    finally:
        sock.close()
