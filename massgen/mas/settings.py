"""Timings and limits of the bus, in one typed value.

Defaults suit LLM agents (handlers that take seconds). Tests pass small values so that
leases expire in a fraction of a second instead of sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class BusSettings:
    """How an agent heartbeats, leases, retries and batches."""

    heartbeat_interval: float = 5.0
    """Seconds between heartbeats."""
    heartbeat_ttl: float = 15.0
    """An agent not heard from for this long leaves discovery (crashed, frozen, cut off)."""
    lease: float = 30.0
    """Work held this long by a silent consumer is reclaimed by another. A live consumer
    renews the lease of its in-flight work every ``lease / 3``, so slow handlers are safe."""
    reclaim_interval: float | None = None
    """Seconds between reclaim passes; ``None`` means ``lease / 2``."""
    max_deliveries: int = 5
    """A message delivered this many times without success goes to the dead-letter stream."""
    retry_delay: float = 0.0
    """After a handler raised, wait this long before the message may be redelivered."""
    batch: int = 256
    """Messages fetched per read (``XREADGROUP COUNT``)."""
    block: float = 5.0
    """Longest blocking read, in seconds (stop interrupts it at once)."""
    reply_ttl: float = 3600.0
    """How long a committed reply (and its request id) is kept."""
    dead_retention: float = 3600.0
    """How long a dead or stopped agent's record stays visible to the service."""
    dlq_maxlen: int = 10_000
    """Dead-letter streams keep about this many newest entries."""
    trim_every: int = 1_000
    """Trim an inbox's acknowledged entries after this many acks."""
    drain_timeout: float = 0.0
    """On stop, how long handlers already running may take to finish before being cancelled
    (their messages are then redelivered). ``0`` cancels them at once, so ``stop()`` returns
    promptly whatever a handler is waiting for; ``massgen worker`` gives LLM turns 10 s."""

    @property
    def reclaim_every(self) -> float:
        return self.reclaim_interval if self.reclaim_interval is not None else self.lease / 2
