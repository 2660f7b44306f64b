"""Traces (OpenTelemetry over OTLP) and metrics (Prometheus), both fed by the run's events.
Neither library is imported unless its feature is switched on (docs/observability.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from massgen.errors import ConfigError

if TYPE_CHECKING:
    from massgen.agents.agent import Agent
    from massgen.config.models import ObservabilityConfig
    from massgen.observability.tracing import Tracing

TRACES_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""The standard variables that switch traces on without an ``observability.otlp``."""


def tracing_settings(
    section: ObservabilityConfig | None, environ: Mapping[str, str]
) -> ObservabilityConfig | None:
    """The settings runs are traced with, or ``None``: traces are on with ``otlp`` set or a
    :data:`TRACES_ENV` variable, and off whatever they say with ``OTEL_SDK_DISABLED=true``."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if section is not None and section.otlp:
        return section
    if any(environ.get(name) for name in TRACES_ENV):
        from massgen.config.models import ObservabilityConfig

        return section or ObservabilityConfig()
    return None


def start_tracing(settings: ObservabilityConfig, agents: Mapping[str, Agent]) -> Tracing:
    """The tracer of an orchestrator (or worker) of ``agents``; a ConfigError naming the extra
    when OpenTelemetry is not installed."""
    try:
        from massgen.observability.tracing import Tracing
    except ImportError as e:
        why = f"traces are on, but {e.name} is not installed"
        hint = "pip install 'massgen[observability]' (or switch traces off)"
        raise ConfigError(why, key="observability", hint=hint) from e
    return Tracing(settings, agents)
