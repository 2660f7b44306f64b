"""What a provider said as one of our errors: 401/403 -> AuthenticationError; 429 and 529
-> RateLimited (``retry_after`` from the headers); 408, 409, 5xx -> ProviderError (retried);
other 4xx -> BadRequestError; timeouts -> ProviderTimeout; refused or dropped ->
ProviderConnectionError; an error object in a 200 response -> by the status it names.
Messages are clipped and scrubbed of the API key (a provider may echo part of it back)."""

from __future__ import annotations

import email.utils
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from massgen.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
)

_MAX_MESSAGE = 300
# HTTP statuses for the string codes OpenAI-style error objects carry without a number.
_CODE_STATUS = {"rate_limit_exceeded": 429, "server_error": 500, "vector_store_timeout": 504}
_CODE_STATUS |= {"context_length_exceeded": 400, "invalid_api_key": 401}


def parse_retry_after(headers: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if (get := getattr(headers, "get", None)) is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = str(get(name) or "").strip()
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            pass
        try:  # "" and other junk raise here too
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return None


def clean_message(message: object, *, secret: str | None = None) -> str:
    """One short line for an error, with the key (and long prefixes of it) removed."""
    text = " ".join(str(message or "").split())
    if secret and len(secret) >= 8:
        text = text.replace(secret, "***")
        # Providers echo masked keys like "sk-abc***xyz"; drop the long head we would leak.
        text = text.replace(secret[: len(secret) // 2], "***")
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def body_message(body: object) -> str:
    """The provider's words from an error body, its ``error`` object or string; else ""."""
    error = body.get("error", body) if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        error = error.get("message")
    return error if isinstance(error, str) else ""


def error_for_status(
    status: int, message: str, *, provider: str, retry_after: float | None = None
) -> ProviderError:
    """The error matching an HTTP status (see the module docstring for the table)."""
    kind: type[ProviderError] = ProviderError
    if status in (401, 403):
        kind = AuthenticationError
    elif status in (429, 529):
        kind = RateLimited
    elif 400 <= status < 500 and status not in (408, 409):
        kind = BadRequestError
    message = message or f"HTTP {status}"
    return kind(message, provider=provider, status=status, retry_after=retry_after)


def error_in_body(
    error: object, *, provider: str, secret: str | None = None, default_status: int | None = None
) -> ProviderError:
    """An error object in a 200 response, mapped by the status it names (or ``default_status``)."""
    body = error if isinstance(error, Mapping) else {}
    numbers = [body.get(key) for key in ("code", "status_code", "status")]
    status = next((n for n in numbers if isinstance(n, int) and 100 <= n < 600), None)
    if status is None:
        status = _CODE_STATUS.get(str(body.get("code") or body.get("type") or ""), default_status)
    words = body_message(body) or str(body.get("code") or "") or "the provider reported an error"
    message = clean_message(words, secret=secret)
    if status is None:
        return ProviderError(message, provider=provider)
    return error_for_status(status, message, provider=provider)


def transport_error(exc: BaseException, *, provider: str) -> ProviderError | None:
    """Ours for an ``httpx2`` transport exception (every SDK's stack), else ``None``."""
    httpx2: Any = sys.modules.get("httpx2")  # not imported here: only an SDK can raise it
    if httpx2 is not None and isinstance(exc, httpx2.TimeoutException):
        return ProviderTimeout("request timed out", provider=provider)
    if httpx2 is not None and isinstance(exc, httpx2.TransportError):
        detail = clean_message(exc) or type(exc).__name__
        return ProviderConnectionError(f"connection failed: {detail}", provider=provider)
    return None


@contextmanager
def sdk_errors(
    sdk: Any, *, provider: str, secret: str, stream_status: Mapping[str, int] | None = None
) -> Iterator[None]:
    """A Stainless-made SDK's errors as ours; a stream's error event by ``stream_status``."""
    try:
        yield
    except sdk.APIStatusError as e:
        status = e.status_code
        if status < 400:
            status = (stream_status or {}).get(str(e.type or ""), 500)
        message = body_message(e.body) or getattr(e, "api_message", None) or e.message
        message = clean_message(message, secret=secret)
        retry_after = parse_retry_after(e.response.headers)
        raise error_for_status(status, message, provider=provider, retry_after=retry_after) from e
    except sdk.APITimeoutError as e:
        raise ProviderTimeout("request timed out", provider=provider) from e
    except sdk.APIConnectionError as e:
        message = clean_message(e.message, secret=secret)
        raise ProviderConnectionError(message, provider=provider) from e
    except sdk.APIError as e:  # an error object inside a stream: its own status
        body = e.body if isinstance(e.body, dict) else {"message": e.message}
        raise error_in_body(body, provider=provider, secret=secret) from e
    except Exception as e:
        if (mapped := transport_error(e, provider=provider)) is None:
            raise
        raise mapped from e


def stream_incomplete(provider: str) -> ProviderConnectionError:  # a dropped connection
    return ProviderConnectionError("stream ended before the answer was complete", provider=provider)
