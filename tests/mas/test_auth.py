"""R16: a Redis with requirepass refuses a missing or wrong password with a clear error of
our tree (a ConfigError: exit code 2), never a traceback, never the password."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from massgen.errors import ConfigError, ServiceUnreachable
from massgen.mas import Agent, BusAuthError, BusUnreachable, MASService, RedisTransport

from .helpers import RedisServer, free_port

PASSWORD = "s3cret-Pa55word"


async def test_no_password_is_refused_clearly(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server(password=PASSWORD)
    url = f"redis://127.0.0.1:{server.port}/0"
    agent = Agent("a", redis_url=url, prefix="auth:")
    with pytest.raises(BusAuthError) as info:
        await agent.start()
    assert isinstance(info.value, ConfigError)
    assert "requires a password" in str(info.value)
    assert agent.status == "stopped"


async def test_wrong_password_is_refused_without_echoing_it(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server(password=PASSWORD)
    url = f"redis://:wrong-{PASSWORD}@127.0.0.1:{server.port}/0"
    with pytest.raises(BusAuthError) as info:
        await Agent("a", redis_url=url, prefix="auth:").start()
    text = str(info.value) + repr(info.value)
    assert "refused the credentials" in text
    assert PASSWORD not in text and "wrong-" not in text


async def test_right_password_works_and_nothing_was_written_before(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server(password=PASSWORD)
    bad = f"redis://:nope@127.0.0.1:{server.port}/0"
    with pytest.raises(BusAuthError):
        await Agent("a", redis_url=bad, prefix="auth:").start()
    async with Agent("a", redis_url=server.url, prefix="auth:") as agent:
        assert isinstance(agent.transport, RedisTransport)
        keys = await agent.transport.client.keys("*")
        assert {k.decode() for k in keys} == {
            "auth:inbox:a",
            "auth:registry",
            "auth:agent:a",
        }


async def test_unreachable_redis_is_not_a_config_error_and_a_bad_url_is() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(BusUnreachable, match="cannot reach Redis") as down:
        await Agent("a", redis_url=url).start()
    assert isinstance(down.value, ServiceUnreachable) and not isinstance(down.value, ConfigError)
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        Agent("a", redis_url="http://:pw@host")


def test_service_cli_exits_2_with_one_line(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server(password=PASSWORD)
    url = f"redis://:bad-{PASSWORD}@127.0.0.1:{server.port}/0"
    proc = subprocess.run(
        [sys.executable, "-m", "massgen.mas.service", "--redis", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "refused the credentials" in proc.stderr
    assert PASSWORD not in proc.stderr + proc.stdout


async def test_service_start_raises_on_bad_password(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server(password=PASSWORD)
    with pytest.raises(BusAuthError):
        await MASService(f"redis://127.0.0.1:{server.port}/0").start()
