"""Passwords never reach messages: one redaction for every Redis URL we print."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from massgen.mas.redis_transport import redact as transport_redact
from massgen.redact import redact_url
from massgen.store.redis_client import redact_url as store_redact

CANARY = "s3cret-canary"


@pytest.mark.parametrize("redact", [redact_url, transport_redact, store_redact])
@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{CANARY}@host:6379/0",
        f"redis://:{CANARY}@host:6379",
        f"rediss://host:6380/0?password={CANARY}&db=1",
        f"redis://[::1]:6379?Password={CANARY}",
    ],
)
def test_every_redis_url_printer_hides_the_password(redact, url):
    shown = redact(url)
    assert CANARY not in shown and "***" in shown
    assert "host" in shown or "::1" in shown


def test_a_url_without_a_password_is_unchanged():
    assert redact_url("redis://localhost:6379/2") == "redis://localhost:6379/2"


# -- log records (--log-level / MASSGEN_LOG) ---------------------------------------------------
def _emit(redactor, msg: str, *args: object, exc: BaseException | None = None) -> str:
    import io
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(redactor)
    logger = logging.getLogger(f"test.redact.{id(stream)}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        if exc is None:
            logger.warning(msg, *args)
        else:
            try:
                raise exc
            except type(exc):
                logger.exception(msg, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.parametrize(
    "line",
    [
        "key from the environment: {env}",
        "POST with headers {{'Authorization': 'Bearer tok-{env}'}}",
        "openai key sk-proj-Abc123def456ghi789 in a message",
        "anthropic key sk-ant-api03-Abc123def456ghi789",
        "google key AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStU",
        "headers: {{'x-api-key': 'whatever-it-is'}}",
        "connecting to redis://default:{env}@cache.internal:6379/0",
    ],
)
def test_log_records_lose_their_secrets(line: str) -> None:
    from massgen.redact import SecretRedactor

    redactor = SecretRedactor({"MY_SERVICE_TOKEN": CANARY, "HOME": "/root"})
    shown = _emit(redactor, line.format(env=CANARY))
    assert CANARY not in shown and "***" in shown
    for secret in ("sk-proj-Abc123", "sk-ant-api03", "AIzaSyA1b2", "whatever-it-is"):
        assert secret not in shown


def test_arguments_and_tracebacks_are_redacted_too() -> None:
    from massgen.redact import SecretRedactor

    redactor = SecretRedactor({})
    redactor.add(CANARY)
    shown = _emit(redactor, "failed with %s", CANARY, exc=ValueError(f"bad key {CANARY}"))
    assert "Traceback" in shown and "ValueError: bad key ***" in shown
    assert CANARY not in shown
    assert _emit(redactor, "nothing secret here") == "nothing secret here\n"


def test_the_log_level_option_is_checked_and_logs_to_stderr(offline: Path) -> None:
    from tests.procs import run_massgen

    def massgen(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_massgen(*args, env=env)

    team = str(offline)
    bad = massgen("--log-level", "loud", "config", "validate", team)
    assert bad.returncode == 2 and "--log-level" in bad.stderr and "debug" in bad.stderr
    run = ("run", team, "What is the capital of France?", "--no-record", "--quiet")
    on = massgen(*run, MASSGEN_LOG="debug")
    assert on.returncode == 0 and " DEBUG asyncio" in on.stderr
    off = massgen(*run, MASSGEN_LOG="")
    assert off.returncode == 0 and "DEBUG" not in off.stderr


def test_a_query_parameter_named_like_a_secret_is_hidden():
    """An MCP server's URL may carry its key in the query (``?api_key=``)."""
    for name in ("api_key", "token", "apiKey", "access_token", "client_secret"):
        shown = redact_url(f"https://mcp.example.com/mcp?{name}={CANARY}&profile=p")
        assert CANARY not in shown and "profile=p" in shown and f"{name}=***" in shown
