"""The shim that runs the seed framework's own tests against ``massgen.mas``.

The test files beside this one are mas-framework 0.2.2's, unmodified (see ORIGIN.md). They
import ``mas``; here that name is ``massgen.mas``. Nothing else about them is changed.
"""

from __future__ import annotations

import sys
import typing

import pytest
import typing_extensions

import massgen.mas

sys.modules.setdefault("mas", massgen.mas)
if not hasattr(typing, "override"):  # Python 3.11: the tests import it from typing
    typing.override = typing_extensions.override  # type: ignore[attr-defined]

#: Differences kept on purpose; each is explained in docs/mas.md.
EXPECTED_FAILURES = {
    "test_state_persistence": "state comes back typed (42), not as Redis's string '42'",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = EXPECTED_FAILURES.get(item.name)
        if reason is not None and "seed_suite" in str(item.path):
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.fixture(autouse=True)
def _seed(seed_defaults: str) -> None:
    """Every test here runs with :func:`tests.mas.conftest.seed_defaults`."""
