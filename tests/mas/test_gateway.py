"""Gateway mode (the seed framework's ``use_gateway``/``set_gateway``/``GatewayService``)
on real Redis: token authentication, permissions, rate limits, signatures, audit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from massgen.errors import ConfigError
from massgen.mas import (
    Agent,
    AgentMessage,
    GatewayRejected,
    GatewayService,
    GatewaySettings,
    RemoteError,
)
from massgen.mas.gateway import FeaturesSettings, RateLimitSettings

from .helpers import SHARED_REDIS, Bus, Recorder, until

SECRET = "gateway-test-secret"


@pytest.fixture
async def gateway(prefix: str) -> AsyncIterator[GatewayService]:
    gw = GatewayService(redis_url=SHARED_REDIS, prefix=prefix)
    await gw.start()
    yield gw
    await gw.stop()


async def _pair(bus: Bus, gw: GatewayService) -> tuple[Agent, Recorder]:
    target = bus.agent(Recorder, "target_agent", use_gateway=True)
    target.set_gateway(gw)
    await target.start()
    agent = bus.agent(Agent, "my_agent", capabilities=["worker"], use_gateway=True)
    agent.set_gateway(gw)
    await agent.start()
    return agent, target


async def test_the_seed_basic_setup_delivers_once_allowed(
    redis_bus: Bus, gateway: GatewayService
) -> None:
    agent, target = await _pair(redis_bus, gateway)
    with pytest.raises(RuntimeError, match="AUTHZ_DENIED") as denied:
        await agent.send("target_agent", {"data": "secure message"})
    assert isinstance(denied.value, GatewayRejected)
    [inbox] = [s for s in await target.transport.inbox_stats() if s.agent_id == "target_agent"]
    assert inbox.length == 0  # refused before it was stored
    auth = gateway.auth_manager()
    await auth.allow_bidirectional("my_agent", "target_agent")
    arrived = target.expect(1)
    await agent.send("target_agent", {"data": "secure message"})
    await until(arrived)
    assert [m.payload for m in target.got] == [{"data": "secure message"}]
    log = await gateway.audit_log(sender_id="my_agent")
    assert [e["decision"] for e in log] == ["AUTHZ_DENIED", "ALLOWED"]
    assert all("secure message" not in str(e) for e in log)  # payloads only as hashes
    assert len(log[-1]["payload_hash"]) == 64


async def test_a_wrong_or_stale_token_is_refused(redis_bus: Bus, gateway: GatewayService) -> None:
    agent, _ = await _pair(redis_bus, gateway)
    await gateway.auth_manager().allow_wildcard("my_agent")
    msg = AgentMessage(id="m1", sender_id="my_agent", target_id="target_agent", payload={})
    assert agent.token is not None
    forged = await gateway.handle_message(msg, "not-the-token")
    assert (forged.success, forged.decision) == (False, "AUTH_FAILED")
    ok = await gateway.handle_message(msg, agent.token)
    assert (ok.success, ok.decision) == (True, "ALLOWED")
    old = agent.token
    await agent.stop()
    gone = await gateway.handle_message(msg, old)
    assert (gone.success, gone.decision) == (False, "AUTH_FAILED")
    await agent.start()  # a new token; the old one is refused
    assert (await gateway.handle_message(msg, old)).decision == "AUTH_FAILED"
    assert (await gateway.handle_message(msg, agent.token)).decision == "ALLOWED"


async def test_blocked_wins_over_wildcard_and_targets_must_be_live(
    redis_bus: Bus, gateway: GatewayService
) -> None:
    agent, _ = await _pair(redis_bus, gateway)
    auth = gateway.auth_manager()
    await auth.allow_wildcard("my_agent")
    await auth.block("my_agent", "target_agent").apply()
    with pytest.raises(GatewayRejected) as e:
        await agent.send("target_agent", {})
    assert e.value.decision == "AUTHZ_DENIED"
    with pytest.raises(GatewayRejected, match="not a live agent"):
        await agent.send("nobody", {})
    assert await gateway.get_permissions("my_agent") == {
        "allowed": ["*"],
        "blocked": ["target_agent"],
    }


async def test_rate_limits_per_sender(redis_bus: Bus, prefix: str) -> None:
    settings = GatewaySettings(
        redis={"url": SHARED_REDIS, "prefix": prefix},  # type: ignore[arg-type]
        rate_limit=RateLimitSettings(per_minute=3, per_hour=100),
    )
    async with GatewayService(settings) as gw:
        agent, target = await _pair(redis_bus, gw)
        await gw.auth_manager().allow_bidirectional("my_agent", "target_agent")
        for i in range(3):
            await agent.send("target_agent", {"i": i})
        with pytest.raises(GatewayRejected) as e:
            await agent.send("target_agent", {"i": 3})
        assert e.value.decision == "RATE_LIMITED"
        await gw.set_limits("target_agent", per_minute=1)
        assert await gw.rate_limits("target_agent") == (1, 100)
        assert await gw.rate_limits("my_agent") == (3, 100)


async def test_requests_and_replies_both_pass_the_gateway(
    redis_bus: Bus, gateway: GatewayService
) -> None:
    class Doctor(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            await message.reply({"diagnosis": "rest"})

    from dataclasses import replace

    from .helpers import FAST

    doctor = redis_bus.agent(
        Doctor, "doctor", use_gateway=True, settings=replace(FAST, max_deliveries=2)
    )
    doctor.set_gateway(gateway)
    await doctor.start()
    patient = redis_bus.agent(Agent, "patient", use_gateway=True)
    patient.set_gateway(gateway)
    await patient.start()
    auth = gateway.auth_manager()
    await auth.allow("patient", "doctor").apply()  # one way: the doctor may not answer
    with pytest.raises(RemoteError, match="AUTHZ_DENIED"):
        await patient.request("doctor", {"symptoms": ["cough"]}, timeout=20)
    await auth.allow_bidirectional("patient", "doctor")
    # each reply comes as it is sent, not from the stored copy read at the 20 s timeout
    async with asyncio.timeout(10):
        for _ in range(3):
            response = await patient.request("doctor", {"symptoms": ["cough"]}, timeout=20)
            assert response.payload == {"diagnosis": "rest"}


async def test_signing_is_checked_when_asked(redis_bus: Bus, prefix: str) -> None:
    settings = GatewaySettings(
        redis={"url": SHARED_REDIS, "prefix": prefix},  # type: ignore[arg-type]
        features=FeaturesSettings(message_signing=True),
        secret=SECRET,
    )
    async with GatewayService(settings) as gw:
        target = redis_bus.agent(Recorder, "target_agent", secret=SECRET)
        await target.start()
        good = redis_bus.agent(Agent, "good", use_gateway=True, secret=SECRET)
        bad = redis_bus.agent(Agent, "bad", use_gateway=True, secret="another")
        plain = redis_bus.agent(Agent, "plain", use_gateway=True)
        for a in (good, bad, plain):
            a.set_gateway(gw)
            await a.start()
            await gw.auth_manager().allow_wildcard(a.id)
        arrived = target.expect(1)
        await good.send("target_agent", {"ok": True})
        await until(arrived)
        for a in (bad, plain):
            with pytest.raises(GatewayRejected) as e:
                await a.send("target_agent", {"ok": False})
            assert e.value.decision == "SIGNATURE_INVALID"
        assert [m.payload for m in target.got] == [{"ok": True}]


async def test_features_it_does_not_have_are_refused_at_start(prefix: str) -> None:
    for feature in ("dlp", "priority_queue", "rbac", "circuit_breaker"):
        gw = GatewayService(
            GatewaySettings(features=FeaturesSettings(**{feature: True})), prefix=prefix
        )
        with pytest.raises(ConfigError, match=feature):
            await gw.start()
        assert not gw.running
    no_secret = GatewaySettings(features=FeaturesSettings(message_signing=True))
    with pytest.raises(ConfigError, match="secret"):
        await GatewayService(no_secret, prefix=prefix).start()


async def test_gateway_mode_without_a_gateway_is_a_runtime_error(redis_bus: Bus) -> None:
    a = Agent("lonely", None, SHARED_REDIS, None, True, prefix=redis_bus.prefix)  # seed order
    redis_bus.agents.append(a)
    assert a.use_gateway and a.gateway_url == SHARED_REDIS
    await a.start()
    with pytest.raises(RuntimeError, match="set_gateway"):
        await a.send("anyone", {})


async def test_settings_from_yaml(tmp_path: object, prefix: str) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "gateway.yaml"
    path.write_text(
        f"redis:\n  url: {SHARED_REDIS}\n  prefix: '{prefix}'\n"
        "rate_limit:\n  per_minute: 7\n  per_hour: 70\n"
        "features:\n  message_signing: false\n"
    )
    s = GatewaySettings.from_yaml(path)
    assert (s.rate_limit.per_minute, s.rate_limit.per_hour, s.redis.prefix) == (7, 70, prefix)
    async with GatewayService(s) as gw:
        assert (await gw.get_stats())["status"] == "running"
