"""The one error tree of massgen.

Everything massgen raises on purpose derives from :class:`MassGenError`, so callers can catch
one type. The CLI maps each branch to an exit code (see ``massgen.cli``)::

    MassGenError
    ├── ConfigError              bad YAML, unknown key, wrong type, missing env var (exit 2)
    │   ├── ResultsLocked        another batch writes the same results file
    │   ├── AgentIdTaken         a live agent on the bus already uses this id
    │   ├── BusAuthError         Redis refused the bus' credentials
    │   ├── BusRefused           Redis refused a setting of the URL
    │   └── SecretMismatch       live peers sign with another secret
    ├── ProviderError            an LLM call failed; carries status and retry_after
    │   ├── AuthenticationError  401/403: a key is missing or wrong; never retried
    │   ├── BadRequestError      other 4xx the provider refused; never retried
    │   ├── RateLimited          429 (and 529 "overloaded"); retried after retry_after
    │   ├── ProviderTimeout      the request took longer than its timeout
    │   ├── ProviderConnectionError  connection refused, reset or dropped
    │   └── CircuitOpen          the endpoint's circuit is open: failed fast; never retried
    ├── ToolError                a tool failed (reported to the model, never fatal)
    ├── TransportError           the agent bus or store failed (Redis down, auth refused)
    │   ├── ServiceUnreachable   Redis did not answer when a command started (exit 2)
    │   │   └── BusUnreachable   ... when an agent of the bus started
    │   ├── WorkerLost           no live worker hosts a remote agent any more
    │   ├── TurnRefused          a worker set a turn aside instead of running it
    │   │   └── SecretRefused    ... because its signature did not verify (exit 2)
    │   ├── RequestTimeout       no reply in time (also a TimeoutError)
    │   └── RemoteError          the target gave up on a request
    ├── RunError                 a run could not produce an answer
    │   ├── AgentFailed          one agent failed after its retries
    │   ├── Interrupted          the user stopped the run (Ctrl-C)
    │   ├── BudgetExceeded       the cost budget cannot cover the next request
    │   ├── ContextLimitExceeded the task alone does not fit the model's context window
    │   └── ResultsFileError     a batch's results file could not be written
    ├── StateError               agent state storage cannot keep (also a TypeError)
    ├── WireError                a stored bus message could not be read (also a ValueError)
    └── GatewayRejected          the bus gateway refused a message (also a RuntimeError)

Where a class also derives from a builtin exception, that is the one the seed framework
raised, so code written for it keeps catching what it caught.

Messages never contain secrets: adapters build them from status codes and provider
messages, never from request headers or keys."""

from __future__ import annotations


class MassGenError(Exception):
    """Root of every error massgen raises on purpose."""


class ConfigError(MassGenError):
    """The configuration is wrong: ``file``/``line`` point at the place, ``key`` is its
    dotted path, ``hint`` suggests a fix."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message, self.file, self.line, self.key, self.hint = message, file, line, key, hint
        self.more: tuple[ConfigError, ...] = ()  # the other mistakes found with it, in order
        where = (file or "") + (f":{line}" if file and line else "")
        head = ": ".join(p for p in (where, f"`{key}`" if key else "", message) if p)
        super().__init__(head + (f"\n  hint: {hint}" if hint else ""))


class ProviderError(MassGenError):
    """An LLM provider call failed: ``status`` (HTTP), ``retry_after`` (seconds to wait)."""

    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.provider, self.status, self.retry_after = provider, status, retry_after
        super().__init__(message)

    def __str__(self) -> str:
        tag = self.provider + (f" {self.status}" if self.status else "")
        base = super().__str__()
        return f"[{tag}] {base}" if tag else base


class AuthenticationError(ProviderError):
    """The key is missing, wrong or not allowed to use this model. Never retried."""

    retryable = False


class BadRequestError(ProviderError):
    """The provider refused the request as malformed (400, 404, 422...). Never retried."""

    retryable = False


class RateLimited(ProviderError):
    """429, or 529 "overloaded": wait ``retry_after`` (if given) and try again."""


class ProviderTimeout(ProviderError):
    """The request took longer than its timeout."""


class ProviderConnectionError(ProviderError):
    """The connection failed or dropped before a complete answer arrived."""


class CircuitOpen(ProviderError):
    """No request was sent: the endpoint's circuit is open (``retry_after``: till the probe)."""

    retryable = False

    def __init__(self, key: str, *, provider: str = "", retry_after: float | None = None) -> None:
        self.key = key
        eta = f"; next probe in {retry_after:.1f}s" if retry_after else "; a probe is running"
        super().__init__(f"circuit open for {key}{eta}", provider=provider, retry_after=retry_after)


class ToolError(MassGenError):
    """A tool failed; its message goes back to the model as an error result."""


class TransportError(MassGenError):
    """The agent bus or a store failed (Redis unreachable, auth refused, ...)."""


class ServiceUnreachable(TransportError):
    """Not a :class:`ConfigError`: start the service (or wait) and run again; see ``hint``."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message, self.hint = message, hint
        super().__init__(message + (f"\n  hint: {hint}" if hint else ""))


class WorkerLost(TransportError):
    """The agent's turn cannot run; ``workers`` names those seen last (``host pid N``)."""

    def __init__(self, agent: str, workers: list[str], why: str) -> None:
        self.agent, self.workers = agent, workers
        gone = ", ".join(workers) or "its worker"
        super().__init__(f"agent {agent!r}: no live worker hosts it any more ({gone} gone); {why}")


class TurnRefused(TransportError):
    """The worker dead-lettered the turn for ``reason``: nobody will answer, it fails now."""

    def __init__(self, agent: str, reason: str, message: str | None = None) -> None:
        self.agent, self.reason = agent, reason
        super().__init__(
            message or f"{agent}'s worker refused the turn ({reason}); no worker will answer it"
        )


class SecretRefused(TurnRefused):
    """The run and its workers do not share one ``redis.secret`` / ``$MASSGEN_SECRET``."""

    def __init__(self, agent: str, reason: str) -> None:
        message = (
            f"{agent}'s worker could not verify the turn's signature ({reason}): check that "
            "redis.secret / MASSGEN_SECRET is the same for the run and its workers"
        )
        super().__init__(agent, reason, message)


class ResultsLocked(ConfigError):
    """Another batch is writing the same results file."""


class RunError(MassGenError):
    """A run could not produce an answer."""


class AgentFailed(RunError):
    """An agent failed after its retries; ``__cause__`` is the last error."""

    def __init__(self, agent: str, error: BaseException) -> None:
        self.agent, self.error = agent, error
        super().__init__(f"agent {agent!r} failed: {error}")


class Interrupted(RunError):
    """The user stopped the run (Ctrl-C / SIGTERM)."""


class BudgetExceeded(RunError):
    """The cost budget is spent, or cannot cover the next request; it is not sent."""


class ContextLimitExceeded(RunError):
    """The task alone does not fit the context window: shorten it, or lower ``max_tokens``."""


class ResultsFileError(RunError):
    """A full disk, a quota, an I/O error: the lines written before are intact."""


class AgentIdTaken(ConfigError):
    """A live agent uses this id: stop the other copy, or pass ``replica=True`` to every copy."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        message = f"agent id {agent_id!r} is already taken by a live agent"
        hint = "stop the other agent, pick another id, or pass replica=True to every copy"
        super().__init__(message, key="agent_id", hint=hint)


class BusAuthError(ConfigError):
    """Redis refused the connection's credentials. The message never holds the password."""


class BusRefused(ConfigError):
    """Redis refused a setting of the URL (e.g. a database number beyond ``databases``)."""


class BusUnreachable(ServiceUnreachable):
    """Nothing answered at the Redis URL when an agent started (later losses are retried)."""


class SecretMismatch(ConfigError):
    """No live peer signs as this agent does; ``peers``: ``agent/instance@host/pid``."""

    def __init__(self, agent_id: str, peers: list[str]) -> None:
        self.agent_id, self.peers = agent_id, peers
        message = f"agent {agent_id!r}: no live agent signs with this agent's secret; "
        message += f"these sign with another one: {', '.join(peers)}"
        hint = "give every agent and worker of this bus the same redis.secret ($MASSGEN_SECRET); "
        hint += "`massgen agents list` shows who does not match"
        super().__init__(message, key="secret", hint=hint)


class RequestTimeout(TransportError, TimeoutError):
    """No reply arrived in time. The request may still be answered later; nobody waits."""


class RemoteError(TransportError):
    """The target gave up on a request (its handler failed every delivery)."""

    def __init__(self, target: str, error: str) -> None:
        self.target, self.error = target, error
        super().__init__(f"agent {target!r} failed the request: {error}")


class StateError(MassGenError, TypeError):
    """An agent state update that storage cannot keep faithfully (not JSON, unknown field)."""


class WireError(MassGenError, ValueError):
    """A stored message could not be read (not ours, truncated, or wrong types)."""


class GatewayRejected(MassGenError, RuntimeError):
    """The gateway refused a message (a ``RuntimeError``, as in the seed framework)."""

    def __init__(self, result: object) -> None:
        self.result = result  # a GatewayResult
        self.decision: str = getattr(result, "decision", "")
        why = getattr(result, "message", None)
        super().__init__(f"Gateway rejected message: {self.decision} - {why}")
