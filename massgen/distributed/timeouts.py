"""How long a caller waits for a turn that runs on a worker.

The worker retries on its own (the caller's turn is one request over the bus), so the caller
must wait out the worker's whole retry budget. The bound is the worst case of one delivery:
every attempt runs to the backend's timeout and every pause is the longest the retry policy
allows (its backoff ceiling, or a provider's Retry-After up to the policy's cap). Add the
lease, after which a dead worker's turn is redelivered to another replica, and a margin for
the bus itself. Time a request spends queued while every replica is busy is not counted:
add workers or raise ``--concurrency`` rather than let turns queue.
"""

from __future__ import annotations

from massgen.resilience import RetryPolicy

#: Seconds a provider request may take when the backend does not say (BackendConfig's default).
DEFAULT_BACKEND_TIMEOUT = 60.0
#: Round trips over the bus, encoding, a busy event loop.
MARGIN = 5.0


def turn_timeout(backend_timeout: float | None, policy: RetryPolicy | None, lease: float) -> float:
    """Seconds to wait for a remote turn's reply before raising ``RequestTimeout``."""
    per_attempt = DEFAULT_BACKEND_TIMEOUT
    if backend_timeout and backend_timeout > 0:
        per_attempt = backend_timeout
    retries = policy.max_retries if policy is not None else 0
    total = per_attempt * (retries + 1)
    if policy is not None:
        for attempt in range(1, retries + 1):
            ceiling = min(policy.max_delay, policy.base_delay * policy.factor ** (attempt - 1))
            total += max(ceiling, policy.retry_after_cap)
    return total + lease + MARGIN
