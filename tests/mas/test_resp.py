"""The lean Redis client of the hot path (massgen.mas.resp): pipelining, errors,
cancellation, reconnection, script reloading and TLS, against real redis-servers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import exceptions as rexc

from massgen.mas import Agent, AgentMessage, MessageKind, wire
from massgen.mas.resp import RespClient, pack

from .helpers import FAST, SHARED_REDIS, Recorder, RedisServer, clean_prefix, free_port


def _client(url: str, retries: int = 12) -> tuple[aioredis.Redis, RespClient]:
    r = aioredis.Redis.from_url(url)
    return r, RespClient(r.connection_pool, retries=retries, backoff_cap=0.2)


def _count_retries(client: RespClient, n: int) -> asyncio.Event:
    """An event set once ``client`` has backed off ``n`` times (each retry asks its backoff)."""
    event = asyncio.Event()
    backoff = client._backoff
    compute = backoff.compute
    seen = []

    def counting(failures: int) -> float:
        seen.append(failures)
        if len(seen) >= n:
            event.set()
        return compute(failures)

    backoff.compute = counting  # type: ignore[method-assign]
    return event


@pytest.fixture
async def fast(prefix: str) -> AsyncIterator[tuple[RespClient, str]]:
    r, c = _client(SHARED_REDIS)
    try:
        yield c, prefix
    finally:
        await c.aclose()
        await r.aclose()


async def test_concurrent_calls_get_their_own_replies(fast: tuple[RespClient, str]) -> None:
    c, p = fast
    await c.pipeline([("SET", f"{p}k{i}", f"v{i}") for i in range(50)])
    got = await asyncio.gather(*(c.call("GET", f"{p}k{i}") for i in range(50)))
    assert got == [f"v{i}".encode() for i in range(50)]
    assert await c.pipeline([("INCR", f"{p}n")] * 5) == [1, 2, 3, 4, 5]


async def test_error_replies_keep_redis_py_classes(fast: tuple[RespClient, str]) -> None:
    c, p = fast
    await c.call("SET", f"{p}s", "x")
    with pytest.raises(rexc.ResponseError, match="WRONGTYPE"):
        await c.call("LPUSH", f"{p}s", "y")
    with pytest.raises(rexc.NoScriptError):
        await c.call("EVALSHA", "0" * 40, 0)
    with pytest.raises(rexc.ResponseError, match="WRONGTYPE"):  # one bad command fails the lot
        await c.pipeline([("GET", f"{p}s"), ("LPUSH", f"{p}s", "y")])
    with pytest.raises(rexc.ResponseError, match="WRONGTYPE"):  # counted, not kept: same
        await c.pipeline_ok([("XADD", f"{p}x", "*", "m", "1"), ("LPUSH", f"{p}s", "y")] * 3)
    assert await c.pipeline_ok([("XADD", f"{p}x", "*", "m", "2")] * 4) is None
    assert await c.call("XLEN", f"{p}x") == 7  # every command ran, the bad ones refused
    assert await c.call("GET", f"{p}s") == b"x"  # the connection is still in step


async def test_a_cancelled_call_does_not_shift_the_replies(fast: tuple[RespClient, str]) -> None:
    c, p = fast
    await c.pipeline([("SET", f"{p}a", "A"), ("SET", f"{p}b", "B")])
    task = asyncio.ensure_future(c.call("GET", f"{p}a"))
    await asyncio.sleep(0)  # the command is written; its reply is not read yet
    task.cancel()
    assert await c.call("GET", f"{p}b") == b"B"
    assert task.cancelled()


async def test_a_cancelled_blocking_read_leaves_the_client_usable(
    fast: tuple[RespClient, str],
) -> None:
    c, p = fast
    key = f"{p}stream"
    probe = aioredis.Redis.from_url(SHARED_REDIS)
    blocked = (await probe.info("clients"))["blocked_clients"]
    task = asyncio.ensure_future(
        c.call_blocking("XREAD", "BLOCK", 5000, "STREAMS", key, "$", wait=5)
    )
    async with asyncio.timeout(5):  # cancel only once Redis holds the read
        while (await probe.info("clients"))["blocked_clients"] <= blocked:
            await asyncio.sleep(0.005)
    await probe.aclose()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await c.call("XADD", key, "*", "m", "1")
    got = await c.call_blocking("XREAD", "BLOCK", 1000, "STREAMS", key, "0-0", wait=1)
    assert [fields for _, entries in got for _, fields in entries] == [[b"m", b"1"]]


async def test_reconnects_and_reloads_scripts_after_a_restart(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()
    r, c = _client(server.url)
    try:
        script = "return redis.call('INCR', KEYS[1])"
        assert await c.script(script, ["n"], []) == 1
        await asyncio.to_thread(server.stop)
        retried = _count_retries(c, 2)
        call = asyncio.ensure_future(c.script(script, ["n"], []))  # retries while it is down
        await asyncio.wait_for(retried.wait(), 10)
        assert not call.done()
        await asyncio.to_thread(server.start)
        assert await asyncio.wait_for(call, 10) == 1  # a new server: no key, no script
        assert await c.call("SCRIPT", "FLUSH") == b"OK"
        assert await c.script(script, ["n"], []) == 2
    finally:
        await c.aclose()
        await r.aclose()


async def test_gives_up_after_its_retries() -> None:
    r, c = _client(f"redis://127.0.0.1:{free_port()}/0", retries=2)
    try:
        with pytest.raises(rexc.ConnectionError):
            await c.call("PING")
    finally:
        await c.aclose()
        await r.aclose()


async def test_closed_client_opens_again_when_used(fast: tuple[RespClient, str]) -> None:
    c, p = fast
    await c.call("SET", f"{p}k", "1")
    await c.aclose()
    assert await c.call("GET", f"{p}k") == b"1"


def test_pack_matches_the_protocol() -> None:
    assert pack(["SET", "k", b"v\r\n", 3, 1.5]) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$1\r\n3\r\n$3\r\n1.5\r\n"
    )


async def test_bus_over_tls_with_a_password(
    redis_server: Callable[..., RedisServer], tmp_path: Path
) -> None:
    """rediss:// with AUTH: redis-py's handshake, then the socket handed to the lean client
    (an SSL transport) carries sends, blocking reads and replies."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    crt, key, ca_pem = tmp_path / "crt.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(crt))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_pem))
    tls_port = free_port()
    server = redis_server(
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(crt),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(ca_pem),
        "--tls-auth-clients",
        "no",
        password="tls-pw",
    )
    assert server.proc is not None
    url = f"rediss://:tls-pw@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca_pem}"
    p = f"tls{uuid.uuid4().hex[:6]}:"
    echo = Recorder("echo", redis_url=url, prefix=p, settings=FAST)
    me = Agent("me", redis_url=url, prefix=p, settings=FAST)
    await echo.start()
    await me.start()
    try:
        arrived = echo.expect(3)
        await me.send_many([("echo", {"i": i}) for i in range(2)])
        assert (await me.request("echo", {"i": 2}, timeout=5)).payload == {"echo": {"i": 2}}
        await asyncio.wait_for(arrived.wait(), 5)
        assert sorted(m.payload["i"] for m in echo.got) == [0, 1, 2]
    finally:
        await me.stop()
        await echo.stop()
        await clean_prefix(url, p)


_text = st.text(max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    ids=st.tuples(_text, _text, _text),
    payload=st.dictionaries(_text, _json, max_size=5),
    kind=st.sampled_from(list(MessageKind)),
    created=st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, 1.7e9]),
    extra=st.tuples(st.none() | _text, st.none() | _text, st.none() | _text),
)
def test_fast_encoding_is_pydantics_byte_for_byte(
    ids: tuple[str, str, str],
    payload: dict[str, object],
    kind: MessageKind,
    created: float,
    extra: tuple[str | None, str | None, str | None],
) -> None:
    msg = AgentMessage(
        id=ids[0],
        sender_id=ids[1],
        target_id=ids[2],
        payload=payload,
        kind=kind,
        created_at=created,
        correlation_id=extra[0],
        reply_to=extra[1],
        error=extra[2],
    )
    try:
        reference = wire.slow_encode(msg)
    except Exception as e:  # what pydantic refuses (lone surrogates), encode refuses too
        with pytest.raises(type(e)):
            wire.encode(msg)
        return
    assert wire.encode(msg) == reference
    assert wire.decode(reference).id == msg.id


async def test_unix_socket_url(redis_server: Callable[..., RedisServer], tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    redis_server("--unixsocket", str(sock), "--unixsocketperm", "700")
    r, c = _client(f"unix://{sock}?db=0")
    try:
        assert await c.pipeline([("SET", "k", "v"), ("GET", "k")]) == [b"OK", b"v"]
        assert await c.call_blocking("BLPOP", "nothing", 0.01, wait=0.01) is None
    finally:
        await c.aclose()
        await r.aclose()


async def test_a_frozen_server_times_out_and_the_client_recovers(
    redis_server: Callable[..., RedisServer],
) -> None:
    """SIGSTOP: the socket stays open but nothing answers, which TCP does not notice. Each
    call gives up after the reply timeout; after SIGCONT the client carries on."""
    import os
    import signal

    server = redis_server()
    r = aioredis.Redis.from_url(server.url)
    c = RespClient(r.connection_pool, retries=0, backoff_cap=0.05, reply_timeout=0.3)
    pid = server.proc.pid if server.proc else 0
    try:
        assert await c.call("PING") == b"PONG"
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(rexc.TimeoutError):
                await asyncio.wait_for(c.call("PING"), 5)
            with pytest.raises(rexc.TimeoutError):  # a blocking read: its wait, then the timeout
                await asyncio.wait_for(c.call_blocking("BLPOP", "k", 0.1, wait=0.1), 5)
            with pytest.raises(rexc.TimeoutError):  # a new connection's handshake too
                await asyncio.wait_for(c.call("PING"), 5)
            patient = RespClient(r.connection_pool, retries=50, backoff_cap=0.05, reply_timeout=0.3)
            retried = _count_retries(patient, 1)
            call = asyncio.ensure_future(patient.call("PING"))
            await asyncio.wait_for(retried.wait(), 10)
            assert not call.done()  # timed out once, still retrying while the server is frozen
        finally:
            os.kill(pid, signal.SIGCONT)
        assert await asyncio.wait_for(call, 10) == b"PONG"
        assert await c.call("PING") == b"PONG"  # the first client recovers as well
        await patient.aclose()
    finally:
        await c.aclose()
        await r.aclose()
