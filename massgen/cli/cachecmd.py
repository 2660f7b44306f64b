"""`massgen cache stats|clear`: look at and empty the response cache."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


def _target(config: Path | None) -> tuple[str | Path, str]:
    from massgen.cli import team_store
    from massgen.resilience.cache import DEFAULT_CACHE_PATH

    return team_store(config, DEFAULT_CACHE_PATH, cache=True)


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
