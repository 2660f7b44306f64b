"""Traces (OpenTelemetry over OTLP) and metrics (Prometheus), both fed by the run's events.
Neither library is imported unless its feature is switched on (docs/observability.md)."""
