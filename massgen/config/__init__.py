"""Team files: YAML in, typed and checked :class:`TeamConfig` out.

>>> from massgen.config import loads
>>> team = loads("agents: [{name: ada, backend: replay}]")
>>> team.orchestrator.strategy
'consensus'

Errors are always :class:`massgen.errors.ConfigError`, naming file, line and key."""

from __future__ import annotations

from massgen.config.loader import load, loads
from massgen.config.models import (
    AgentConfig,
    BackendConfig,
    BreakerConfig,
    CacheConfig,
    ConsensusConfig,
    MemoryConfig,
    OrchestratorConfig,
    Price,
    RateLimitConfig,
    RedisConfig,
    TeamConfig,
)
from massgen.config.schema import json_schema

__all__ = [
    "AgentConfig",
    "BackendConfig",
    "BreakerConfig",
    "CacheConfig",
    "ConsensusConfig",
    "MemoryConfig",
    "OrchestratorConfig",
    "Price",
    "RateLimitConfig",
    "RedisConfig",
    "TeamConfig",
    "json_schema",
    "load",
    "loads",
]
