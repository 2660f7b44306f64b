"""Typed models of a team file: YAML in, strict and located errors out.

Every model forbids unknown keys, so a typo is an error with a suggestion rather than a
setting silently ignored. The seed's flat spellings (``memory_size``, ``cache_ttl``...) are
folded into their nested homes before validation. Errors raised through :func:`fail` never
embed the value (it may be a secret from the environment): the loader decides what to show."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SecretStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from massgen.config.quiz import QuizOptions
from massgen.config.yamlsrc import Path_
from massgen.providers import OPENAI_COMPATIBLE, PROVIDERS
from massgen.redact import redact_url
from massgen.types import StrategyName

CUSTOM_CLASS = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
"""How a user's own backend class is named: ``package.module:Class``."""
_AGENT_NAME = re.compile(r"\w[\w.-]{0,63}")


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """``did you mean `x`?`` with the choice most like ``word`` (case ignored), or ``None``."""
    by_lower = {c.lower(): c for c in choices if isinstance(c, str)}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"did you mean `{by_lower[close[0]]}`?" if close else None


def one_of(choices: Iterable[str]) -> str:
    """Allowed values for a message: ``a, b or c``."""
    items = [f"`{c}`" for c in choices]
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else "".join(items)


def fail(kind: str, message: str, *, at: Path_ = (), hint: str | None = None) -> Exception:
    """A validation error the loader can place: ``at`` is relative to the model raising it."""
    return PydanticCustomError(kind, "{message}", {"message": message, "at": at, "hint": hint})


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a token (RFC 9110)


def header_problem(name: str, value: str) -> str | None:
    """Why ``name: value`` cannot be sent as an HTTP header (``None``: it can); the value,
    likely a secret, is never shown."""
    if not _HEADER_NAME.fullmatch(name):
        return f"{name!r} is not a header name: letters, digits and !#$%&'*+-.^_`|~ only"
    if any(c in value for c in "\r\n\0"):
        return f"the value of header {name!r} holds a line break"
    return None


def _sendable(given: dict[str, SecretStr]) -> dict[str, SecretStr]:
    for name, value in given.items():
        if (wrong := header_problem(name, value.get_secret_value())) is not None:
            raise fail("header", wrong, at=(name,), hint="write one header per key, on one line")
    return given


Headers = Annotated[dict[str, SecretStr], AfterValidator(_sendable)]
"""HTTP headers from the config, checked once as they load (secrets: never shown)."""


def client_problem(kind: str) -> tuple[str, str] | None:
    """Why a backend of type ``kind`` cannot take ``client:``, and a hint; ``None`` if it can."""
    if kind in OPENAI_COMPATIBLE:
        return None
    hint = f"remove it; it is for {one_of(sorted(OPENAI_COMPATIBLE))}"
    return "`client` applies only to OpenAI-compatible backends", hint


class ConfigModel(BaseModel):
    """Base of all config models: strict about keys, finite about numbers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed_spellings: ClassVar[dict[str, tuple[str, str]]] = {}
    """Flat spellings this model accepts, mapped to their nested home."""

    @classmethod
    def _spellings(cls, data: dict[str, Any]) -> dict[str, tuple[str, str]]:
        return cls.seed_spellings

    @model_validator(mode="before")
    @classmethod
    def _fold_and_check_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # pydantic reports the wrong type
        data = fold(data, cls._spellings(data))
        fields = set(cls.model_fields)
        for key in data:
            if key not in fields:
                allowed = sorted(fields | set(cls._spellings(data)))
                hint = cls._key_hint(key, allowed)
                raise fail("unknown_key", "unknown key", at=(key,), hint=hint)
        return data

    @classmethod
    def _key_hint(cls, key: Any, allowed: list[str]) -> str:
        return did_you_mean(str(key), allowed) or f"allowed keys: {', '.join(allowed)}"

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():  # URLs may carry a password
            url = key in ("url", "base_url") and isinstance(value, str)
            yield key, redact_url(value) if url else value


def fold(data: dict[str, Any], moves: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Move flat spellings (``memory_size``) into their nested place (``memory.size``)."""
    out = dict(data)
    for src, (parent_key, leaf) in moves.items():
        if src not in out:
            continue
        parent = out.get(parent_key)
        if parent is not None and not isinstance(parent, dict):
            message = f"cannot combine `{src}` with `{parent_key}` that is not a mapping"
            hint = f"write it as `{parent_key}: {{{leaf}: ...}}`"
            raise fail("spelling_conflict", message, at=(src,), hint=hint)
        parent = dict(parent or {})
        if leaf in parent:
            message = f"given twice, as `{src}` and as `{parent_key}.{leaf}`"
            raise fail("spelling_conflict", message, at=(src,), hint="keep one of them")
        parent[leaf] = out.pop(src)
        out[parent_key] = parent
    return out


class ReplayRule(BaseModel):
    """One scripted reply of the replay backend: the first rule whose regex matches wins."""

    model_config = ConfigDict(extra="allow")

    match: str
    """Regular expression searched in the prompt."""
    reply: str
    """Text to answer; may contain the replay backend's templates."""

    @field_validator("match")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as e:
            raise fail("bad_regex", f"not a valid regular expression: {e}") from None
        return value


class ReplayOptions(BaseModel):
    """Replay options checked at load time, for a file and line; the others pass through."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    rules: list[ReplayRule] | None = None
    replies: list[str] | None = None
    default: str | None = None
    answers_file: str | None = None
    latency: float | None = Field(default=None, ge=0)
    stream_chunk: int | None = Field(default=None, gt=0)
    quiz: QuizOptions | None = None  # simulated agents of known accuracy (issue 15)


REPLAY_OPTIONS: tuple[str, ...] = tuple(ReplayOptions.model_fields)
"""Replay options allowed at the top of a replay backend; they are moved into ``params``."""


class Price(ConfigModel):
    """What a model costs, in USD per million tokens."""

    input: float = Field(ge=0)
    """USD per 1M prompt tokens."""
    output: float = Field(ge=0)
    """USD per 1M completion tokens."""
    cache_read: float | None = Field(default=None, ge=0)
    """USD per 1M prompt tokens read from the provider's cache (none: the input price)."""
    cache_write: float | None = Field(default=None, ge=0)
    """USD per 1M prompt tokens written to the provider's cache (none: the input price)."""
    cache_write_1h: float | None = Field(default=None, ge=0)
    """USD per 1M of those written to its one-hour cache (none: the ``cache_write`` price)."""


class RateLimitConfig(ConfigModel):
    """Limits of one backend endpoint; shared by every process when Redis is configured."""

    rpm: int | None = Field(default=None, gt=0)
    """Requests per minute (none: unlimited)."""
    tpm: int | None = Field(default=None, gt=0)
    """Tokens per minute, prompt and answer (none: unlimited)."""
    max_in_flight: int | None = Field(default=None, gt=0)
    """Requests running at once through this backend, per process (none: unlimited)."""
    output_tokens: int = Field(default=1024, gt=0)
    """Answer tokens assumed for a request that sets no max_tokens, until its usage is known."""


class BreakerConfig(ConfigModel):
    """The circuit breaker of one backend endpoint."""

    failures: int = Field(default=5, ge=1)
    """Consecutive failures (5xx, 529, timeouts, connection errors) that open the circuit."""
    cooldown: float = Field(default=30.0, gt=0)
    """Seconds the circuit stays open before one probe request is let through."""
    probe_timeout: float = Field(default=120.0, gt=0)
    """Seconds a probe may hold the half-open permit before another caller may probe."""


class BackendConfig(ConfigModel):
    """One LLM provider endpoint: which API, which model, how to reach it."""

    type: str
    """A type of ``massgen.providers`` (``openai``...) or your class as ``package.module:Class``."""
    model: str = ""
    """Model for agents that set none; needed unless each sets one (not for replay or custom)."""
    base_url: str | None = None
    """Endpoint override, e.g. a proxy or a local server; ``None`` uses the provider's."""
    api_key: Annotated[SecretStr | None, BeforeValidator(lambda v: None if v == "" else v)] = None
    """Key for this backend; none (or empty) reads the provider's variable. Never printed."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature, 0 to 2; ``None`` leaves the provider's default."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Cap on completion tokens per request."""
    timeout: float = Field(default=60, gt=0)
    """Seconds one request may take before it is abandoned (and maybe retried)."""
    client: Literal["http", "sdk"] = "http"
    """An OpenAI-compatible backend's client: massgen's ``http`` or the ``openai`` ``sdk``."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Extra provider parameters, or options of replay and custom backends."""
    prices: Price | None = None
    """Price override for cost accounting, USD per 1M tokens."""
    rate_limit: RateLimitConfig | None = None
    """Requests and tokens per minute, and requests in flight (none: unlimited)."""
    breaker: BreakerConfig | bool = True
    """The circuit breaker: ``true`` (the defaults), its settings, or ``false`` for none."""

    @classmethod
    def _spellings(cls, data: dict[str, Any]) -> dict[str, tuple[str, str]]:
        kind = data.get("type")
        if isinstance(kind, str) and kind.strip().lower() == "replay":
            return {key: ("params", key) for key in REPLAY_OPTIONS}
        return {}

    @classmethod
    def _key_hint(cls, key: Any, allowed: list[str]) -> str:
        if key in REPLAY_OPTIONS:
            return f"`{key}` is a replay option; other backends take options under `params:`"
        return did_you_mean(str(key), allowed) or (
            f"provider-specific options go under `params:`; allowed keys: {', '.join(allowed)}"
        )

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        value = value.strip()
        if ":" in value:
            if not CUSTOM_CLASS.fullmatch(value):
                message = "a custom backend must be written `package.module:ClassName`"
                raise fail("backend_type", message)
            return value
        if value.lower() in PROVIDERS:
            return value.lower()
        hint = did_you_mean(value, PROVIDERS) or (
            f"use one of {one_of(PROVIDERS)}, or `package.module:Class` for your own"
        )
        raise fail("backend_type", "unknown backend type", hint=hint)

    @field_validator("client")
    @classmethod
    def _client_needs_openai(cls, value: str, info: ValidationInfo) -> str:
        # Runs only when `client:` is written: a default is never refused.
        kind = info.data.get("type")
        if isinstance(kind, str) and (wrong := client_problem(kind)):
            raise fail("backend_client", wrong[0], hint=wrong[1])
        return value

    @field_validator("params")
    @classmethod
    def _replay_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("type") == "replay":  # pydantic re-roots its errors at ``params``
            ReplayOptions.model_validate(value)
        return value


class MemoryConfig(ConfigModel):
    """What an agent remembers between turns."""

    strategy: Literal["full", "sliding_window", "summary"] = "full"
    """Keep everything, the last ``size`` tokens (``sliding_window``), or summarize older turns."""
    size: int | None = Field(default=None, gt=0)
    """Token budget of the kept history; ``None`` means the model's context limit."""
    long_term: bool = False
    """Keep a persistent memory across runs (in the store)."""
    summarizer: str | None = None
    """Agent that writes summaries for ``summary``; ``None`` means the agent itself."""
    context_window: int | None = Field(default=None, gt=0)
    """The model's context window in tokens; ``None`` uses the known one for the model."""
    long_term_scope: Literal["agent", "team"] = "agent"
    """Recall what this agent stored (``agent``), or share one memory with ``team`` agents."""
    recall: int = Field(default=3, ge=0)
    """How many past items at most are recalled before an answer."""
    recall_budget: int = Field(default=600, gt=0)
    """Tokens at most that recalled items may take."""
    max_items: int | None = Field(default=1000, gt=0)
    """Long-term items kept per memory; the oldest go first. ``None``: no limit."""
    max_age_days: float | None = Field(default=None, gt=0)
    """Long-term items older than this are forgotten. ``None``: no limit."""


def _backend_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "name"
    if isinstance(value, dict | BackendConfig):
        return "inline"
    return None  # neither: pydantic reports the custom `backend_ref` error


BackendRef = Annotated[
    Annotated[str, Tag("name")] | Annotated[BackendConfig, Tag("inline")],
    Discriminator(
        _backend_tag,
        custom_error_type="backend_ref",
        custom_error_message="expected a backend name or a backend mapping",
    ),
]


class AgentConfig(ConfigModel):
    """One member of the team."""

    seed_spellings: ClassVar[dict[str, tuple[str, str]]] = {
        "memory_strategy": ("memory", "strategy"),
        "memory_size": ("memory", "size"),
    }

    name: str
    """Unique name: letters, digits, ``_``, ``-`` and ``.``; at most 64 characters."""
    backend: BackendRef
    """A name from ``backends:``, a provider type (``openai``), or an inline backend mapping."""
    model: str | None = None
    """The model this agent sends, overriding its backend's (named, bare or inline)."""
    role: str = ""
    """The agent's system prompt: its specialisation and how it should answer."""
    capabilities: list[str] = Field(default_factory=list)
    """Free-form tags advertised in the registry (e.g. ``research``)."""
    tools: list[str] = Field(default_factory=list)
    """Tools it may call: built-ins, entries of ``tools:``, or ``module:Class``/``module:func``."""
    max_tool_iterations: int | None = Field(default=None, ge=1)
    """Rounds of tool calls in one turn at most; ``None`` uses the orchestrator's."""
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    """How much conversation the agent keeps."""
    fallback: str | None = None
    """Agent that takes this agent's turn if it fails (after its retries)."""
    standby: bool = False
    """Only answer in place of a failed agent (as someone's ``fallback``), never on its own."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Overrides the backend's temperature for this agent."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Overrides the backend's ``max_tokens`` for this agent."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _AGENT_NAME.fullmatch(value):
            message = "an agent name needs letters, digits, `_`, `-` or `.` only (no spaces), "
            message += "at most 64 characters"
            raise fail("agent_name", message, hint="e.g. `researcher` or `gpt_4o`")
        return value


class ConsensusConfig(ConfigModel):
    """How agents converge on one answer in the consensus strategy."""

    threshold: float = Field(default=0.5, gt=0, le=1)
    """An answer wins with at least ``ceil(threshold * live agents)`` votes (and at least one)."""
    max_rounds: int = Field(default=2, ge=1)
    """Review rounds at most; after the last, the plurality of the latest votes wins."""
    mode: Literal["vote", "debate", "adaptive"] = "adaptive"
    """``vote``: one answer round, the most given answer wins (no review); ``debate``:
    review rounds unless all agree; ``adaptive``: review only when no qualified majority
    (``threshold``) already gives one answer."""
    answer: Literal["auto", "number", "choice", "boxed", "text", "prose"] = "auto"
    """What agreement is judged on: the extracted number, choice letter, boxed answer or
    short text, or the whole ``prose`` (folded); ``auto`` picks from the task and replies."""
    topology: Literal["auto", "full", "ring"] = "auto"
    """Which answers each reviewer sees: every distinct one (``full``), ``neighbors`` on a
    ring, or ``auto``: all up to 6 distinct answers, else its own and ``neighbors`` others."""
    neighbors: int = Field(default=2, ge=1)
    """Others each reviewer sees with ``topology: ring`` (or ``auto`` in a large team)."""
    final: Literal["winner", "synthesize"] = "winner"
    """``winner`` returns the winning text as is; ``synthesize`` asks a presenter to merge."""
    presenter: str | None = None
    """Agent that writes the synthesis; ``None`` means the winner's author."""
    answer_budget: int = Field(default=400, gt=0)
    """Tokens each peer answer is clipped to in review prompts."""

    def votes_needed(self, live: int) -> int:
        """Votes an answer needs to win among ``live`` agents: ``max(1, ceil(threshold*live))``."""
        return max(1, math.ceil(self.threshold * live - 1e-9))


class CacheConfig(ConfigModel):
    """Reuse of identical LLM requests."""

    enabled: bool = False
    """Serve repeated identical requests from the cache."""
    ttl: float = Field(default=3600, gt=0)
    """Seconds a cached reply stays valid."""
    path: str | None = None
    """Cache file; ``None`` uses the default store (``.massgen/``, or Redis when configured)."""


class OrchestratorConfig(ConfigModel):
    """How the team works on a task, and how it survives failures."""

    seed_spellings: ClassVar[dict[str, tuple[str, str]]] = {
        "cache_enabled": ("cache", "enabled"),
        "cache_ttl": ("cache", "ttl"),
    }

    strategy: StrategyName = "consensus"
    """``parallel``: all answer at once; ``sequential``: a pipeline in agent order;
    ``consensus``: answer, review and vote."""
    consensus: ConsensusConfig = Field(default_factory=ConsensusConfig)
    """Settings of the consensus strategy."""
    aggregator: str | None = None
    """Agent that merges the answers of a ``parallel`` run into the final answer."""
    error_strategy: Literal["continue", "fail_fast", "retry"] = "continue"
    """``continue``: retry, then drop a failing agent and go on; ``fail_fast``: no retries,
    the first failure stops the run; ``retry``: retry, then a failing agent stops the run."""
    max_retries: int = Field(default=3, ge=0)
    """Retries of a failed LLM request (transient errors only)."""
    retry_delay: float = Field(default=1.0, ge=0)
    """First backoff delay in seconds; it grows exponentially with jitter."""
    cache: CacheConfig = Field(default_factory=CacheConfig)
    """Request cache settings."""
    max_parallel: int | None = Field(default=None, gt=0)
    """Most LLM requests in flight at once; ``None`` means no limit."""
    timeout: float | None = Field(default=None, gt=0)
    """Seconds the whole run may take."""
    max_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Stop the run once it has cost this many USD."""
    max_tool_iterations: int = Field(default=8, ge=1)
    """Rounds of tool calls one agent turn may make before it must answer."""


class RedisConfig(ConfigModel):
    """Where the distributed mode's bus and store live."""

    url: str
    """``redis://``, ``rediss://`` (TLS) or ``unix://`` URL; may carry a password."""
    prefix: str = Field(default="massgen:", min_length=1)
    """Prefix of every key massgen writes."""
    secret: SecretStr | None = None
    """Shared secret that signs every message between agents (HMAC); unsigned, forged and
    replayed ones are refused. Without it, ``$MASSGEN_SECRET`` is used if set."""

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        from massgen.config.redisurl import problem

        if (wrong := problem(value)) is not None:
            raise fail("redis_url", wrong[0], hint=wrong[1])
        return value

    @property
    def redacted_url(self) -> str:
        """The URL with its password masked, safe to print or log."""
        return redact_url(self.url)


class ObservabilityConfig(ConfigModel):
    """Traces of every run, over OTLP/HTTP (docs/observability.md)."""

    otlp: str | None = None
    """Collector URL, e.g. ``http://localhost:4318`` (``/v1/traces`` is added); none: the
    ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` variables, and without those no traces."""
    headers: Headers = Field(default_factory=dict)
    """Headers of each export (``Authorization: Basic ${TOKEN}``). Never printed."""
    service_name: str | None = None
    """``service.name`` of the spans; none: ``$OTEL_SERVICE_NAME``, else ``massgen``."""
    capture_content: bool = False
    """Put prompts, answers and tool arguments and results in the spans."""
    certificate_file: str | None = None
    """The CA (PEM) trusted for an ``https`` collector instead of the system's CAs; none:
    ``$OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE``."""
    client_certificate_file: str | None = None
    """massgen's certificate (PEM), for a collector that asks for one (mutual TLS); none:
    ``$OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_CERTIFICATE``."""
    client_key_file: str | None = None
    """Its private key (PEM, not encrypted), unless the certificate's file holds it; none:
    ``$OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_KEY``."""

    @field_validator("otlp")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        from urllib.parse import urlsplit

        url = urlsplit(value or "")
        if value is not None and (url.scheme not in ("http", "https") or not url.netloc):
            raise fail("otlp_url", "not an http(s) URL", hint="e.g. http://localhost:4318")
        return value


class TeamConfig(ConfigModel):
    """A whole team file."""

    name: str | None = None
    """A label for the team, shown in the live view and run records."""
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    """Named backends that agents refer to by name."""
    agents: list[AgentConfig] = Field(min_length=1)
    """The team, in order (the order is the pipeline for ``sequential``)."""
    orchestrator: OrchestratorConfig = Field(default_factory=OrchestratorConfig)
    """Strategy and resilience settings."""
    redis: RedisConfig | None = None
    """Run distributed over Redis; ``None`` runs in one process."""
    observability: ObservabilityConfig | None = None
    """Traces of runs (OpenTelemetry); ``None``: only if the ``OTEL_*`` variables say so."""
    tools: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Settings per tool name (e.g. a file reader's ``root``); an entry whose name is not a
    built-in says what it builds with ``use:`` (a built-in or ``module:Class``)."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """Price overrides per model name, USD per 1M tokens."""

    _source: Path | None = PrivateAttr(None)
    _base_dir: Path | None = PrivateAttr(None)
    _file: str | None = PrivateAttr(None)
    _lines: dict[Path_, int] = PrivateAttr(default_factory=dict)

    def locate(self, *path: str | int) -> tuple[str | None, int | None]:
        """The file and line of the key at ``path``, for errors found after loading."""
        return self._file, self._lines.get(tuple(path))

    @property
    def source(self) -> Path | None:
        """The file this config was loaded from, if any."""
        return self._source

    @property
    def base_dir(self) -> Path | None:
        """The folder relative paths in the file were resolved against."""
        return self._base_dir

    def agent(self, name: str) -> AgentConfig:
        """The agent called ``name``; ``KeyError`` if there is none."""
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(name)

    def backend_for(self, agent: AgentConfig | str) -> BackendConfig:
        """The backend ``agent`` talks to, with its model/temperature/max_tokens overrides."""
        member = self.agent(agent) if isinstance(agent, str) else agent
        base = member.backend
        if not isinstance(base, BackendConfig):  # a name (a bare type if built unvalidated)
            base = self.backends.get(base) or BackendConfig(type=base)
        own = (("model", member.model or None), ("temperature", member.temperature))
        update = {k: v for k, v in (*own, ("max_tokens", member.max_tokens)) if v is not None}
        return base.model_copy(update=update) if update else base

    @model_validator(mode="after")
    def _cross_references(self) -> TeamConfig:
        from massgen.config.references import check_references

        check_references(self)
        for agent in self.agents:  # `backend: openai` and no such entry: add one
            if isinstance(agent.backend, str) and agent.backend not in self.backends:
                self.backends[agent.backend] = BackendConfig(type=agent.backend)
        return self


SEED_SPELLINGS: dict[str, tuple[str, str]] = {
    **AgentConfig.seed_spellings,
    **OrchestratorConfig.seed_spellings,
    **{key: ("params", key) for key in REPLAY_OPTIONS},
}
"""Every flat spelling any model folds, for placing errors at what the user wrote."""
