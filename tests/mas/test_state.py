"""Typed state survives a restart exactly, on both transports."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, Field

from massgen.mas import Agent, StateError

from .helpers import Bus


class Point(BaseModel):
    x: int
    y: float


class Rich(BaseModel):
    counter: int = 0
    ratio: float = 0.5
    tags: list[str] = Field(default_factory=list)
    path: list[Point] = Field(default_factory=list)
    home: Point | None = None
    seen: datetime | None = None
    flags: dict[str, bool] = Field(default_factory=dict)


async def test_model_state_round_trips_across_restart(bus: Bus) -> None:
    a = bus.agent(Agent, "typed", state_model=Rich)
    await a.start()
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await a.update_state(
        {"counter": 7, "tags": ["a", "b"], "path": [Point(x=1, y=2.0)], "seen": when}
    )
    await a.update_state({"home": {"x": 3, "y": 4.5}, "flags": {"on": True}})
    await a.stop()

    b = bus.agent(Agent, "typed", state_model=Rich)
    await b.start()
    s = b.state
    assert isinstance(s, Rich)
    assert s == Rich(
        counter=7,
        tags=["a", "b"],
        path=[Point(x=1, y=2.0)],
        home=Point(x=3, y=4.5),
        seen=when,
        flags={"on": True},
    )
    assert type(s.counter) is int and isinstance(s.path[0], Point) and s.seen == when


async def test_model_state_rejects_unknown_fields_and_bad_types(bus: Bus) -> None:
    a = bus.agent(Agent, "typed", state_model=Rich)
    await a.start()
    with pytest.raises(StateError, match="nope"):
        await a.update_state({"nope": 1})
    with pytest.raises(ValueError):
        await a.update_state({"counter": "not a number"})
    assert a.state.counter == 0


async def test_dict_state_refuses_what_json_would_change(bus: Bus) -> None:
    a = bus.agent(Agent, "plain")
    await a.start()
    for bad in ({"t": (1, 2)}, {"s": {1, 2}}, {"k": {1: "int key"}}, {"d": datetime.now()}):
        with pytest.raises(StateError):
            await a.update_state(bad)
    await a.update_state({"ok": [1, {"n": None}]})
    assert a.state == {"ok": [1, {"n": None}]}
