"""`massgen cache stats|clear`: look at and empty the response cache."""

from __future__ import annotations

import sys
from pathlib import Path

from massgen.cli.options import FindConfig, command, group

app = group("Look at or empty the response cache.")


@command(app, "stats")
def stats(config: FindConfig = None) -> int:
    """How many answers the cache holds, and where."""
    return _on_cache(config, clear=False)


@command(app, "clear")
def clear(config: FindConfig = None) -> int:
    """Remove every cached answer."""
    return _on_cache(config, clear=True)


def _on_cache(config: Path | None, *, clear: bool) -> int:
    import asyncio

    from massgen.cli import team_store
    from massgen.redact import redact_url
    from massgen.resilience.cache import DEFAULT_CACHE_PATH, KEY_PREFIX
    from massgen.store import open_store

    target, prefix = team_store(config, DEFAULT_CACHE_PATH, cache=True)
    if isinstance(target, Path) and not target.exists():
        if clear:
            print(f"cache: {target}: nothing to clear", file=sys.stderr)
        else:
            print(f"cache: {target} (empty: no file yet)")
        return 0

    async def work() -> int:
        async with open_store(target, prefix=prefix) as store:
            if clear:
                return await store.delete_prefix(KEY_PREFIX)
            return await store.count(KEY_PREFIX)

    entries = asyncio.run(work())
    where = str(target) if isinstance(target, Path) else redact_url(target)
    if clear:
        print(f"cache: {where}: {entries} entries removed")
    else:
        size = f", {target.stat().st_size / 1e6:.1f} MB" if isinstance(target, Path) else ""
        print(f"cache: {where}: {entries} entries{size}")
    return 0
