"""Wrappers that make a backend survive real providers. Composed in one place: :func:`wrap`."""

from __future__ import annotations

from massgen.backends.base import Backend
from massgen.resilience.retry import RetryingBackend, RetryPolicy, retry_listener


def wrap(backend: Backend, *, retry: RetryPolicy | None = None) -> Backend:
    """Layer the resilience wrappers around ``backend`` (outermost first): retry → SDK call."""
    if retry is not None and retry.max_retries > 0:
        backend = RetryingBackend(backend, retry)
    return backend


__all__ = ["RetryPolicy", "RetryingBackend", "retry_listener", "wrap"]
