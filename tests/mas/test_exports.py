"""The public API of massgen.mas, and that importing it stays light (no redis)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import massgen.mas as mas


def test_every_exported_name_exists() -> None:
    for name in mas.__all__:
        assert getattr(mas, name) is not None, name
    assert {"Agent", "AgentMessage", "MASService", "MemoryTransport", "RedisTransport"} <= set(
        mas.__all__
    )


def test_import_does_not_load_redis() -> None:
    code = "import sys, massgen.mas; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_both_transports_offer_the_same_methods() -> None:
    def api(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(fn)
            for name, fn in inspect.getmembers(cls, inspect.iscoroutinefunction)
            if not name.startswith("_")
        }

    memory, redis = api(mas.MemoryTransport), api(mas.RedisTransport)
    assert {"send", "fetch", "ack", "reclaim", "commit_reply", "read_replies"} <= set(memory)
    assert memory == redis


def test_signer_never_shows_its_secret() -> None:
    s = mas.Signer("top-secret-value")
    assert "top-secret" not in repr(s) and "top-secret" not in str(s)


def test_the_seed_gateway_names_exist() -> None:
    from massgen.mas import gateway

    for name in gateway.__all__:
        assert getattr(gateway, name) is not None, name
    assert {"GatewayService", "GatewaySettings", "GatewayResult"} <= set(mas.__all__)
    assert issubclass(mas.GatewayRejected, RuntimeError)  # what the seed's send() raises
