"""STAND-IN for the dashboard (built elsewhere): the interface ``massgen serve`` mounts, doing
nothing. Dropped at merge in favour of the real one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from massgen.events import Event


class Board:
    """The live dashboard: one subscriber per run feeds it; its routes serve the page."""

    def __init__(
        self, *, redis_url: str | None = None, prefix: str | None = None, keep: int = 50
    ) -> None:
        self.redis_url, self.prefix, self.keep = redis_url, prefix, keep

    def subscriber(self, team: str, run_model: str) -> Callable[[Event], None]:
        def heard(event: Event) -> None:
            return None

        heard.wants_deltas = False  # type: ignore[attr-defined]
        return heard

    def routes(self) -> list[web.RouteDef]:
        return []

    async def aclose(self) -> None:
        return None
