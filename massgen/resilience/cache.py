"""Serve repeated LLM requests from a :class:`~massgen.store.base.Store`, making no provider call.

The key is a SHA-256 of canonical JSON over everything that shapes the answer (backend,
model, messages, tools, provider-side tools, temperature, max_tokens, ``extra``; not the
timeout). Only successful answers are stored, those cut at ``max_tokens`` included; never an
error, a filtered or empty answer (docs/cache.md says why). A store that fails never fails a
request: it is logged, counted in ``store_errors``, and the provider is asked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from massgen.backends.base import Backend, innermost
from massgen.errors import TransportError
from massgen.resilience.wrapper import Wrapper
from massgen.serialize import completion_from_dict, completion_to_dict
from massgen.types import Completion, CompletionRequest, StreamChunk

if TYPE_CHECKING:
    from massgen.store.base import Store

log = logging.getLogger(__name__)

#: Where the cache lives when the config names no path and no Redis.
DEFAULT_CACHE_PATH = Path(".massgen") / "cache.sqlite3"
#: Every cache key starts with this (then the namespace): ``delete_prefix`` it to clear.
KEY_PREFIX = "cache:"
#: Part of every hash: bump it when the key's recipe changes (never for the entry format,
#: or every entry already stored would be lost).
FORMAT_VERSION = 2
#: The format of a stored entry; older entries are upgraded as they are read.
ENTRY_VERSION = 3
_CACHEABLE_FINISHES = frozenset({"stop", "tool_calls", "length"})
_STREAM_PIECES = 4


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot key a {type(value).__name__} value")


def _canonical(payload: Any) -> bytes:
    return json.dumps(
        payload,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
        default=_plain,
    ).encode()


def cache_key(request: CompletionRequest, provider: str, model: str) -> str:
    """The hex SHA-256 naming ``request`` sent to ``model`` of ``provider``.

    Stable across processes, machines and Python versions (no ``hash()``, sorted keys).
    Raises :class:`TypeError` or :class:`ValueError` if ``extra`` or a tool schema holds
    something JSON cannot spell (such a request is simply not cached).
    """
    payload = {
        "v": FORMAT_VERSION,
        "provider": provider,
        "model": model,
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls
                ],
                "tool_call_id": m.tool_call_id,
                "name": m.name,
            }
            for m in request.messages
        ],
        "tools": [
            {"name": t.name, "description": t.description, "parameters": t.parameters}
            for t in request.tools
        ],
        "tool_choice": request.tool_choice,
        "native_tools": [
            [t.name, t.max_uses, list(t.allowed_domains), list(t.blocked_domains)]
            for t in request.native_tools
        ],
        "temperature": None if request.temperature is None else float(request.temperature),
        "max_tokens": request.max_tokens,
        "extra": request.extra,
    }
    return hashlib.sha256(_canonical(payload)).hexdigest()


def backend_identity(backend: Backend) -> str:
    """Who answers behind ``backend`` (through any wrappers): provider, class and endpoint.

    Two backends with one identity and one model share cache entries; give backends the key
    cannot tell apart (two custom functions of one class) their own namespace.
    """
    inner = innermost(backend)
    cls = type(inner)
    identity = f"{inner.provider}:{cls.__module__}.{cls.__qualname__}"
    base_url = getattr(inner, "base_url", None)
    return f"{identity}@{base_url}" if base_url else identity


def cacheable(completion: Completion) -> bool:
    """Whether ``completion`` may be served again (see the module docstring for why)."""
    if completion.finish_reason not in _CACHEABLE_FINISHES:
        return False
    return bool(completion.text or completion.tool_calls)


def encode_completion(completion: Completion) -> bytes:
    """``completion`` as a cache entry: every field, in :mod:`massgen.serialize`'s shape."""
    return _canonical({"v": ENTRY_VERSION, **completion_to_dict(completion)})


def decode_completion(blob: bytes, latency: float) -> Completion:
    """The stored answer, marked ``cached`` and timed at ``latency`` (the lookup's).

    Raises :class:`ValueError` (or ``KeyError``/``TypeError``) for an entry it cannot read.
    """
    data = json.loads(blob)
    version = data.pop("v", None)
    if version == 2:
        data = _upgrade_v2(data)
    elif version != ENTRY_VERSION:
        raise ValueError(f"cache entry format {version!r}")
    return replace(completion_from_dict(data), latency=latency, cached=True, requests=0)


def _upgrade_v2(data: dict[str, Any]) -> dict[str, Any]:
    """An entry of format 2 (usage and sources as pairs) in today's shape."""
    tokens_in, tokens_out = data["usage"]
    return data | {
        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
        "sources": [{"url": url, "title": title} for url, title in data["sources"]],
    }


def pieces(text: str, count: int = _STREAM_PIECES) -> list[str]:
    """``text`` in about ``count`` deltas, cut after whitespace, so a replay still streams."""
    size = max(1, -(-len(text) // count))
    out: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        while end < len(text) and not text[end - 1].isspace():
            end += 1
        out.append(text[start:end])
        start = end
    return out


class CachingBackend(Wrapper):
    """Wraps a backend; identical requests are answered from ``store``.

    Entries live ``ttl`` seconds (``None``: until cleared) under
    ``cache:{namespace}:{sha256}``. ``hits`` and ``misses`` count calls served from the
    store and calls that reached the inner backend. The store is not closed by
    :meth:`aclose`: whoever opened it (and may share it) closes it.
    """

    def __init__(
        self,
        inner: Backend,
        store: Store,
        ttl: float | None = None,
        *,
        namespace: str = "default",
    ) -> None:
        super().__init__(inner)
        self.store = store
        self.ttl = ttl
        self.namespace = namespace
        self.hits = 0
        self.misses = 0
        self.store_errors = 0
        self._identity = backend_identity(inner)

    def key_for(self, request: CompletionRequest) -> str | None:
        """The store key of ``request``, or ``None`` if it cannot be keyed (not cached)."""
        try:
            digest = cache_key(request, self._identity, request.model or self.inner.model)
        except (TypeError, ValueError) as e:
            log.debug("request not cached: %s", e)
            return None
        return f"{KEY_PREFIX}{self.namespace}:{digest}"

    async def _lookup(self, key: str | None) -> Completion | None:
        if key is None:
            return None
        started = time.perf_counter()
        try:
            blob = await self.store.get(key)
        except TransportError as e:
            self.store_errors += 1
            log.warning("cache read failed, asking the provider: %s", e)
            return None
        if blob is None:
            return None
        try:
            return decode_completion(blob, time.perf_counter() - started)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            log.debug("unreadable cache entry %s ignored: %s", key, e)
            return None

    async def _remember(self, key: str | None, completion: Completion) -> None:
        if key is None or not cacheable(completion):
            return
        try:
            blob = encode_completion(completion)
        except (TypeError, ValueError) as e:
            log.debug("answer not cached: %s", e)
            return
        try:
            await self.store.set(key, blob, self.ttl)
        except TransportError as e:
            self.store_errors += 1
            log.warning("cache write failed; the answer is returned uncached: %s", e)

    def _count(self, request: CompletionRequest, key: str | None, hit: Completion | None) -> None:
        if hit is not None:
            self.hits += 1
        else:
            self.misses += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "cache %s agent=%s key=%s%s",
                "miss" if hit is None else "hit",
                (request.call.agent if request.call else "") or "-",
                key[: len(KEY_PREFIX) + len(self.namespace) + 13] if key else "-",
                f" model={hit.model} tokens={hit.usage.total_tokens} saved" if hit else "",
            )

    async def complete(self, request: CompletionRequest) -> Completion:
        key = self.key_for(request)
        hit = await self._lookup(key)
        self._count(request, key, hit)
        if hit is not None:
            return hit
        completion = await self.inner.complete(request)
        await self._remember(key, completion)
        return completion

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        key = self.key_for(request)
        hit = await self._lookup(key)
        self._count(request, key, hit)
        if hit is not None:
            for delta in pieces(hit.text):
                yield StreamChunk(delta=delta)
            yield StreamChunk(completion=hit)
            return
        async for chunk in self.inner.stream(request):
            if chunk.completion is not None:
                # Store before handing it on: the consumer may stop iterating after it.
                await self._remember(key, chunk.completion)
            yield chunk

    async def clear(self) -> int:
        """Delete this namespace's entries; how many there were."""
        return await self.store.delete_prefix(f"{KEY_PREFIX}{self.namespace}:")
