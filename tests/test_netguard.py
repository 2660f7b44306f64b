"""No test reaches beyond loopback: pytest-socket (configured in pyproject's addopts) refuses
every other address for every client we ship, so a real provider is never called by accident."""

from __future__ import annotations

import asyncio
import socket

import httpx
import openai
import pytest
from pytest_socket import SocketConnectBlockedError as SocketBlockedError

from tests.sim.simulator import ProviderSimulator

USER = [{"role": "user", "content": "hi"}]
PUBLIC = "203.0.113.1"  # TEST-NET-3: a public address nobody answers on

# pytest-socket also warns when it refuses (an error under filterwarnings=error, which still
# stops the test); here we look at the refusal itself.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pytest_socket")


def test_public_addresses_are_refused() -> None:
    with socket.socket() as s, pytest.raises(SocketBlockedError):
        s.connect((PUBLIC, 443))
    with pytest.raises(SocketBlockedError):
        socket.create_connection((PUBLIC, 443), timeout=1)
    with pytest.raises(SocketBlockedError):
        httpx.get(f"http://{PUBLIC}/", timeout=1)
    with socket.socket(socket.AF_INET6) as s, pytest.raises(SocketBlockedError):
        s.connect(("2001:db8::1", 443))


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in ``exc``'s cause chain (exception groups included)."""
    if exc is None:
        return False
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup) and any(_caused_by(e, kind) for e in exc.exceptions):
        return True
    return _caused_by(exc.__cause__ or exc.__context__, kind)


async def test_asyncio_and_sdk_clients_are_refused() -> None:
    with pytest.raises(SocketBlockedError):
        await asyncio.open_connection(PUBLIC, 443)
    caught: BaseException | None = None
    async with openai.AsyncOpenAI(
        base_url=f"http://{PUBLIC}/v1", api_key="k", max_retries=0
    ) as client:
        try:
            await client.chat.completions.create(model="m", messages=USER)
        except Exception as e:  # anyio wraps it in an ExceptionGroup that openai lets through
            caught = e
    assert _caused_by(caught, SocketBlockedError)


def test_the_refusal_is_not_an_oserror() -> None:
    """Retry loops and "connection failed" handlers catch OSError: they must not swallow it."""
    assert not issubclass(SocketBlockedError, OSError)


async def test_loopback_is_allowed(sim: ProviderSimulator) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.close()
    await writer.wait_closed()
    with socket.create_connection(("localhost", sim.port), timeout=2):
        pass
    with socket.socket(socket.AF_INET6) as s:
        s.settimeout(2)
        # ::ffff:127.0.0.1 is loopback too; nothing listens on IPv6 here, so any OSError is fine
        try:
            s.connect(("::ffff:127.0.0.1", sim.port))
        except OSError:
            pass
