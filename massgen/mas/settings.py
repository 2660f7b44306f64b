"""Timings and limits of the bus, in one typed value (tests pass small ones to skip waits)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class BusSettings:
    """How an agent heartbeats, leases, retries and batches; defaults suit LLM handlers."""

    heartbeat_interval: float = 5.0
    heartbeat_ttl: float = 15.0
    """An agent not heard from for this long leaves discovery."""
    lease: float = 30.0
    """Work held this long by a silent consumer is reclaimed; live ones renew every lease/3."""
    reclaim_interval: float | None = None
    """Seconds between reclaim passes; ``None``: ``lease / 2``."""
    max_deliveries: int = 5
    """Deliveries without success before a message goes to the dead-letter stream."""
    retry_delay: float = 0.0
    """After a handler raised, wait this long before the message may be redelivered."""
    batch: int = 256
    """Messages fetched per read."""
    block: float = 5.0
    """Longest blocking read, in seconds (stop interrupts it at once)."""
    reply_ttl: float = 3600.0
    """How long a committed reply is kept."""
    dead_retention: float = 3600.0
    """How long a dead or stopped agent's record stays visible to the service."""
    dlq_maxlen: int = 10_000
    trim_every: int = 1_000
    """Trim an inbox's acknowledged entries after this many acks."""
    drain_timeout: float = 0.0
    """On stop, how long running handlers may take to finish before being cancelled."""

    @property
    def reclaim_every(self) -> float:
        return self.reclaim_interval if self.reclaim_interval is not None else self.lease / 2
