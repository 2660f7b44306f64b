"""Chat Completions and Responses through the ``openai`` SDK (``client: sdk``; about a second
to import). It sends the body massgen built and hands back plain dicts, dumped with the
SDK's warnings off: a value newer than its types is read as sent, not warned about.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import openai

from massgen.backends._common import sdk_client
from massgen.backends._errors import sdk_errors
from massgen.backends.openai import DONE


class SDKChatClient:
    """``openai.AsyncOpenAI``, made on first use, with the SDK's own retries off."""

    def __init__(self, *, provider: str, api_key: str, base_url: str, timeout: float) -> None:
        self.provider = provider
        self.base_url = base_url
        self.timeout = timeout
        self._api_key = api_key
        self._client: openai.AsyncOpenAI | None = None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _create(self, api: str, body: dict[str, Any], seconds: float) -> Any:
        """``model`` and ``messages`` (Responses: ``input``) as the SDK's arguments; the rest
        as ``extra_body``, so the SDK sends exactly what the HTTP client would."""
        if self._client is None:
            kind = openai.AsyncOpenAI
            self._client = sdk_client(openai, kind, self._api_key, self.base_url, self.timeout)
        client, rest = self._client, dict(body)
        key = "input" if api == "responses" else "messages"
        args = {"model": rest.pop("model"), key: rest.pop(key), "timeout": seconds}
        if rest.pop("stream", False):
            args["stream"] = True
        endpoint: Any = client.responses if api == "responses" else client.chat.completions
        return await endpoint.create(**args, extra_body=rest or None)

    async def request(self, api: str, body: dict[str, Any], seconds: float) -> dict[str, Any]:
        with sdk_errors(openai, provider=self.provider, secret=self._api_key):
            response = await self._create(api, body, seconds)
        return response.to_dict(warnings=False)

    async def stream(
        self, api: str, body: dict[str, Any], seconds: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        with sdk_errors(openai, provider=self.provider, secret=self._api_key):
            async with await self._create(api, body, seconds) as stream:
                async for chunk in stream:
                    yield chunk.to_dict(warnings=False)
        # The SDK ends a Chat Completions stream at `[DONE]` (or at a body that ends cleanly;
        # one cut short raises): to it, and so to us, the stream is complete.
        if api != "responses":
            yield DONE
