"""``web_search``: the model provider's own web search, or a search API through httpx."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from massgen.backends.base import Backend, innermost
from massgen.errors import ConfigError, ToolError
from massgen.tools.base import BuiltinTool, ToolSettings
from massgen.tools.context import ToolContext
from massgen.types import CompletionRequest, NativeTool

if TYPE_CHECKING:
    from massgen.tools.runner import ToolBox

DEFAULT_URLS = {
    "brave": "https://api.search.brave.com/res/v1/web/search",
    "tavily": "https://api.tavily.com/search",
}


class WebSearchSettings(ToolSettings):
    mode: Literal["auto", "native", "api"] = "auto"  # auto: native where offered, else API
    provider: Literal["searxng", "brave", "tavily"] = "searxng"  # the API ``url`` speaks
    url: str | None = None  # required for searxng; the others default to their public API
    api_key: SecretStr | None = None  # for brave/tavily; never shown or logged
    max_results: int = Field(default=5, ge=1, le=50)
    max_snippet: int = Field(default=300, gt=0)  # characters kept of each snippet
    time_limit: float = Field(default=10.0, gt=0)  # one search in all, every byte included
    max_bytes: int = Field(default=2_000_000, gt=0)  # more is an error (cut JSON won't parse)
    max_uses: int | None = Field(default=None, ge=1)  # native searches per request (Anthropic)
    allowed_domains: tuple[str, ...] = ()  # only these (and their subdomains)
    blocked_domains: tuple[str, ...] = ()  # never these (and their subdomains)

    @model_validator(mode="after")
    def _one_domain_list(self) -> WebSearchSettings:
        if self.allowed_domains and self.blocked_domains:
            raise ValueError("set allowed_domains or blocked_domains, not both")
        return self


class WebSearch(BuiltinTool[WebSearchSettings]):
    """Search the web; returns titles, URLs and snippets of the top results."""

    @classmethod
    def plan_turn(
        cls, backend: Backend, request: CompletionRequest, tools: ToolBox, ctx: ToolContext
    ) -> tuple[Backend, CompletionRequest]:
        """Swap the turn's ``web_search`` function tools for the provider's own search where
        their mode says so."""
        searches = [t for t in tools.tools.values() if isinstance(t, WebSearch)]
        model = request.model or backend.model or None
        others = len(request.tools) > len(searches)
        chosen = {
            t.name: t.check_backend(backend, model=model, with_functions=others) for t in searches
        }
        native = {name: tool for name, tool in chosen.items() if tool is not None}
        if not native:
            return backend, request
        if len(native) > 1:
            raise ConfigError("only one web_search tool may search natively", key="mode")
        specs = tuple(t for t in request.tools if t.name not in native)
        request = dataclasses.replace(
            request,
            tools=specs,
            tool_choice=request.tool_choice if specs else None,
            native_tools=(*request.native_tools, *native.values()),
        )
        return backend, request

    def setup(self) -> None:
        s = self.settings
        self.url: str | None = None
        url = s.url or DEFAULT_URLS.get(s.provider)
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError("must be an http(s) URL", key="url")
        if s.mode != "api" and (not url or (s.provider != "searxng" and s.api_key is None)):
            return  # no search API: native only
        if not url:
            raise ConfigError("a searxng search needs `url:`", key="url")
        if s.provider != "searxng" and s.api_key is None:
            raise ConfigError(f"{s.provider} needs an API key", key="api_key")
        self.url = url.rstrip("/")

    def check_backend(
        self, backend: Backend, *, model: str | None = None, with_functions: bool = False
    ) -> NativeTool | None:
        """The provider-side search to declare on ``backend``, or ``None`` to call the search
        API; :class:`ConfigError` when the mode cannot be served."""
        s, real = self.settings, innermost(backend)
        native = NativeTool("web_search", s.max_uses, s.allowed_domains, s.blocked_domains)
        if s.mode == "api":
            return None
        if real.supports_native(native, model=model, with_functions=with_functions):
            return native
        where = real.describe() + (f" (model {model})" if model else "")
        if s.mode == "native":
            beside = " next to other tools" if with_functions and real.native_tools else ""
            raise ConfigError(
                f"`{self.name}` wants the provider's own search, but {where} has none{beside}",
                key="mode",
                hint="use mode: auto or api with a search API; native search exists on anthropic, "
                "google, openai and xai (which models and domain filters: docs/tools.md)",
            )
        if self.url is None:
            raise ConfigError(
                f"`{self.name}` cannot search: {where} has no provider-side search "
                "and no search API is configured",
                key="provider",
                hint="set `url:` (SearXNG) or `provider:` brave/tavily with `api_key:` under "
                f"tools.{self.name}, or give the agent a backend with native search",
            )
        return None

    async def execute(
        self,
        query: Annotated[str, Field(min_length=1, max_length=400, description="search terms")],
        max_results: Annotated[int | None, Field(ge=1, le=50)] = None,
    ) -> str:
        from massgen.tools.http import client, fetch

        s, url = self.settings, self.url
        if url is None:
            raise ToolError("no search API is configured: search runs on the provider's side")
        count = min(max_results or s.max_results, s.max_results)
        key = s.api_key.get_secret_value() if s.api_key is not None else ""
        method, target = "GET", url + "/search"
        request: dict[str, Any] = {"params": {"q": query, "format": "json"}}
        if s.provider == "brave":
            target = url
            request = {"params": {"q": query, "count": count}}
            request["headers"] = {"X-Subscription-Token": key, "Accept": "application/json"}
        elif s.provider == "tavily":
            method, target = "POST", url
            request = {"json": {"query": query, "max_results": count}}
            request["headers"] = {"Authorization": f"Bearer {key}"}
        try:
            async with asyncio.timeout(s.time_limit), client(s.time_limit, trust_env=True) as c:
                response, raw = await fetch(c, method, target, s.max_bytes, **request)
        except TimeoutError:
            raise ToolError(f"the search took longer than {s.time_limit:g}s") from None
        if response.status_code != 200:
            raise ToolError(f"the search API answered HTTP {response.status_code}")
        if response.headers.get("content-encoding", "identity") not in ("identity", ""):
            raise ToolError("the search API answered compressed, though asked not to")
        if len(raw) > s.max_bytes:
            raise ToolError(f"the search API answered more than {s.max_bytes} bytes")
        try:
            data = json.loads(raw)
        except ValueError:
            raise ToolError("the search API did not answer JSON") from None
        if not isinstance(data, dict):
            raise ToolError("unexpected answer from the search API")
        if s.provider == "brave":
            web = data.get("web")
            items, snippet = web.get("results") if isinstance(web, dict) else None, "description"
        else:
            items, snippet = data.get("results"), "content"
        lines: list[str] = []
        for item in items if isinstance(items, list) else []:
            if not (isinstance(item, dict) and item.get("url")):
                continue
            link = str(item["url"])
            if len(lines) == count or not in_domains(link, s.allowed_domains, s.blocked_domains):
                continue
            text = " ".join(str(item.get(snippet) or "").split())
            if len(text) > s.max_snippet:
                text = text[: s.max_snippet - 1] + "…"
            title = " ".join(str(item.get("title") or "").split())
            lines.append(f"{len(lines) + 1}. {title}\n   {link}\n   {text}")
        return "\n".join(lines) or "no results"


def in_domains(url: str, allowed: tuple[str, ...], blocked: tuple[str, ...]) -> bool:
    """Whether ``url``'s host passes the domain lists (a domain covers its subdomains)."""
    host = "." + (urlsplit(url).hostname or "").lower().rstrip(".")

    def under(domains: tuple[str, ...]) -> bool:
        return any(host.endswith("." + d.lower().strip(".")) for d in domains)

    return (not allowed or under(allowed)) and not under(blocked)
