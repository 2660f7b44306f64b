"""The Redis transport on redis-py's public API: pipelined commands, errors, cancellation,
reconnection, script reloading, TLS, unix sockets and one shared client per URL, against
real redis-servers."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import exceptions as rexc

from massgen.errors import TransportError
from massgen.mas import Agent, AgentMessage, Envelope, MessageKind, RedisTransport
from massgen.mas.message import decode, encode, slow_encode
from massgen.mas.transport import AgentRecord
from massgen.store.redis_client import RedisLease, shared_client

from .helpers import FAST, SHARED_REDIS, Recorder, RedisServer, clean_prefix, free_port


async def test_concurrent_commands_share_pipelines_and_get_their_own_replies(prefix: str) -> None:
    t = RedisTransport(SHARED_REDIS, prefix=prefix)
    try:
        pipe = t._pipe
        await pipe.run([("SET", f"{prefix}k{i}", f"v{i}") for i in range(50)])
        got = await asyncio.gather(*(pipe.call("GET", f"{prefix}k{i}") for i in range(50)))
        assert got == [f"v{i}".encode() for i in range(50)]
        assert await pipe.run([("INCR", f"{prefix}n")] * 5) == [1, 2, 3, 4, 5]
        await pipe.call("SET", f"{prefix}s", "x")
        replies = await pipe.run([("GET", f"{prefix}s"), ("LPUSH", f"{prefix}s", "y")])
        assert replies[0] == b"x" and isinstance(replies[1], rexc.ResponseError)
        with pytest.raises(rexc.ResponseError, match="WRONGTYPE"):
            await pipe.call("LPUSH", f"{prefix}s", "y")
        assert await pipe.call("GET", f"{prefix}s") == b"x"  # still in step
    finally:
        await t.close()


async def test_a_cancelled_call_does_not_shift_the_replies(prefix: str) -> None:
    t = RedisTransport(SHARED_REDIS, prefix=prefix)
    try:
        await t._pipe.run([("SET", f"{prefix}a", "A"), ("SET", f"{prefix}b", "B")])
        first = asyncio.ensure_future(t._pipe.call("GET", f"{prefix}a"))
        queued = asyncio.ensure_future(t._pipe.call("GET", f"{prefix}b"))
        await asyncio.sleep(0)
        first.cancel()
        assert await queued == b"B"
        assert await t._pipe.call("GET", f"{prefix}a") == b"A"
    finally:
        await t.close()


async def test_one_client_per_url_shared_until_the_last_user_closes(prefix: str) -> None:
    a, b = RedisTransport(SHARED_REDIS, prefix=prefix), RedisTransport(SHARED_REDIS, prefix=prefix)
    lease = RedisLease(SHARED_REDIS)
    try:
        assert a.client is b.client is lease.client
        assert RedisTransport(SHARED_REDIS, retries=0).client is not a.client  # other options
        await a.close()
        assert await b.client.ping()  # still open for the others
    finally:
        await b.close()
        await lease.aclose()
    fresh = shared_client(SHARED_REDIS)
    try:
        assert fresh is not lease._client  # the last release closed the old one
    finally:
        from massgen.store.redis_client import release_client

        await release_client(fresh)


async def test_reconnects_and_reloads_scripts_after_a_restart(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()
    t = RedisTransport(server.url, prefix="r:")
    record = AgentRecord(id="a", instance_id="0123456789abcdef")
    try:
        await t.register(record, ttl=60, retention=60)
        await asyncio.to_thread(server.stop)
        call = asyncio.ensure_future(t.register(record, ttl=60, retention=60))
        await asyncio.sleep(0.3)  # the fault: Redis stays down while the call retries
        assert not call.done()
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(call, 10)  # a new server: no key, no script
        assert [r.id for r in await t.discover()] == ["a"]
    finally:
        await t.close()


async def test_gives_up_after_its_retries() -> None:
    t = RedisTransport(f"redis://127.0.0.1:{free_port()}/0", retries=1)
    try:
        with pytest.raises(TransportError, match="ConnectionError"):
            await t.discover()
    finally:
        await t.close()


async def test_bus_over_tls_with_a_password(
    redis_server: Callable[..., RedisServer], tmp_path: Path
) -> None:
    """rediss:// with AUTH carries sends, blocking reads and replies."""
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
        reference = slow_encode(msg)
    except Exception as e:  # what pydantic refuses (lone surrogates), encode refuses too
        with pytest.raises(type(e)):
            encode(msg)
        return
    assert encode(msg) == reference
    assert decode(reference).id == msg.id


async def test_unix_socket_url(redis_server: Callable[..., RedisServer], tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    redis_server("--unixsocket", str(sock), "--unixsocketperm", "700")
    t = RedisTransport(f"unix://{sock}?db=0", prefix="u:")
    try:
        await t.connect()
        await t.ensure_inbox("a")
        await t.send([Envelope(AgentMessage(id="m1", sender_id="s", target_id="a"))])
        [d] = await t.fetch("a", "c", count=10, block=0.01)
        assert d.envelope is not None and d.envelope.message.id == "m1"
        assert await t.fetch("a", "c", count=10, block=0.01) == []
    finally:
        await t.close()


async def test_a_frozen_server_times_out_and_the_transport_recovers(
    redis_server: Callable[..., RedisServer],
) -> None:
    """SIGSTOP: the socket stays open but nothing answers, which TCP does not notice. A call
    gives up after the reply timeout; after SIGCONT the transport carries on."""
    server = redis_server()
    t = RedisTransport(server.url, prefix="f:", retries=0, reply_timeout=0.3)
    pid = server.proc.pid if server.proc else 0
    try:
        assert await t.discover() == []
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(TransportError, match="Timeout"):
                await asyncio.wait_for(t.discover(), 5)
            with pytest.raises(TransportError, match="Timeout"):  # a blocking read too
                await asyncio.wait_for(t.fetch("a", "c", count=1, block=0.1), 5)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert await t.discover() == []
    finally:
        await t.close()
