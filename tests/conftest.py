"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from massgen.testing import netguard
from massgen.testing.simulator import ProviderSimulator


@pytest.fixture(autouse=True, scope="session")
def _netguard() -> Iterator[netguard.NetGuard]:
    """No test may connect beyond loopback: a real provider is never reached by accident."""
    guard = netguard.install()
    yield guard
    guard.uninstall()


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    """A provider simulator on a free loopback port, no latency, stopped after the test."""
    with ProviderSimulator() as simulator:
        yield simulator
