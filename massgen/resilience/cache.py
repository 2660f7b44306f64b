"""Serve repeated LLM requests from a :class:`~massgen.store.base.Store` (docs/cache.md).
Only successful answers are stored; a store that fails is logged, never fails a request."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from massgen.backends.base import Backend, innermost
from massgen.errors import TransportError
from massgen.resilience.wrapper import Call, Wrapper
from massgen.serialize import completion_from_dict, completion_to_dict, from_json, to_dict
from massgen.types import Completion, CompletionRequest, StreamChunk

if TYPE_CHECKING:
    from massgen.store.base import Store

log = logging.getLogger(__name__)

DEFAULT_CACHE_PATH = Path(".massgen") / "cache.sqlite3"  # when the config names no path, no Redis
KEY_PREFIX = "cache:"  # then the namespace: ``delete_prefix`` it to clear the cache
FORMAT_VERSION = 3  # of the key's recipe (not of entries, or every stored entry would be lost)
ENTRY_VERSION = 3  # of a stored entry; older entries are upgraded as they are read
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def cache_key(request: CompletionRequest, provider: str, model: str) -> str:
    """The hex SHA-256 naming ``request`` sent to ``model`` of ``provider`` (no ``timeout``), the
    same in every process; :class:`ValueError` if JSON cannot spell it (then not cached)."""
    temperature = None if request.temperature is None else float(request.temperature)
    asked = replace(request, model=model, temperature=temperature, timeout=None, call=None)
    payload = {"v": FORMAT_VERSION, "provider": provider, **to_dict(asked)}
    for message in payload["messages"]:  # without images: the key it had before they existed
        if not message["images"]:
            del message["images"]
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def backend_identity(backend: Backend) -> str:
    """Who answers behind ``backend``'s wrappers: provider, class and endpoint."""
    inner = innermost(backend)
    identity = f"{inner.provider}:{type(inner).__module__}.{type(inner).__qualname__}"
    base_url = getattr(inner, "base_url", None)
    return f"{identity}@{base_url}" if base_url else identity


def encode_completion(completion: Completion) -> bytes:
    return _canonical({"v": ENTRY_VERSION, **completion_to_dict(completion)}).encode()


def decode_completion(blob: bytes, latency: float) -> Completion:
    """The stored answer (format 2 too), marked ``cached``; ValueError etc. if unreadable."""
    if blob.endswith(b',"v":%d}' % ENTRY_VERSION):  # sorted keys: "v" is last; one pass
        return replace(from_json(Completion, blob), latency=latency, cached=True, requests=0)
    data = json.loads(blob)
    version = data.pop("v", None)
    if version == 2:
        (tokens_in, tokens_out), sources = data["usage"], data["sources"]
        data["usage"] = {"input_tokens": tokens_in, "output_tokens": tokens_out}
        data["sources"] = [{"url": url, "title": title} for url, title in sources]
    elif version != ENTRY_VERSION:
        raise ValueError(f"cache entry format {version!r}")
    return replace(completion_from_dict(data), latency=latency, cached=True, requests=0)


def pieces(text: str, count: int = 4) -> list[str]:
    """``text`` in about ``count`` deltas, each cut after whitespace, so a replay still streams."""
    return re.findall(rf"(?s).{{{max(0, -(-len(text) // count) - 1)},}}?\s|.+", text)


class CachingBackend(Wrapper):
    """Wraps a backend; identical requests are answered from ``store`` for ``ttl`` seconds."""

    def __init__(
        self, inner: Backend, store: Store, ttl: float | None = None, *, namespace: str = "default"
    ) -> None:
        super().__init__(inner)
        self.store, self.ttl, self.namespace = store, ttl, namespace
        self.hits = self.misses = self.store_errors = 0
        self._identity = backend_identity(inner)

    def key_for(self, request: CompletionRequest) -> str | None:
        """The store key of ``request``, or ``None`` if it cannot be keyed."""
        try:
            digest = cache_key(request, self._identity, request.model or self.inner.model)
        except (TypeError, ValueError) as e:
            log.debug("request not cached: %s", e)
            return None
        return f"{KEY_PREFIX}{self.namespace}:{digest}"

    async def _lookup(self, request: CompletionRequest) -> tuple[str | None, Completion | None]:
        key, hit, started = self.key_for(request), None, time.perf_counter()
        try:
            blob = None if key is None else await self.store.get(key)
            hit = None if blob is None else decode_completion(blob, time.perf_counter() - started)
        except TransportError as e:
            self.store_errors += 1
            log.warning("cache read failed, asking the provider: %s", e)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            log.debug("unreadable cache entry %s ignored: %s", key, e)
        self.hits, self.misses = self.hits + (hit is not None), self.misses + (hit is None)
        if log.isEnabledFor(logging.DEBUG):
            agent = (request.call.agent if request.call else "") or "-"
            short = key[:-52] if key else "-"  # the namespace and 12 hex digits
            saved = f" model={hit.model} tokens={hit.usage.total_tokens} saved" if hit else ""
            log.debug("cache %s agent=%s key=%s%s", "hit" if hit else "miss", agent, short, saved)
        return key, hit

    async def _remember(self, key: str | None, completion: Completion) -> None:
        kept = completion.finish_reason in ("stop", "tool_calls", "length")
        if key is None or not kept or not (completion.text or completion.tool_calls):
            return
        try:
            await self.store.set(key, encode_completion(completion), self.ttl)
        except (TypeError, ValueError) as e:
            log.debug("answer not cached: %s", e)
        except TransportError as e:
            self.store_errors += 1
            log.warning("cache write failed; the answer is returned uncached: %s", e)

    async def complete(self, request: CompletionRequest) -> Completion:
        key, hit = await self._lookup(request)  # no generator, no pieces for a plain call
        if hit is not None:
            return hit
        completion = await self.inner.complete(request)
        await self._remember(key, completion)
        return completion

    async def around(self, request: CompletionRequest, call: Call) -> AsyncIterator[StreamChunk]:
        key, hit = await self._lookup(request)
        if hit is not None:
            for delta in pieces(hit.text):
                yield StreamChunk(delta=delta)
            yield StreamChunk(completion=hit)
            return
        async for chunk in call(request):
            if chunk.completion is not None:  # stored first: the consumer may stop after it
                await self._remember(key, chunk.completion)
            yield chunk

    async def clear(self) -> int:
        """Delete this namespace's entries; how many there were."""
        return await self.store.delete_prefix(f"{KEY_PREFIX}{self.namespace}:")
