"""The one error tree of massgen.

Everything massgen raises on purpose derives from :class:`MassGenError`, so callers can catch
one type. The CLI maps each branch to an exit code (see ``massgen.cli``)::

    MassGenError
    ├── ConfigError              bad YAML, unknown key, wrong type, missing env var (exit 2)
    ├── ProviderError            an LLM call failed; carries status and retry_after
    │   ├── AuthenticationError  401/403: a key is missing or wrong; never retried
    │   ├── BadRequestError      other 4xx the provider refused; never retried
    │   ├── RateLimited          429 (and 529 "overloaded"); retried after retry_after
    │   ├── ProviderTimeout      the request took longer than its timeout
    │   ├── ProviderConnectionError  connection refused, reset or dropped
    │   └── CircuitOpen          the endpoint's circuit is open: failed fast; never retried
    ├── ToolError                a tool failed (reported to the model, never fatal)
    ├── TransportError           the agent bus or store failed (Redis down, auth refused)
    │   └── ServiceUnreachable   Redis did not answer when a command started (exit 69)
    └── RunError                 a run could not produce an answer
        ├── AgentFailed          one agent failed after its retries
        └── Interrupted          the user stopped the run (Ctrl-C)

Messages never contain secrets: adapters build them from status codes and provider
messages, never from request headers or keys.
"""

from __future__ import annotations


class MassGenError(Exception):
    """Root of every error massgen raises on purpose."""


class ConfigError(MassGenError):
    """The configuration is wrong; fix the file (or flag) and run again.

    ``file``/``line`` point at the offending place, ``key`` is its dotted path and ``hint``
    suggests a fix. ``str()`` renders all of it in one or two lines.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        head = ": ".join(p for p in (where, f"`{self.key}`" if self.key else "", self.message) if p)
        return head + (f"\n  hint: {self.hint}" if self.hint else "")


class ProviderError(MassGenError):
    """An LLM provider call failed.

    ``status`` is the HTTP status when there was one; ``retry_after`` (seconds) is what the
    provider asked us to wait, so the retry wrapper can honour it.
    """

    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.retry_after = retry_after
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
    """The endpoint's circuit is open: the call failed fast, no request was sent. Never
    retried (not calling is the point); ``retry_after`` is the time left before the next
    probe, when known."""

    retryable = False

    def __init__(self, key: str, *, provider: str = "", retry_after: float | None = None) -> None:
        self.key = key
        when = f"; next probe in {retry_after:.1f}s" if retry_after else "; a probe is running"
        super().__init__(
            f"circuit open for {key}{when}", provider=provider, retry_after=retry_after
        )


class ToolError(MassGenError):
    """A tool failed; its message goes back to the model as an error result."""


class TransportError(MassGenError):
    """The agent bus or a store failed (Redis unreachable, auth refused, ...)."""


class ServiceUnreachable(TransportError):
    """A service massgen needs (Redis) did not answer when a command started: nothing is
    wrong with your file, so this is not a :class:`ConfigError`. Start it (or wait for it)
    and run the command again; the CLI exits with 69 (``EX_UNAVAILABLE``). ``hint`` says
    what to check; ``str()`` renders it on a second line."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message + (f"\n  hint: {hint}" if hint else ""))


class RunError(MassGenError):
    """A run could not produce an answer."""


class AgentFailed(RunError):
    """An agent failed after its retries; ``__cause__`` is the last error."""

    def __init__(self, agent: str, error: BaseException) -> None:
        self.agent = agent
        self.error = error
        super().__init__(f"agent {agent!r} failed: {error}")


class Interrupted(RunError):
    """The user stopped the run (Ctrl-C / SIGTERM)."""


# -- the agent bus
# ConfigError: AgentIdTaken, BusAuthError, BusRefused, SecretMismatch. TransportError:
# BusUnreachable (a ServiceUnreachable), RequestTimeout (also a TimeoutError), RemoteError.
# StateError, WireError and GatewayRejected also keep the builtin class the seed raised.
class AgentIdTaken(ConfigError):
    """A live agent uses this id: stop the other copy, or pass ``replica=True`` to every copy."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        super().__init__(
            f"agent id {agent_id!r} is already taken by a live agent",
            key="agent_id",
            hint="stop the other agent, pick another id, or pass replica=True to every copy",
        )


class BusAuthError(ConfigError):
    """Redis refused the connection's credentials. The message never holds the password."""


class BusRefused(ConfigError):
    """Redis refused a setting of the URL (e.g. a database number beyond ``databases``)."""


class BusUnreachable(ServiceUnreachable):
    """Nothing answered at the Redis URL when an agent started (later losses are retried)."""


class SecretMismatch(ConfigError):
    """Live peers sign with another secret and none as this agent does: they would refuse
    each other's messages. ``peers`` names them as ``agent/instance@host/pid``."""

    def __init__(self, agent_id: str, peers: list[str]) -> None:
        self.agent_id = agent_id
        self.peers = peers
        super().__init__(
            f"agent {agent_id!r}: no live agent signs with this agent's secret; "
            f"these sign with another one: {', '.join(peers)}",
            key="secret",
            hint="give every agent and worker of this bus the same redis.secret "
            "($MASSGEN_SECRET); `massgen agents list` shows who does not match",
        )


class RequestTimeout(TransportError, TimeoutError):
    """No reply arrived in time. The request may still be answered later; nobody waits."""


class RemoteError(TransportError):
    """The target gave up on a request (its handler failed every delivery)."""

    def __init__(self, target: str, error: str) -> None:
        self.target = target
        self.error = error
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
