"""Errors of the peer runtime, all inside the tree of :mod:`massgen.errors`.

::

    ConfigError
    ├── AgentIdTaken        a live agent already has this id (and not both are replicas)
    ├── BusAuthError        Redis refused our credentials, or wants some we did not give
    ├── BusRefused          Redis refused the URL's settings (a database it does not have)
    └── SecretMismatch      live peers sign with another secret, and none with ours
    TransportError
    ├── ServiceUnreachable
    │   └── BusUnreachable  no Redis there when an agent starts
    ├── RequestTimeout      no reply to a request in time (also a builtin TimeoutError)
    └── RemoteError         the target's handler failed for good; its error text is kept

A URL that is not a Redis URL is a plain ConfigError.
"""

from __future__ import annotations

from massgen.errors import ConfigError, ServiceUnreachable, TransportError


class AgentIdTaken(ConfigError):
    """A live agent already uses this id.

    You either run two copies by mistake, or you meant them to share the work: then pass
    ``replica=True`` to every copy.
    """

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
    """Redis answered but refused a setting of the URL (e.g. a database number beyond its
    ``databases``)."""


class BusUnreachable(ServiceUnreachable):
    """Nothing answered at the Redis URL when the agent started: not a mistake in a config
    (so not a ConfigError), but a service that is down or out of reach.

    Only raised at start: once running, lost connections are retried and surface as
    :class:`~massgen.errors.TransportError`.
    """


class SecretMismatch(ConfigError):
    """The live agents on this bus sign with a secret other than this agent's (or this
    agent signs and they do not, or the reverse), and none signs as this agent does.

    Its messages would be refused by them and theirs by it. ``peers`` names the
    instances, as ``agent/instance@host/pid``.
    """

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
