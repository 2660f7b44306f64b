"""The live dashboard: each run folded from its events (every agent's streamed text, the round,
the votes, the winner), the latest finished runs and, with Redis, the workers' registry; served
as one page (``GET /``) fed by server-sent events.

A browser never makes a queue grow: each one holds only *which* runs changed since it was last
written to, and then gets their latest state, at most ``1 / interval`` times a second. Token
deltas are folded into a run's state (the end of each agent's text), never queued."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web

from massgen import events as ev
from massgen.display.plain import ViewState
from massgen.errors import MassGenError

log = logging.getLogger(__name__)
TEXT_KEPT = 4_000  # characters of a task, an answer or a note that a browser is sent
_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # a proxy in front (nginx) must not hold the stream back
}


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_KEPT else text[: TEXT_KEPT - 1] + "…"


@dataclass(slots=True)
class _Run:
    """One run as the page shows it; ``text`` is its JSON, made once per change."""

    key: str
    team: str
    model: str
    view: ViewState = field(default_factory=ViewState)
    run_id: str = ""
    task: str = ""
    started: float = field(default_factory=time.time)
    status: str = "running"
    cost: float = 0.0
    duration: float | None = None
    rounds: int = 0
    agreement: float | None = None
    error: str | None = None
    text: str | None = None

    def apply(self, e: ev.Event) -> None:
        self.view.apply(e)
        self.text = None
        match e:
            case ev.RunStarted():
                self.run_id, self.task, self.started = e.run_id, e.task, e.at
            case ev.AgentAnswered():
                self.cost += e.cost
            case ev.RunEnded():
                r = e.result
                self.status, self.cost, self.duration = r.status, r.cost, r.duration
                self.rounds, self.error = r.rounds, r.error
                self.agreement = r.agreement(len(self.view.rows))

    def as_dict(self) -> dict[str, Any]:
        view, final = self.view, self.view.final
        agents = [
            {
                "name": row.name,
                "status": row.status,
                "phase": row.phase,
                "text": _cut(row.text or row.answer),  # while it reviews: its answer
                "streaming": bool(row.pending and row.text),
                "note": _cut(row.note),
                "tokens": row.token_estimate,
                "cost": row.cost,
            }
            for row in view.rows.values()
        ]
        return {
            "key": self.key,
            "team": self.team,
            "model": self.model,
            "run_id": self.run_id,
            "task": _cut(self.task),
            "strategy": view.strategy,
            "live": self.duration is None,
            "status": self.status,
            "round": view.round,
            "rounds": self.rounds,
            "started": self.started,
            "duration": self.duration,
            "cost": self.cost,
            "agents": agents,
            "votes": dict(view.votes),
            "leader": view.leader,
            "winner": final.winner if final else None,
            "final": _cut(final.text) if final else "",
            "agreement": self.agreement,
            "error": self.error,
        }

    def frame(self) -> str:
        if self.text is None:
            self.text = _frame("run", self.as_dict())
        return self.text


def _frame(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@dataclass(eq=False, slots=True)
class _Client:
    """One browser's stream: the runs changed since its last write, and a wake-up."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dirty: set[str] = field(default_factory=set)
    registry_at: float = 0.0


class _Subscriber:
    """One run's subscriber. It asks for token deltas only if a browser watches as the run
    starts: a run nobody watches is not streamed for the board's sake (its answers still
    show when they come)."""

    def __init__(self, board: Board, team: str, run_model: str) -> None:
        self.board, self.team, self.run_model = board, team, run_model
        self.run: _Run | None = None

    @property
    def wants_deltas(self) -> bool:
        return bool(self.board._clients)

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.RunStarted):
            self.run = self.board._started(self.team, self.run_model)
        if self.run is None:
            return
        self.run.apply(e)
        self.board._changed(self.run.key)
        if isinstance(e, ev.RunEnded):
            self.board._ended(self.run)


class Board:
    """The dashboard of one process. Give each run :meth:`subscriber`; mount :meth:`routes`
    on an ``aiohttp.web.Application``; call :meth:`aclose` when shutting down (in the app's
    ``on_shutdown``: open event streams end then, so the server need not wait for them).

    ``redis_url``, ``prefix``: the bus whose registry of workers the page shows (read every
    ``registry_every`` seconds while someone looks). ``keep``: finished runs kept.
    ``heartbeat``: seconds of silence after which a stream gets a comment (proxies close
    idle connections). ``interval``: the least time between two writes to one stream.
    ``runs=False``: the page shows only the registry (``massgen dashboard``: it runs nothing)."""

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        prefix: str | None = None,
        keep: int = 50,
        heartbeat: float = 15.0,
        interval: float = 0.1,
        registry_every: float = 2.0,
        runs: bool = True,
    ) -> None:
        from massgen.distributed.target import BusTarget

        if keep < 0 or interval < 0 or heartbeat <= 0 or registry_every <= 0:
            raise ValueError("keep and interval must be >= 0, heartbeat and registry_every > 0")
        self.keep, self.heartbeat, self.interval = keep, heartbeat, interval
        self.registry_every, self.runs = registry_every, runs
        self.bus = BusTarget.resolve(redis_url, prefix=prefix) if redis_url else None
        self._live: dict[str, _Run] = {}
        self._recent: OrderedDict[str, _Run] = OrderedDict()  # oldest first
        self._clients: set[_Client] = set()
        self._runs = 0
        self._closed = asyncio.Event()
        self._registry: dict[str, Any] | None = None
        self._registry_at = 0.0
        self._registry_lock = asyncio.Lock()
        self._transport: Any = None
        self._page = resources.files(__package__).joinpath("dashboard.html").read_bytes()
        self._csp = _policy(self._page.decode())

    # -- runs -------------------------------------------------------------------------------

    def subscriber(self, team: str, run_model: str) -> ev.Subscriber:
        """What to pass a run (``arun(..., subscribers=[...])``), on the loop that serves the
        board: it shows the run live, then among the recent ones. ``team``, ``run_model``:
        what the page calls it."""
        return _Subscriber(self, team, run_model)

    def _started(self, team: str, run_model: str) -> _Run:
        self._runs += 1
        run = self._live[str(self._runs)] = _Run(str(self._runs), team, run_model)
        return run

    def _ended(self, run: _Run) -> None:
        self._recent[run.key] = self._live.pop(run.key)
        while len(self._recent) > self.keep:
            self._changed(self._recent.popitem(last=False)[0])

    def _changed(self, key: str) -> None:
        for client in self._clients:
            client.dirty.add(key)
            client.wake.set()

    def _run_frame(self, key: str) -> str:
        run = self._live.get(key) or self._recent.get(key)
        return run.frame() if run is not None else _frame("drop", {"key": key})

    async def state(self) -> dict[str, Any]:
        """What the page shows, as JSON: live runs, recent ones (newest first), the registry."""
        return {
            "live": [run.as_dict() for run in self._live.values()],
            "recent": [run.as_dict() for run in reversed(self._recent.values())],
            "keep": self.keep,
            "runs": self.runs,
            "registry": await self.registry(),
        }

    # -- the registry of workers ------------------------------------------------------------

    async def registry(self) -> dict[str, Any] | None:
        """The workers on Redis (as ``massgen agents list --json`` lists them), read at most
        every ``registry_every`` seconds; ``None`` without Redis. An error is shown, not raised."""
        if self.bus is None:
            return None
        async with self._registry_lock:
            now = time.monotonic()
            if self._registry is not None and now - self._registry_at < self.registry_every:
                return self._registry
            from massgen.distributed.registry import registry_rows
            from massgen.mas import RedisTransport, Signer

            rows: list[dict[str, Any]] = []
            error = None
            try:
                if self._transport is None:
                    transport = RedisTransport(self.bus.url, prefix=self.bus.prefix)
                    await transport.connect()
                    self._transport = transport
                rows = await registry_rows(self._transport, Signer.resolve(self.bus.secret))
            except MassGenError as e:
                error = ev.short_error(e)
                if self._registry is None or self._registry["error"] != error:  # once
                    log.warning("dashboard: the registry at %s: %s", self.bus.where, error)
            where = {"redis": self.bus.where, "prefix": self.bus.prefix}
            self._registry = {**where, "agents": rows, "error": error, "at": time.time()}
            self._registry_at = now
            return self._registry

    # -- HTTP -------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        """``GET /`` (the page), ``/dashboard/state`` (JSON) and ``/dashboard/events`` (SSE)."""
        return [
            web.get("/", self._index),
            web.get("/dashboard/state", self._state),
            web.get("/dashboard/events", self._events),
        ]

    async def _index(self, request: web.Request) -> web.Response:
        headers = {
            "Content-Security-Policy": self._csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }
        return web.Response(
            body=self._page, content_type="text/html", charset="utf-8", headers=headers
        )

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(await self.state(), headers={"Cache-Control": "no-store"})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        client = _Client()
        self._clients.add(client)
        try:
            await response.write(("retry: 2000\n" + _frame("state", await self.state())).encode())
            client.registry_at = written = time.monotonic()
            while not self._closed.is_set():
                wait = (
                    self.heartbeat if self.bus is None else min(self.heartbeat, self.registry_every)
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.wake.wait(), wait)
                if self._closed.is_set():
                    break
                client.wake.clear()
                dirty, client.dirty = client.dirty, set()
                out = [self._run_frame(key) for key in sorted(dirty, key=int)]
                now = time.monotonic()
                if self.bus is not None and now - client.registry_at >= self.registry_every:
                    out.append(_frame("registry", await self.registry()))
                    client.registry_at = now
                if not out and now - written >= self.heartbeat:
                    out.append(": ping\n\n")
                if out:
                    await response.write("".join(out).encode())
                    written = now
                    await asyncio.sleep(self.interval)  # let changes gather: fewer writes
        except ConnectionResetError:  # the browser went away
            pass
        finally:
            self._clients.discard(client)
        return response

    async def aclose(self) -> None:
        """End every open event stream and close the connection to Redis."""
        self._closed.set()
        for client in self._clients:
            client.wake.set()
        if self._transport is not None:
            transport, self._transport = self._transport, None
            await transport.close()


def _policy(page: str) -> str:
    """A Content-Security-Policy that lets only the page's own inline script and style run
    (by their hashes): were some model output ever taken for markup, no script of it runs."""

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
        return " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
            for s in found
        )

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
