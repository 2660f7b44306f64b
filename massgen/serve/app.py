"""The HTTP side of ``massgen serve`` on aiohttp's server: routes, bearer keys, limits, CORS,
errors in OpenAI's format, and a lifecycle that finishes runs in flight before it stops.

Routes: ``POST /v1/chat/completions`` (plain, or ``stream: true`` as server-sent
``chat.completion.chunk``s with each round as an SSE comment), ``POST /v1/responses``
(text in, text out; ``stream: true`` as the Responses API's events, each round a comment),
``GET /v1/models[/{id}]``, ``GET /healthz``, and the dashboard's (its own,
massgen/serve/board.py). A run's errors: 400 a bad request, 401 no or a wrong key, 404 an
unknown model, 413 a body over the limit, 429 every run slot taken (with Retry-After), 503
the team failed (every agent did) or the server is stopping, 504 over the timeout."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from massgen.errors import ConfigError, ContextLimitExceeded, MassGenError
from massgen.events import AgentAnswered, AgentFailedEvent, RoundDone, RunStarted, short_error
from massgen.serve import openai_wire as wire
from massgen.serve.runs import LiveRun, round_note, summarize

if TYPE_CHECKING:
    from massgen.result import RunResult
    from massgen.serve.board import Board
    from massgen.serve.teams import Team

log = logging.getLogger("massgen.serve")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = ("/healthz",)
KEY_COOKIE = "massgen_key"  # the dashboard's key in a browser: set by ``GET /?key=KEY``
"""Paths answered without a key (a load balancer's probe)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What one server takes on. ``timeout``: seconds a run may take (``None``: no limit);
    ``grace``: seconds runs in flight get to finish once the server is told to stop."""

    max_body: int = 1 << 20
    concurrency: int = 64
    timeout: float | None = 600.0
    grace: float = 30.0
    retry_after: int = 1


@dataclass(eq=False, kw_only=True)
class Served:
    """The state behind the routes: the teams by name, the keys, the dashboard."""

    teams: dict[str, Team]
    board: Board
    keys: Sequence[str] = ()
    limits: Limits = field(default_factory=Limits)
    cors: Sequence[str] = ()
    started: int = field(default_factory=lambda: int(time.time()))
    in_flight: int = 0
    stopping: bool = False


def error(
    status: int, message: str, kind: str, code: str | None = None, **more: Any
) -> web.Response:
    """An error response in OpenAI's format; ``headers=`` and ``param=`` as given."""
    headers = more.pop("headers", None)
    body = wire.error_body(message, kind, code, more.pop("param", None))
    return web.json_response(body, status=status, headers=headers)


KINDS = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}


def failure(e: BaseException, seats: int) -> web.Response:
    """A run's error as a response: 400 what the request asked cannot be done, 504 the
    team's own timeout, 503 the team failed, 500 a bug of ours (logged)."""
    if isinstance(e, ContextLimitExceeded):
        return error(400, short_error(e), "invalid_request_error", "context_length_exceeded")
    if isinstance(e, ConfigError):
        return error(400, e.message, "invalid_request_error", param=e.key)
    if isinstance(e, MassGenError):
        cause = e.__cause__
        if isinstance(cause, TimeoutError) and not isinstance(cause, MassGenError):
            return error(504, short_error(e), "timeout", "timeout")
        result: RunResult | None = getattr(e, "result", None)
        every = result is not None and seats > 0 and len(result.failed_agents) >= seats
        code = "all_agents_failed" if every else "team_failed"
        return error(503, f"the team failed: {short_error(e)}", "server_error", code)
    log.error("internal error in a run", exc_info=e)
    return error(500, f"internal error ({type(e).__name__})", "server_error")


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (no route, wrong method, body too large) in OpenAI's format."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        kind = KINDS.get(e.status, "invalid_request_error" if e.status < 500 else "server_error")
        return error(
            e.status,
            e.reason,
            kind,
            headers={"Allow": e.headers["Allow"]} if "Allow" in e.headers else None,
        )


def middlewares(served: Served) -> list[Any]:
    """CORS (only for the origins given), then keys (all but OPEN_PATHS), then errors."""
    keys = [k.encode() for k in served.keys]

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed = origin is not None and ("*" in served.cors or origin in served.cors)
        if allowed and request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if allowed and origin is not None and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
                response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        return response

    def valid(given: str) -> bool:
        found = False
        for key in keys:  # every key compared, in constant time each
            found |= hmac.compare_digest(given.encode(), key)
        return found

    @web.middleware
    async def bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        if keys and request.path not in OPEN_PATHS:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            ok = scheme.lower() == "bearer" and valid(token.strip())
            # A browser cannot send a bearer header: the dashboard's pages (GET only, so no
            # cross-site write rides on the cookie) take the key once in the URL, then a cookie.
            page = request.path == "/" or request.path.startswith("/dashboard/")
            if not ok and page and request.method == "GET":
                if valid(given := request.query.get("key", "")):
                    moved = web.Response(status=303, headers={"Location": "/"})  # off the URL
                    moved.set_cookie(KEY_COOKIE, given, httponly=True, samesite="Strict")
                    return moved
                ok = valid(request.cookies.get(KEY_COOKIE, ""))
            if not ok:
                return error(
                    401,
                    "a valid API key is needed: Authorization: Bearer KEY",
                    "authentication_error",
                    "invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await handler(request)

    return [*([cors] if served.cors else []), bearer, openai_errors]


async def read_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise ConfigError("the body is not JSON", key="body") from None


def routes(served: Served) -> list[web.RouteDef]:
    limits = served.limits

    def models() -> list[dict[str, Any]]:
        return [
            {"id": m, "object": "model", "created": served.started, "owned_by": "massgen"}
            for n in served.teams
            for m in wire.model_ids(n)
        ]

    def late() -> web.Response:
        return error(504, f"the run took longer than {limits.timeout:g} s", "timeout", "timeout")

    async def list_models(request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": models()})

    async def one_model(request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["model"]
        found = [m for m in models() if m["id"] == wanted]
        if not found:
            return error(
                404,
                f"the model {wanted!r} does not exist",
                "invalid_request_error",
                "model_not_found",
                param="model",
            )
        return web.json_response(found[0])

    async def healthz(request: web.Request) -> web.StreamResponse:
        status = "stopping" if served.stopping else "ok"
        body = {"status": status, "in_flight": served.in_flight, "teams": sorted(served.teams)}
        return web.json_response(body, status=503 if served.stopping else 200)

    async def ask(
        request: web.Request,
        parse: Callable[[Any], wire.Ask],
        shape: Callable[..., dict[str, Any]],
        events: type[wire.ResponseEvents] | None = None,
    ) -> web.StreamResponse:
        """Run the asked team; ``events``: how a stream is told (none: as chat chunks)."""
        try:
            asked = parse(await read_body(request))
        except ConfigError as e:
            return error(400, e.message, "invalid_request_error", param=e.key)
        team = served.teams.get(asked.team)
        if team is None:
            known = ", ".join(wire.PREFIX + n for n in served.teams)
            message = f"the model {asked.model!r} does not exist; this server has {known}"
            return error(404, message, "invalid_request_error", "model_not_found", param="model")
        if served.stopping:
            return error(503, "the server is stopping", "server_error", "stopping")
        if served.in_flight >= limits.concurrency:
            return error(
                429,
                f"all {limits.concurrency} run slots are taken; retry later",
                "rate_limit_error",
                "too_many_runs",
                headers={"Retry-After": str(limits.retry_after)},
            )
        served.in_flight += 1
        try:
            async with team.use(asked.session) as orchestrator:
                mine = [served.board.subscriber(team.name, asked.model)]
                if not asked.stream:
                    run = orchestrator.arun(asked.task, asked.strategy, subscribers=mine)
                    return await whole(asked, run, team, shape)
                live = LiveRun(orchestrator, asked.task, asked.strategy, subscribers=mine)
                try:
                    told = events(asked) if events is not None else None
                    return await stream(request, asked, live, team, told)
                finally:
                    await live.stopped()  # a disconnect or a timeout cancels the run
        finally:
            served.in_flight -= 1

    async def whole(
        asked: wire.Ask,
        run: Awaitable[RunResult],
        team: Team,
        shape: Callable[..., dict[str, Any]],
    ) -> web.StreamResponse:
        """The run awaited in the request's own task (no task, queue or events of its own:
        the CPU a run costs is what ``massgen serve`` can take at once); a disconnect or the
        timeout cancels it there."""
        deadline = asyncio.timeout(limits.timeout)
        try:
            async with deadline:
                result = await run
        except Exception as e:
            return late() if deadline.expired() else failure(e, team.seats())
        return web.json_response(shape(asked, result, extra(result, team)))

    async def stream(
        request: web.Request,
        asked: wire.Ask,
        run: LiveRun,
        team: Team,
        events: wire.ResponseEvents | None,
    ) -> web.StreamResponse:
        """The run's progress as SSE comments, then its answer (or error) as chat chunks
        ending with ``[DONE]``, or, with ``events``, as the Responses API's events."""
        sse = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await sse.prepare(request)
        await sse.write(b": massgen: the team is working\n\n")

        async def send(pieces: list[dict[str, Any]]) -> None:
            for piece in pieces:
                named = f"event: {piece['type']}\n" if events is not None else ""
                data = json.dumps(piece, ensure_ascii=False)
                await sse.write(f"{named}data: {data}\n\n".encode())

        deadline = asyncio.timeout(limits.timeout)
        failed: web.Response | None = None
        try:
            async with deadline:
                async for event in run:
                    if events is not None and isinstance(event, RunStarted):
                        await send(events.opened(event.run_id, event.at))
                    if (note := progress(event)) is not None:
                        await sse.write(f": {note}\n\n".encode())
                result = await run.result()
        except ConnectionError:  # the client went away; the caller cancels the run
            return sse
        except Exception as e:
            failed = late() if deadline.expired() else failure(e, team.seats())
        if failed is not None:  # the status is sent (200): the error goes in the stream
            assert isinstance(failed.body, bytes)
            if events is not None:
                await send(events.failed(json.loads(failed.body)["error"]))
            else:
                await sse.write(b"data: " + failed.body + b"\n\n")
        elif events is not None:
            await send(events.answered(result, extra(result, team)))
        else:
            await send(list(wire.answer_chunks(asked, result, extra(result, team))))
            await sse.write(b"data: [DONE]\n\n")
        await sse.write_eof()
        return sse

    async def chat(request: web.Request) -> web.StreamResponse:
        return await ask(request, wire.parse_chat, wire.completion)

    async def responses(request: web.Request) -> web.StreamResponse:
        return await ask(request, wire.parse_response_request, wire.response, wire.ResponseEvents)

    return [
        web.get("/healthz", healthz),
        web.get("/v1/models", list_models),
        web.get("/v1/models/{model:.+}", one_model),
        web.post("/v1/chat/completions", chat),
        web.post("/v1/responses", responses),
    ]


def progress(event: Any) -> str | None:
    """An event worth an SSE comment: each agent's answer or failure, each round."""
    if isinstance(event, RoundDone):
        return round_note(event)
    if isinstance(event, AgentAnswered):
        return f"{event.agent} answered ({event.phase}, round {event.round})"
    if isinstance(event, AgentFailedEvent):
        return f"{event.agent} failed"
    return None


def extra(result: RunResult, team: Team) -> dict[str, Any]:
    """The ``massgen`` field: what the team decided, and each agent's last answer."""
    return {
        "team": team.name,
        "run_id": result.run_id,
        **summarize(result, team.seats()),
        "answers": result.latest_answers(),
        "failed": dict(result.failed_agents),
    }


def build(served: Served) -> web.Application:
    """The application: our routes, then the dashboard's (it owns ``/``)."""
    app = web.Application(client_max_size=served.limits.max_body, middlewares=middlewares(served))
    app.add_routes(routes(served))
    app.add_routes(served.board.routes())
    return app


async def serve(
    served: Served,
    host: str,
    port: int,
    stop: Awaitable[Any],
    *,
    told: Callable[[str], None],
    access: logging.Logger | None,
) -> None:
    """Listen on ``host:port`` until ``stop`` completes; then refuse new runs, let those in
    flight finish for up to ``grace`` seconds (the rest are cancelled) and close."""
    runner = web.AppRunner(
        build(served),
        handler_cancellation=True,  # a client that goes away cancels its run
        shutdown_timeout=served.limits.grace,
        access_log=access,
        access_log_format='%a "%r" %s %b %Tfs',
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as e:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {e.strerror}", key="--port"
            ) from None
        models = ", ".join(wire.PREFIX + n for n in served.teams)
        told(f"massgen serve: serving {models} on {site.name}")
        await stop
        served.stopping = True
        await site.stop()  # new connections are refused from here on
        told(
            f"massgen serve: stopping; {served.in_flight} runs in flight"
            f" get {served.limits.grace:g} s"
        )
    finally:
        await runner.cleanup()
        await served.board.aclose()
