"""R9: whatever document a user writes, loading it raises ConfigError or succeeds."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from massgen.config import TeamConfig, loads
from massgen.errors import ConfigError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID: dict[str, Any] = {
    "name": "fuzz",
    "backends": {
        "fast": {"type": "openai", "model": "gpt-4o-mini", "timeout": 30, "temperature": 0.5},
        "sim": {"type": "replay", "latency": 0, "rules": [{"match": "x", "reply": "y"}]},
    },
    "agents": [
        {"name": "ada", "backend": "fast", "role": "r", "tools": ["calculator"], "fallback": "bob"},
        {
            "name": "bob",
            "backend": {"type": "anthropic", "max_tokens": 100},
            "memory": {"strategy": "summary", "size": 500},
        },
        {"name": "cy", "backend": "sim", "memory_strategy": "full", "capabilities": ["a"]},
    ],
    "orchestrator": {
        "strategy": "consensus",
        "consensus": {"threshold": 0.6, "max_rounds": 2, "presenter": "ada"},
        "cache_enabled": True,
        "max_retries": 1,
    },
    "redis": {"url": "redis://localhost:6379/0"},
    "tools": {"file_reader": {"root": "docs"}},
    "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}},
}

text_values = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    text_values,
    st.sampled_from(["openai", "ada", "${X}", "$${", "${X:-1}", "consensus", "-1", "", "~"]),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(text_values, st.sampled_from(list(VALID) + ["name", "type", "backend"])),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*path, i))
    return out


PATHS = _paths(VALID)[1:]


def _check(text: str, *, need_line: bool) -> None:
    try:
        team = loads(text, file="fuzz.yaml", env={"X": "1"})
    except ConfigError as e:
        assert e.file == "fuzz.yaml"
        assert e.message and "errors.pydantic.dev" not in str(e)
        if need_line:
            assert e.line is not None and e.line >= 1, str(e)
    else:
        assert isinstance(team, TeamConfig) and team.agents


def test_the_valid_base_document_loads() -> None:
    team = loads(yaml.safe_dump(VALID), env={})
    assert [a.name for a in team.agents] == ["ada", "bob", "cy"]


@FUZZ
@given(documents)
def test_random_documents(doc: Any) -> None:
    _check(yaml.safe_dump(doc, allow_unicode=True), need_line=doc is not None)


@FUZZ
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    _check(text, need_line=False)


@FUZZ
@given(
    st.sampled_from(PATHS),
    st.sampled_from(["replace", "unknown_key", "delete", "wrap_list", "null"]),
    scalars | documents,
)
def test_mutated_valid_config(path: tuple[Any, ...], how: str, junk: Any) -> None:
    doc = copy.deepcopy(VALID)
    parent: Any = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if how == "replace":
        parent[last] = junk
    elif how == "null":
        parent[last] = None
    elif how == "wrap_list":
        parent[last] = [parent[last]]
    elif how == "delete":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last]["tmperature" if isinstance(junk, str) else "extra"] = junk
    else:
        parent[last] = {"x": junk}
    _check(yaml.safe_dump(doc, allow_unicode=True), need_line=True)
