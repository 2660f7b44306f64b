"""`massgen cache stats|clear`: look at and empty the response cache."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from massgen.cli.batch import find_config

if TYPE_CHECKING:
    from massgen.config import TeamConfig


def _target(config: Path | None) -> tuple[str | Path, str]:
    """Where the cache of this team lives: the config's cache path, its Redis, or the default
    file; and the Redis key prefix."""

    from massgen.resilience.cache import DEFAULT_CACHE_PATH

    path = find_config(config, required=False)
    if path is None:
        return DEFAULT_CACHE_PATH, "massgen:"
    from massgen.config import load

    cfg = load(path)
    if cfg.orchestrator.cache.path:
        return Path(cfg.orchestrator.cache.path), "massgen:"
    if cfg.redis is not None:
        return reach_redis(cfg)
    return DEFAULT_CACHE_PATH, "massgen:"


def reach_redis(cfg: TeamConfig) -> tuple[str, str]:
    """The config's Redis, reached once as every command reaches it (a refused URL is a
    located config error, one that does not answer exits 69)."""
    from massgen.distributed.target import BusTarget

    bus = BusTarget.resolve(None, cfg)
    assert bus is not None
    bus.check()
    return bus.url, bus.prefix


def _where(target: str | Path) -> str:
    if isinstance(target, Path):
        return str(target)
    from massgen.redact import redact_url

    return redact_url(target)


def stats(config: Path | None) -> int:
    from massgen.resilience.cache import KEY_PREFIX
    from massgen.store import open_store

    target, prefix = _target(config)
    if isinstance(target, Path) and not target.exists():
        print(f"cache: {target} (empty: no file yet)")
        return 0

    async def count() -> int:
        async with open_store(target, prefix=prefix) as store:
            return await store.count(KEY_PREFIX)

    entries = asyncio.run(count())
    size = f", {target.stat().st_size / 1e6:.1f} MB" if isinstance(target, Path) else ""
    print(f"cache: {_where(target)}: {entries} entries{size}")
    return 0


def clear(config: Path | None) -> int:
    from massgen.resilience.cache import KEY_PREFIX
    from massgen.store import open_store

    target, prefix = _target(config)
    if isinstance(target, Path) and not target.exists():
        print(f"cache: {target}: nothing to clear", file=sys.stderr)
        return 0

    async def wipe() -> int:
        async with open_store(target, prefix=prefix) as store:
            return await store.delete_prefix(KEY_PREFIX)

    removed = asyncio.run(wipe())
    print(f"cache: {_where(target)}: {removed} entries removed")
    return 0
