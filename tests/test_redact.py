"""Passwords never reach messages: one redaction for every Redis URL we print."""

from __future__ import annotations

import pytest

from massgen.mas.redis_transport import redact as transport_redact
from massgen.redact import redact_url
from massgen.store.redis_store import redact as store_redact

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
