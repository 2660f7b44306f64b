"""MCP servers' tools as massgen tools (docs/tools.md, "MCP servers"). One ``tools:`` entry,
``{use: mcp, command: ...}`` (stdio) or ``{use: mcp, url: ...}`` (streamable HTTP), gives an
agent every tool of that server, through the official ``mcp`` SDK (imported only when a server
starts). The server starts on first use, its tools are listed once, it is restarted once if it
dies (or did not start: then not tried again in that run), and :meth:`McpServer.aclose` (the
orchestrator's ``aclose``) stops it."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import Field, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from massgen.config.models import Headers
from massgen.errors import ConfigError, ToolError
from massgen.redact import redact_url
from massgen.tools.base import BuiltinTool, Tool, ToolSettings
from massgen.tools.context import ToolContext
from massgen.tools.images import ToolOutput
from massgen.types import Image, ToolSpec

log = logging.getLogger("massgen.tools")


class McpSettings(ToolSettings):
    command: str | None = None  # stdio: the program to start
    args: list[str] = Field(default_factory=list)
    env: dict[str, SecretStr] = Field(default_factory=dict)  # over a minimal environment
    cwd: str | None = None  # relative to the config file; default: its folder
    url: str | None = None  # streamable HTTP endpoint
    headers: Headers = Field(default_factory=dict)  # never shown or logged
    include: list[str] | None = None  # the server's tool names to offer (None: all)
    exclude: list[str] = Field(default_factory=list)
    prefix: str | None = None  # before each tool's name; None: the entry's name and "_"
    start_timeout: float = Field(default=60.0, gt=0)  # seconds to start and list the tools

    @model_validator(mode="after")
    def _one_transport(self) -> McpSettings:
        stdio = {"args": self.args, "env": self.env, "cwd": self.cwd}
        if (self.command is None) == (self.url is None):
            raise PydanticCustomError("mcp", "give `command` (stdio) or `url` (HTTP), one of them")
        if self.url is not None and (wrong := next((k for k, v in stdio.items() if v), None)):
            raise PydanticCustomError("mcp", f"`{wrong}` is for `command` servers, not `url`")
        if self.command is not None and self.headers:
            raise PydanticCustomError("mcp", "`headers` is for `url` servers, not `command`")
        if self.url is not None and not re.match(r"https?://", self.url):
            raise PydanticCustomError("mcp", "`url` must start with http:// or https://")
        return self


class McpServer(BuiltinTool[McpSettings]):
    """Stands for every tool of one MCP server (a group: see :meth:`Tool.expand`)."""

    name = "mcp"
    group = True

    def setup(self) -> None:
        if importlib.util.find_spec("mcp") is None:
            why = "MCP servers need the `mcp` package, which is not installed"
            raise ConfigError(why, key="use", hint="pip install 'massgen[mcp]'")
        self._client: Any = None  # the SDK's Client while the server runs
        self._holder: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tools: list[McpTool] | None = None
        self._stderr: IO[str] | None = None
        self._refused = ""  # the HTTP status a `url` server last refused a request with
        self.starts = 0
        self.lost = 0  # times it died: restarted after the first, gone after the second
        self._failed: dict[str, list[str]] = {}  # run -> why its starts in it failed ("": no
        # run, e.g. a ToolBox of your own: until aclose)

    @property
    def description(self) -> str:
        return "the tools of an MCP server"

    @description.setter
    def description(self, value: str) -> None:
        why = "an MCP server's tools keep their own descriptions"
        raise ConfigError(why, key="description", hint="remove it")

    @property
    def label(self) -> str:
        s = self.settings
        where = redact_url(s.url) if s.url else Path(s.command or "").name
        return f"MCP server {self.name!r} ({where})"

    async def expand(self, ctx: ToolContext | None = None) -> Sequence[Tool]:
        """Start the server (first use) and its tools, listed once, filtered and named."""
        async with self._lock:
            if self._tools is None:
                listed = await self._start_in(ctx.run if ctx else "")
                self._tools = self._select(listed)
        return self._tools

    async def _start_in(self, run: str) -> list[Any]:
        """:meth:`_start` for a turn of ``run``, unless it failed twice in that run: a server
        that did not start is tried once more (the one restart), then not again in the run,
        so its other turns neither wait for it nor warn again (the next run tries again)."""
        failed = self._failed.get(run, [])
        if len(failed) >= 2:
            why = f"{self.label} did not start{failed[-1]} (twice in this run)"
            raise ToolError(f"{why}; it is not tried again until the next run")
        try:
            return await self._start()
        except ToolError as e:
            line, _, more = str(e).partition("\n")
            failed = self._failed[run] = [*failed, line.removeprefix(f"{self.label} did not start")]
            while len(self._failed) > 64:  # a long-lived orchestrator's runs: the last ones
                del self._failed[next(iter(self._failed))]
            tail = self._tail()  # its reason, which a run's one-line failure leaves out
            if len(failed) < 2:
                if tail:
                    log.warning("%s did not start%s", self.label, tail)
                raise
            log.warning("%s did not start again: not tried again in this run%s", self.label, tail)
            more = f"\n{more}" if more else ""
            raise ToolError(f"{line}; it is not tried again in this run{more}") from None

    def _select(self, listed: list[Any]) -> list[McpTool]:
        s, names = self.settings, [t.name for t in listed]
        for key in ("include", "exclude"):
            unknown = [n for n in getattr(s, key) or () if n not in names]
            if unknown:
                raise ConfigError(
                    f"{self.label} has no tool {', '.join(map(repr, unknown))}",
                    file=self.source[0],
                    line=self.source[1],
                    key=f"tools.{self.name}.{key}",
                    hint=f"its tools: {', '.join(names)}",
                )
        prefix = f"{self.name}_" if s.prefix is None else s.prefix
        made: dict[str, McpTool] = {}
        for t in listed:
            if (s.include is not None and t.name not in s.include) or t.name in s.exclude:
                continue
            name = re.sub(r"[^A-Za-z0-9_-]", "_", prefix + t.name)[:64]
            name = name if re.match(r"[A-Za-z_]", name) else f"_{name[:63]}"
            if name in made:
                why = f"{self.label}: two tools are named {name!r} once made valid names"
                hint = "leave one out with `exclude:`"
                file, line = self.source
                raise ConfigError(
                    why, file=file, line=line, key=f"tools.{self.name}.exclude", hint=hint
                )
            schema = {k: v for k, v in t.input_schema.items() if k not in ("$schema", "title")}
            schema.setdefault("type", "object")
            schema.setdefault("properties", {})
            about = t.description or getattr(t, "title", None) or t.name
            made[name] = McpTool(self, t.name, name, about, schema)
        return list(made.values())

    async def _start(self) -> list[Any]:
        """Start the server in a task of its own (the SDK's context must be left from the task
        that entered it) and return its tools; a ToolError if it does not come up in time."""
        self._check_command()
        self.starts, self._refused = self.starts + 1, ""
        if self.settings.command is not None:  # this start's stderr, for reports
            if self._stderr is not None:
                self._stderr.close()
            # kept open while the server lives; closed by the next start or aclose
            self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        ready: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._holder = asyncio.create_task(self._hold(ready), name=f"mcp:{self.name}")
        try:
            async with asyncio.timeout(self.settings.start_timeout):
                return await asyncio.shield(ready)
        except BaseException as e:
            await self._shutdown()
            if ready.done() and not ready.cancelled():
                ready.exception()  # retrieved: it is reported below
            if not isinstance(e, Exception):
                raise
            why = f" within {self.settings.start_timeout:g}s" if isinstance(e, TimeoutError) else ""
            why = why or f": {self._refused}{self._why(e)}"  # the SDK tells no HTTP status
            raise ToolError(f"{self.label} did not start{why}{self._tail()}") from None

    async def _hold(self, ready: asyncio.Future[list[Any]]) -> None:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters, stdio_client
        from mcp.client.streamable_http import streamable_http_client

        s = self.settings
        try:
            async with contextlib.AsyncExitStack() as stack:
                if s.url is not None:
                    import httpx2

                    headers = {k: v.get_secret_value() for k, v in s.headers.items()}
                    timeout = httpx2.Timeout(30.0, read=300.0)
                    hooks = {"response": [self._note_refusal]}
                    http = httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks=hooks)
                    await stack.enter_async_context(http)
                    transport: Any = streamable_http_client(s.url, http_client=http)
                else:
                    params = StdioServerParameters(
                        command=s.command or "",
                        args=s.args,
                        env={k: v.get_secret_value() for k, v in s.env.items()},
                        cwd=self._cwd(),
                    )
                    transport = stdio_client(params, errlog=self._stderr)  # type: ignore[arg-type]
                client = await stack.enter_async_context(Client(transport))
                listed, cursor = [], None
                for _ in range(100):  # pages at most
                    page = await client.list_tools(cursor=cursor)
                    listed += page.tools
                    if (cursor := page.next_cursor) is None:
                        break
                self._client = client
                if not ready.done():
                    ready.set_result(listed)
                await self._stop.wait()
        except Exception as e:
            if not ready.done():
                ready.set_exception(e)
            else:
                log.debug("%s: closing failed: %s", self.label, self._why(e))
        finally:
            self._client = None

    def _cwd(self) -> Path | None:
        cwd = Path(self.settings.cwd) if self.settings.cwd else None
        if self.base_dir is not None and not (cwd and cwd.is_absolute()):
            cwd = self.base_dir / cwd if cwd else self.base_dir
        return cwd

    def _check_command(self) -> None:
        """A located config error for a ``command`` that is not there, where the server
        would be looked for (its PATH, or its folder), rather than the OS's "No such file"."""
        command = self.settings.command
        if command is None:
            return
        path = self.settings.env.get("PATH")  # else massgen's own, which the server gets
        if "/" in command:  # a path, from the server's folder
            found = shutil.which(str((self._cwd() or Path.cwd()) / command))
        else:
            found = shutil.which(command, path=path.get_secret_value() if path else None)
        if found is None:
            raise ConfigError(
                f"{self.label}: no program {command!r} found",
                file=self.source[0],
                line=self.source[1],
                key=f"tools.{self.name}.command",
                hint="install it, or give its full path",
            )

    async def _note_refusal(self, response: Any) -> None:
        """Keep a refused request's status (not a GET's: a server need not offer its stream)."""
        if response.status_code >= 400 and response.request.method == "POST":
            self._refused = f"HTTP {response.status_code} {response.reason_phrase}".strip() + "; "

    async def _shutdown(self) -> None:
        holder, self._holder = self._holder, None
        if holder is not None and holder.get_loop() is asyncio.get_running_loop():
            self._stop.set()
            if not holder.done() and self._client is None:
                holder.cancel()  # still starting
            await asyncio.gather(holder, return_exceptions=True)

    async def call(
        self, tool: str, arguments: dict[str, Any], ctx: ToolContext | None = None
    ) -> str | ToolOutput:
        """Call ``tool``; its result (text, images), an error result or a lost server as
        ToolError."""
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED
        from pydantic import ValidationError

        async with self._lock:
            if self._client is None:  # closed (aclose, a finished event loop) or lost
                if self.lost >= 2:
                    raise ToolError(f"{self.label} stopped again after its restart; it is gone")
                if self.lost:
                    log.warning("%s: restarting it (once)", self.label)
                await self._start_in(ctx.run if ctx else "")
            client = self._client
        try:
            result = await client.call_tool(tool, arguments)
        except MCPError as e:
            if e.code != CONNECTION_CLOSED:
                raise ToolError(f"MCP error {e.code}: {e.message}") from None
            raise ToolError(await self._lost(client, e)) from None
        except ValidationError:
            raise ToolError(f"{self.label} sent an answer that is not valid MCP") from None
        except Exception as e:  # the transport failed: the connection is gone
            raise ToolError(await self._lost(client, e)) from None
        return render(result)

    async def _lost(self, client: Any, error: BaseException) -> str:
        async with self._lock:
            if self._client is client:  # the first call to notice
                self.lost += 1
                await self._shutdown()
                again = "restarted once" if self.lost < 2 else "not restarted again"
                log.warning("%s stopped (%s); it will be %s", self.label, self._why(error), again)
        what = "restarted for the next call" if self.lost < 2 else "not restarted again"
        return (
            f"{self.label} stopped during the call ({self._why(error)}); it is {what}{self._tail()}"
        )

    def _tail(self) -> str:
        """The end of the server's stderr, secrets masked."""
        if self._stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            text = self._mask(self._stderr.read()[-400:].strip())
            return f"\nits stderr ends with:\n{text}" if text else ""
        return ""

    def _why(self, error: BaseException) -> str:
        while isinstance(error, BaseExceptionGroup) and error.exceptions:
            error = error.exceptions[0]  # the SDK's task groups wrap what went wrong
        return self._mask(f"{type(error).__name__}: {error}"[:300])

    def _mask(self, text: str) -> str:
        """``text`` with the values of ``env`` and ``headers`` (secrets) masked."""
        s = self.settings
        for secret in (v.get_secret_value() for v in (*s.env.values(), *s.headers.values())):
            text = text.replace(secret, "***") if len(secret) > 3 else text
        return text

    async def aclose(self) -> None:
        async with self._lock:
            await self._shutdown()
            self._failed.clear()  # the next use (a new run) may start it again
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None


class McpTool(Tool):
    """One tool of an MCP server: its schema as the server gives it, calls sent to it."""

    def __init__(
        self, server: McpServer, remote: str, name: str, about: str, schema: dict[str, Any]
    ) -> None:
        self.server, self.remote, self.name, self.schema = server, remote, name, schema
        self.description = about
        self.timeout, self.max_output = server.timeout, server.max_output

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.schema)

    async def run(
        self, arguments: Mapping[str, Any], ctx: ToolContext | None = None
    ) -> str | ToolOutput:
        return await self.server.call(self.remote, dict(arguments), ctx)


def render(result: Any) -> str | ToolOutput:
    """A CallToolResult as text (with its images, if any): text joined, structured content
    as JSON, other content as a short note; an ``isError`` result raises ToolError."""
    parts: list[str | Image] = []
    for block in result.content:
        kind = block.type
        if kind == "text":
            parts.append(block.text)
        elif kind == "image":
            parts.append(Image(block.mime_type, block.data))
        elif kind == "audio":
            size = Image(block.mime_type, block.data).size
            parts.append(f"[audio {block.mime_type}, {size} bytes: not shown to the model]")
        elif kind == "resource" and isinstance(text := getattr(block.resource, "text", None), str):
            parts.append(text)
        elif kind in ("resource", "resource_link"):
            uri = block.uri if kind == "resource_link" else block.resource.uri
            parts.append(f"[{kind.replace('_', ' ')} {uri}: not shown to the model]")
    texts = [p for p in parts if isinstance(p, str)]
    data = result.structured_content
    if data is not None and not any(_same(p, data) for p in texts):
        parts.append(json.dumps(data, ensure_ascii=False, default=str))
    if result.is_error:
        raise ToolError("\n".join(texts)[:2000] or "the MCP tool reported an error")
    if any(isinstance(p, Image) for p in parts):
        return ToolOutput(tuple(parts))
    return "\n".join(map(str, parts))


def _same(text: str, data: Any) -> bool:
    """Whether ``text`` already says ``data`` (servers send structured content as text too,
    often the lone value of a one-key object: ``{"result": ...}``, ``{"content": ...}``)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = text
    lone = list(data.values()) if isinstance(data, dict) and len(data) == 1 else []
    return any(d in (parsed, text) for d in (data, *lone))
