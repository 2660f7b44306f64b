"""A fake LLM provider on loopback that speaks the OpenAI (Chat Completions and Responses),
Anthropic and Gemini wire formats.

Backends are tested through the real vendor SDKs against it, and benchmarks measure against it,
so nothing in a test ever talks to a real provider. You script what it answers::

    with ProviderSimulator(latency=0.05) as sim:
        sim.script([Fault(429, retry_after=1), Text("Paris")], match="capital")
        client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x", max_retries=0)
        ...
        assert sim.stats.replies["fault"] == 1

What it answers a request, in order: ``sim.responder(request)`` if set and not ``None``; else
the next reply of the first rule (in the order added) whose ``model`` and ``match`` fit; else a
deterministic ``Text(f"Simulated answer {n} from {model}.")`` with ``n`` the request's number.

Run it as a process (for CLI tests and benchmarks)::

    python -m tests.sim.simulator --port 0 --latency 0.2 [--script rules.json] [--token-arguments]

prints its URL on the first stdout line, serves until SIGTERM/SIGINT, and is scripted and
inspected over HTTP: ``GET /_sim/stats``, ``GET /_sim/requests[?since=N]``,
``POST /_sim/reset`` (``{"rules": true}`` also drops rules), ``POST /_sim/script`` (a rule or
``{"rules": [...], "latency": 0.1, "replace": true}``; rules in :meth:`Rule.from_json` form).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.sim import sim_anthropic, sim_gemini, sim_openai, sim_responses, sim_wire
from tests.sim.sim_http import (
    LAST_CHUNK,
    Exchange,
    HttpRequest,
    HttpServer,
    encode_chunk,
    encode_head,
    encode_response,
)
from tests.sim.sim_rules import Rule
from tests.sim.sim_types import (
    Drop,
    Fault,
    Hang,
    ParsedRequest,
    Reply,
    Searched,
    SimRequest,
    SimStats,
    Text,
    ToolCalls,
    WireProtocol,
    reply_kind,
    tokens_for_chars,
)
from tests.sim.sim_wire import Answer, Call, Wire

HOST = "127.0.0.1"

Responder = Callable[[SimRequest], Reply | None]

_WIRES: Mapping[WireProtocol, Wire] = {
    "openai": sim_openai,
    "anthropic": sim_anthropic,
    "gemini": sim_gemini,
    "responses": sim_responses,
}
_ID_PREFIX: Mapping[WireProtocol, str] = {
    "openai": "chatcmpl-",
    "anthropic": "msg_",
    "gemini": "",
    "responses": "resp_",
}
_AUTH_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie"}
)
_DEFAULT_MESSAGES = {
    400: "Invalid request (simulated).",
    401: "Invalid API key (simulated).",
    403: "Permission denied (simulated).",
    404: "Model not found (simulated).",
    429: "Rate limit exceeded (simulated).",
    500: "Internal server error (simulated).",
    503: "Service unavailable (simulated).",
    529: "Overloaded (simulated).",
}


def route(method: str, path: str) -> WireProtocol | None:
    """Which wire protocol a request path belongs to, if any."""
    if method != "POST":
        return None
    if path in ("/v1/chat/completions", "/chat/completions"):
        return "openai"
    if path in ("/v1/responses", "/responses"):
        return "responses"
    if path in ("/v1/messages", "/messages"):
        return "anthropic"
    if sim_gemini.PATH.match(path):
        return "gemini"
    return None


@dataclass(slots=True)
class _Counters:
    """The mutable tallies behind :class:`SimStats` (guarded by the simulator's lock)."""

    requests: int = 0
    by_protocol: Counter[str] = field(default_factory=Counter)
    by_model: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    max_concurrency: int = 0
    in_flight: int = 0
    connections: int = 0

    def snapshot(self) -> SimStats:
        return SimStats(
            requests=self.requests,
            by_protocol=dict(self.by_protocol),
            by_model=dict(self.by_model),
            replies=dict(self.replies),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            max_concurrency=self.max_concurrency,
            in_flight=self.in_flight,
            connections=self.connections,
        )


class ProviderSimulator:
    """A loopback HTTP server faking three LLM providers; see the module docs.

    It runs its own event loop in a background thread, so it serves sync and async clients
    alike, holds hundreds of slow requests at once and keeps connections alive. All public
    methods are thread-safe.
    """

    def __init__(self, latency: float = 0.0, seed: int = 0, *, port: int = 0) -> None:
        self.latency = latency
        """Seconds every answer waits before its first byte (rules may override it)."""
        self.responder: Responder | None = None
        """Called first with each request; a reply it returns wins over the rules."""
        self._port = port
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._rules: list[Rule] = []
        self._records: list[SimRequest] = []
        self._counters = _Counters()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: HttpServer | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ProviderSimulator:
        """Listen on 127.0.0.1 (a free port unless one was given) and serve in a thread."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        loop = asyncio.new_event_loop()
        self._server = HttpServer(self._handle, self._on_connect)
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="massgen-simulator", daemon=True
        )
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._server.start(HOST, self._port), loop)
        self._port = future.result(timeout=10)
        return self

    def stop(self) -> None:
        """Close every connection (hanging requests too) and stop the thread."""
        loop, thread, server = self._loop, self._thread, self._server
        if loop is None or thread is None or server is None:
            return
        asyncio.run_coroutine_threadsafe(_shutdown(server), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = self._server = None

    def __enter__(self) -> ProviderSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # --- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._thread is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``openai.AsyncOpenAI`` (ends in ``/v1``)."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """``base_url`` for ``anthropic.AsyncAnthropic`` (the SDK adds ``/v1/messages``)."""
        return self.url

    @property
    def gemini_base_url(self) -> str:
        """``http_options.base_url`` for ``google.genai.Client`` (the SDK adds the version)."""
        return self.url

    # --- scripting ---------------------------------------------------------------------------

    def script(
        self,
        replies: Reply | Sequence[Reply],
        *,
        model: str | None = None,
        match: str | re.Pattern[str] | None = None,
        latency: float | None = None,
    ) -> Rule:
        """Add a rule (after the existing ones) and return it; see :class:`Rule`."""
        seq = [replies] if isinstance(replies, Reply) else replies
        return self.add_rule(Rule(seq, model=model, match=match, latency=latency))

    def add_rule(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def load_script(self, data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Rule]:
        """Add rules from their JSON form: one rule, a list, or ``{"rules": [...]}`` with
        optional ``"latency"`` (the new default) and ``"replace": true`` (drop old rules)."""
        if isinstance(data, Mapping) and "rules" not in data:
            data = {"rules": [data]}
        elif not isinstance(data, Mapping):
            data = {"rules": list(data)}
        rules = [Rule.from_json(r) for r in data["rules"]]
        with self._lock:
            if data.get("replace"):
                self._rules.clear()
            self._rules.extend(rules)
            if data.get("latency") is not None:
                self.latency = float(data["latency"])
        return rules

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    # --- observing ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[SimRequest]:
        """Provider requests since the last reset, in arrival order (a copy)."""
        with self._lock:
            return list(self._records)

    @property
    def stats(self) -> SimStats:
        """A snapshot of the counters since the last reset."""
        with self._lock:
            return self._counters.snapshot()

    def reset(self, *, rules: bool = False) -> None:
        """Forget recorded requests and zero the counters (requests in flight stay counted
        in ``in_flight``); with ``rules=True`` drop the rules and the responder too."""
        with self._lock:
            self._records.clear()
            in_flight = self._counters.in_flight
            self._counters = _Counters(in_flight=in_flight, max_concurrency=in_flight)
            if rules:
                self._rules.clear()
                self.responder = None

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[SimRequest]:
        """Block until ``n`` requests arrived since the last reset; ``TimeoutError`` if not
        within ``timeout`` seconds. Returns the requests seen so far."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._records) >= n, timeout):
                raise TimeoutError(f"{len(self._records)} of {n} requests arrived in {timeout}s")
            return list(self._records)

    async def wait_for_requests_async(
        self,
        n: int,
        timeout: float = 5.0,
    ) -> list[SimRequest]:
        """:meth:`wait_for_requests` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_for_requests, n, timeout)

    def wait_until_idle(self, timeout: float = 5.0) -> None:
        """Block until no request is in flight (e.g. after clients gave up on hangs);
        ``TimeoutError`` if that takes longer than ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._counters.in_flight == 0, timeout):
                left = self._counters.in_flight
                raise TimeoutError(f"{left} requests still in flight after {timeout}s")

    async def wait_until_idle_async(self, timeout: float = 5.0) -> None:
        """:meth:`wait_until_idle` without blocking the caller's event loop."""
        await asyncio.to_thread(self.wait_until_idle, timeout)

    def _on_connect(self) -> None:
        with self._lock:
            self._counters.connections += 1

    # --- serving -----------------------------------------------------------------------------

    async def _handle(self, request: HttpRequest, exchange: Exchange) -> None:
        if request.path.startswith("/_sim/"):
            await self._control(request, exchange)
            return
        protocol = route(request.method, request.path)
        if protocol is None:
            body = sim_openai.error_body(404, f"No route for {request.method} {request.path}")
            await exchange.respond(404, body)
            return
        wire = _WIRES[protocol]
        try:
            body = json.loads(request.body)
            parsed = wire.parse(body, request.path)
        except (ValueError, TypeError, AttributeError) as e:
            await exchange.respond(400, wire.error_body(400, f"Invalid request: {e}"))
            return
        record, response_id = self._admit(protocol, request, body, parsed)
        try:
            reply, latency = self._choose(record, parsed)
            if latency > 0:
                await asyncio.sleep(latency)
            payload = await self._answer(wire, record, parsed, reply, response_id, exchange)
        except BaseException:
            self._finish()
            raise
        # Count the request finished before its last bytes go out: a client that sends its
        # next request the moment it has this answer must not find this one still in flight.
        self._finish()
        if payload:
            await exchange.write(payload)

    def _finish(self) -> None:
        with self._lock:
            self._counters.in_flight -= 1
            self._changed.notify_all()

    def _admit(
        self,
        protocol: WireProtocol,
        request: HttpRequest,
        body: Mapping[str, Any],
        parsed: ParsedRequest,
    ) -> tuple[SimRequest, str]:
        """Record and count the request (it is in flight from now on); returns its record
        and a response id."""
        headers = {k: "<redacted>" if k in _AUTH_HEADERS else v for k, v in request.headers.items()}
        with self._lock:
            counters = self._counters
            counters.requests += 1
            record = SimRequest(
                index=counters.requests,
                protocol=protocol,
                path=request.path,
                model=parsed.model,
                stream=parsed.stream,
                system=parsed.system,
                messages=parsed.messages,
                tools=parsed.tools,
                tool_results=parsed.tool_results,
                prompt_tokens=parsed.prompt_tokens,
                body=body,
                headers=headers,
                arrived=time.monotonic(),
            )
            self._records.append(record)
            counters.by_protocol[protocol] += 1
            counters.by_model[parsed.model] += 1
            counters.in_flight += 1
            counters.max_concurrency = max(counters.max_concurrency, counters.in_flight)
            response_id = f"{_ID_PREFIX[protocol]}{self._random.getrandbits(64):016x}"
            self._changed.notify_all()
        return record, response_id

    def _choose(self, record: SimRequest, parsed: ParsedRequest) -> tuple[Reply, float]:
        """The reply and latency for a request: responder, then rules, then the default."""
        responder = self.responder
        reply = responder(record) if responder is not None else None
        latency = self.latency
        with self._lock:
            if reply is None:
                prompt = parsed.prompt_text
                rule = next((r for r in self._rules if r.matches(parsed.model, prompt)), None)
                if rule is not None:
                    reply = rule.take()
                    latency = rule.latency if rule.latency is not None else latency
                else:
                    reply = Text(f"Simulated answer {record.index} from {parsed.model}.")
            self._counters.replies[reply_kind(reply)] += 1
        return reply, latency

    async def _answer(
        self,
        wire: Wire,
        record: SimRequest,
        parsed: ParsedRequest,
        reply: Reply,
        response_id: str,
        exchange: Exchange,
    ) -> bytes | None:
        """The response to send, or ``None`` once a hang or drop has been played out."""
        if isinstance(reply, Fault):
            headers = [(k.lower(), v) for k, v in reply.headers.items()]
            if reply.retry_after is not None:
                headers.append(("retry-after", _seconds(reply.retry_after)))
            message = reply.message or _DEFAULT_MESSAGES.get(reply.status, "Simulated error.")
            return encode_response(
                reply.status, wire.error_body(reply.status, message), _request_id(headers)
            )
        if isinstance(reply, Hang):
            await exchange.wait_disconnected()
            return None
        if isinstance(reply, Drop) and reply.after == "request":
            await exchange.abort()
            return None
        answer = _build_answer(reply, parsed, record, response_id, wire)
        if parsed.stream:
            head = encode_head(
                200,
                [
                    ("content-type", "text/event-stream"),
                    ("cache-control", "no-cache"),
                    ("transfer-encoding", "chunked"),
                    *_request_id([]),
                ],
            )
            chunks = [encode_chunk(event) for event in wire.render_stream(answer)]
            body = b"".join(chunks) + LAST_CHUNK
            cut = b"".join(chunks[: max(1, len(chunks) // 2)])
        else:
            payload = wire.render(answer)
            head = encode_head(
                200,
                [
                    ("content-type", "application/json"),
                    ("content-length", str(len(payload))),
                    *_request_id([]),
                ],
            )
            body, cut = payload, payload[: len(payload) // 2]
        if isinstance(reply, Drop):
            await exchange.abort(head if reply.after == "headers" else head + cut)
            return None
        with self._lock:
            self._counters.prompt_tokens += answer.prompt_tokens
            self._counters.completion_tokens += answer.completion_tokens
        return head + body

    async def _control(self, request: HttpRequest, exchange: Exchange) -> None:
        """The ``/_sim/*`` endpoints that script and inspect a simulator in another process."""
        action = (request.method, request.path)
        try:
            data = json.loads(request.body) if request.body else {}
            if action == ("GET", "/_sim/stats"):
                result: Any = self.stats.to_json()
            elif action == ("GET", "/_sim/requests"):
                since = int(request.query.get("since", "0"))
                result = {"requests": [r.to_json() for r in self.requests[since:]]}
            elif action == ("POST", "/_sim/reset"):
                self.reset(rules=bool(data.get("rules")))
                result = {"ok": True}
            elif action == ("POST", "/_sim/script"):
                rules = self.load_script(data)
                result = {"ok": True, "rules": [r.to_json() for r in rules]}
            elif action == ("GET", "/_sim/rules"):
                result = {"rules": [r.to_json() for r in self.rules]}
            else:
                await exchange.respond(404, b'{"error": "unknown simulator endpoint"}')
                return
        except (ValueError, TypeError, KeyError) as e:
            await exchange.respond(400, json.dumps({"error": str(e)}).encode())
            return
        await exchange.respond(200, json.dumps(result).encode())


async def _shutdown(server: HttpServer) -> None:
    """Close ``server`` on the simulator's own loop, leaving no socket open.

    A connection the loop accepted just before the stop is still being set up by an asyncio
    task; wait for those tasks (everything on this loop that is not ours), then close.
    """
    server.stop_accepting()
    current = asyncio.current_task()
    for _ in range(10):  # bounded: setting up a connection takes a few loop turns at most
        stragglers = [t for t in asyncio.all_tasks() if t is not current and not server.serves(t)]
        if not stragglers:
            break
        await asyncio.wait(stragglers, timeout=0.5)
    await server.close()


def _build_answer(
    reply: Text | ToolCalls | Searched | Drop,
    parsed: ParsedRequest,
    record: SimRequest,
    response_id: str,
    wire: Wire,
) -> Answer:
    """Resolve ids and token counts for a reply. A ``Drop`` answers like the default text
    (it is cut off anyway)."""
    if isinstance(reply, Drop):
        reply = Text(f"Simulated answer {record.index} from {parsed.model}.")
    text = reply.text
    calls: tuple[Call, ...] = ()
    if isinstance(reply, ToolCalls | Searched) and not (
        isinstance(reply, Searched) and reply.pause
    ):
        calls = tuple(
            Call(
                spec.id or f"{wire.CALL_ID_PREFIX}sim{record.index}_{i}", spec.name, spec.arguments
            )
            for i, spec in enumerate(reply.calls)
        )
    chars = len(text) + sum(len(c.name) + len(c.arguments_json) for c in calls)
    search = reply if isinstance(reply, Searched) else None
    return Answer(
        model=parsed.model,
        text=text,
        calls=calls,
        truncated=isinstance(reply, Text) and reply.truncated,
        prompt_tokens=parsed.prompt_tokens,
        completion_tokens=tokens_for_chars(chars),
        response_id=response_id,
        created=int(time.time()),
        include_usage=parsed.include_usage,
        searched=search is not None,
        queries=tuple(search.queries) if search else (),
        sources=tuple((str(t), str(u)) for t, u in search.sources) if search else (),
        pause=bool(search and search.pause),
        search_sources=parsed.search_sources,
        cache_read=reply.cache_read if isinstance(reply, Text) else 0,
        cache_write=reply.cache_write if isinstance(reply, Text) else 0,
        cache_write_1h=reply.cache_write_1h if isinstance(reply, Text) else 0,
    )


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _request_id(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [*headers, ("x-request-id", "req_sim"), ("request-id", "req_sim")]


# --- standalone process ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; the first stdout line is the URL."""
    parser = argparse.ArgumentParser(prog="python -m tests.sim.simulator", description=main.__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--script", type=Path, help="JSON file of rules (see Rule.from_json)")
    parser.add_argument(
        "--token-arguments",
        action="store_true",
        help="stream tool arguments about a token (4 characters) a fragment, as providers do",
    )
    args = parser.parse_args(argv)
    if args.token_arguments:
        sim_wire.ARGUMENT_CHARS = 4
    sim = ProviderSimulator(latency=args.latency, seed=args.seed, port=args.port)
    if args.script is not None:
        try:
            sim.load_script(json.loads(args.script.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as e:
            print(f"error: bad --script {args.script}: {e}", file=sys.stderr)
            return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with sim:
        print(sim.url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
