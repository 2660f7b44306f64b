"""Take secrets out of URLs, and out of log records, before anyone sees them."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` with any password (in the userinfo, or a ``password=`` query parameter, which
    redis-py also accepts) or query parameter named like a secret (``api_key=``, ``token=``:
    an MCP server's URL may carry one) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
        query = parts.query
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_NAME.search(k) for k, _ in pairs):
            query = urlencode(
                [(k, "***" if _SECRET_NAME.search(k) else v) for k, v in pairs], safe="*"
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<invalid url>"


# -- log records ---------------------------------------------------------------------------------
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASS)$", re.IGNORECASE)
_PATTERNS = (
    re.compile(r"(?<=://)([^:/@\s]*):([^@\s]+)@"),  # URL userinfo
    re.compile(r"(?i)(?<=bearer )[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(?<=['\"]authorization['\"]: ['\"])[^'\"]+"),
    re.compile(r"(?i)(?<=x-api-key['\"]: ['\"])[^'\"]+"),
    re.compile(r"(?i)(?<=x-goog-api-key['\"]: ['\"])[^'\"]+"),
    re.compile(r"\b(sk|xai|sk-ant|sk-or)-[A-Za-z0-9_-]{8,}"),  # OpenAI, xAI, Anthropic, OpenRouter
    re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"),  # Google API keys
)


class SecretRedactor(logging.Filter):
    """Takes secrets out of every log record a handler emits (a library at DEBUG may log one):
    values of ``*_KEY``/``*_TOKEN``/``*_SECRET``/``*_PASSWORD`` variables, what :meth:`add`
    gave, and what looks like a provider key, bearer token, auth header or URL password."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        env = os.environ if environ is None else environ
        self._secrets = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 8}

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, "***")
        text = _PATTERNS[0].sub(r"\1:***@", text)
        for pattern in _PATTERNS[1:]:
            text = pattern.sub("***", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True
