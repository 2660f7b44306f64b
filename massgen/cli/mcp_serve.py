"""The MCP server behind `massgen mcp` (massgen/cli/mcp.py), built with the official SDK:
imported only by that command. ``ask_team`` runs the orchestrator once per call; the run's
events reach the calling client as progress notifications: one per consensus round, one per
agent's answer (parallel) or step (sequential)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent
from pydantic import PlainValidator, WithJsonSchema

from massgen.errors import ConfigError, MassGenError
from massgen.events import (
    AgentAnswered,
    AgentFailedEvent,
    Event,
    RoundDone,
    RunStarted,
    short_error,
)
from massgen.serve.runs import LiveRun, round_note, summarize
from massgen.types import STRATEGIES

if TYPE_CHECKING:
    from massgen.orchestrator import Orchestrator

# Both checked by ask_team, not by the SDK (whose error is pydantic's, several lines and a
# link), yet a client still reads them in the tool's schema (build_server). ``task`` is typed
# ``str`` for the SDK, which would otherwise parse a task written in JSON; any value passes.
TaskArg = Annotated[str, PlainValidator(lambda value: value)]
StrategyArg = Annotated[
    object,
    WithJsonSchema({"anyOf": [{"enum": list(STRATEGIES), "type": "string"}, {"type": "null"}]}),
]
_JSON_TYPES = {bool: "a boolean", int: "a number", float: "a number", list: "an array"}
_JSON_TYPES |= {dict: "an object", type(None): "null"}


def task_error(task: object) -> str | None:
    """Why ``task`` (as a client sent it) is not a task, in one line; None if it is one."""
    if not isinstance(task, str):
        sent = _JSON_TYPES.get(type(task), type(task).__name__)
        return f"`task` must be a string (the question for the team), not {sent}"
    if not task.strip():
        return "`task` is missing or empty: give the question for the team as a string"
    return None


class Calls:
    """The ask_team calls under way: a stopping server lets them end (their runs are
    cancelled) before it closes, so each one's client is answered with why."""

    def __init__(self) -> None:
        self.running = 0
        self._none = asyncio.Event()
        self._none.set()

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        self.running += 1
        self._none.clear()
        try:
            yield
        finally:
            self.running -= 1
            if not self.running:
                self._none.set()

    async def ended(self, within: float) -> None:
        """Wait until no call is under way, ``within`` seconds at most."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._none.wait()


def build_server(
    orchestrator: Orchestrator, name: str, stopping: asyncio.Event, calls: Calls
) -> Any:
    """The SDK's MCPServer with the tool ``ask_team`` running ``orchestrator``, each call
    counted in ``calls``; once ``stopping`` is set, calls in flight end with an error (the
    server need not wait for their runs, and uvicorn would: a cancelled request is a
    traceback in its log)."""

    async def ask_team(
        ctx: Context, task: TaskArg = "", strategy: StrategyArg = None
    ) -> CallToolResult:
        """Ask the team: its agents answer (and, by strategy, review and vote); returns the
        final answer, with winner, votes, agreement, tokens and cost as structured content."""
        if why := task_error(task):
            raise ToolError(why)
        if strategy is not None and strategy not in STRATEGIES:
            raise ToolError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        with calls.one():
            return await _ask(task, ctx, str(strategy) if strategy else None)

    async def _ask(task: str, ctx: Context, strategy: str | None) -> CallToolResult:
        run = LiveRun(orchestrator, task, strategy)
        stop = asyncio.ensure_future(stopping.wait())
        stop.add_done_callback(lambda _: run.cancel())
        try:
            sent, total, chosen = 0, None, ""
            async for event in run:
                if isinstance(event, RunStarted):
                    chosen = event.strategy  # parallel and sequential: one step per agent
                    total = None if chosen == "consensus" else float(len(event.agents))
                elif note := progress_note(event, chosen):
                    sent += 1
                    await ctx.report_progress(sent, total, note)
            result = await run.result()
        except asyncio.CancelledError:
            if not stopping.is_set():
                raise
            raise ToolError("the team failed: the server is stopping") from None
        except MassGenError as e:
            raise ToolError(f"the team failed: {short_error(e)}") from None
        except Exception as e:  # a bug of ours: the reason, never a traceback
            raise ToolError(f"the team failed: internal error ({type(e).__name__})") from None
        finally:
            stop.cancel()
            await run.stopped()  # nothing is left running when the call ends (or is cancelled)
        summary = summarize(result, len(orchestrator.seats()))
        return CallToolResult(
            content=[TextContent(type="text", text=result.final_answer)],
            structured_content=summary,
        )

    tool = Tool.from_function(ask_team)
    schema = tool.parameters  # `task` has a default for the SDK only: a missing one is ours
    schema["properties"]["task"] = {"title": "Task", "type": "string"}
    schema["required"] = ["task"]
    from massgen import __version__

    instructions = "ask_team(task, strategy?) puts a question to this team of models."
    return MCPServer(
        name, version=__version__, instructions=instructions, log_level="WARNING", tools=[tool]
    )


def progress_note(event: Event, strategy: str) -> str | None:
    """What a client is told of ``event`` in a run of ``strategy``, if anything: a consensus
    round's votes; an agent's answer or step, or its failure, in the other strategies."""
    if isinstance(event, RoundDone):
        return round_note(event)
    if strategy == "consensus" or not isinstance(event, AgentAnswered | AgentFailedEvent):
        return None
    if isinstance(event, AgentFailedEvent):
        return f"{event.agent} failed: {event.error}" if event.dropped else None
    by = f" (by {event.answered_by})" if event.answered_by else ""
    if event.phase == "step":
        return f"step {event.round}: {event.agent} done{by}"
    did = "aggregated the answers" if event.phase == "aggregate" else "answered"
    return f"{event.agent} {did}{by}"


def stdin_relay() -> Callable[[], None]:
    """Make fd 0 a pipe a thread of ours fills from the real stdin, and return what ends it.

    The SDK reads stdin in a worker thread it cannot cancel, so a stop while the client keeps
    stdin open would wait for the client (modelcontextprotocol/python-sdk#3551). Ending the
    pipe instead (its write end becomes /dev/null: no descriptor is freed under the thread)
    gives that read the end of input."""
    real, (read, write) = os.dup(0), os.pipe()
    os.dup2(read, 0)
    os.close(read)

    def end() -> None:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, write, inheritable=False)
        os.close(null)

    def relay() -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(real, 65536):
                while chunk:
                    chunk = chunk[os.write(write, chunk) :]
        end()

    threading.Thread(target=relay, name="massgen-mcp-stdin", daemon=True).start()
    return end


async def serve(server: Any, port: int | None, host: str) -> None:
    """Serve over stdio, or streamable HTTP on ``host:port`` (0: a free port, told on
    stderr). Cancelled, it stops: uvicorn is told to exit and is waited for."""
    if port is None:
        end = stdin_relay()
        running = asyncio.ensure_future(server.run_stdio_async())
        try:
            try:
                await asyncio.shield(running)
            except* BrokenPipeError:  # a client that died: what was left to tell it has no reader
                pass
        except asyncio.CancelledError:
            end()  # its read sees the end of input: the SDK's server stops
            await asyncio.gather(running, return_exceptions=True)
            raise
        finally:
            end()
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
