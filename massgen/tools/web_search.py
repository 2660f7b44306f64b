"""``web_search``: search the web through a search API and get titles, URLs and snippets.

Providers: ``searxng`` (your own instance: ``url`` required, no key), ``brave`` (Brave
Search API, key in ``X-Subscription-Token``) and ``tavily`` (Tavily, key as a bearer
token). The endpoint and key come from the config, never from the model; the model only
writes the query. Results are untrusted text from the web: they go back fenced like every
tool result (see :mod:`massgen.tools.runner`), with snippets cut to ``max_snippet``.
Provider-native search (a model provider's own web search tool) is not wired here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr

from massgen.errors import ConfigError, ToolError
from massgen.tools._builtin import BuiltinTool, ToolSettings

DEFAULT_URLS = {
    "brave": "https://api.search.brave.com/res/v1/web/search",
    "tavily": "https://api.tavily.com/search",
}


class WebSearchSettings(ToolSettings):
    provider: Literal["searxng", "brave", "tavily"] = "searxng"
    """Which search API ``url`` speaks."""
    url: str | None = None
    """Endpoint: the SearXNG base URL (required for ``searxng``); the others default to
    their public API."""
    api_key: SecretStr | None = None
    """Key for ``brave``/``tavily`` (e.g. ``${BRAVE_API_KEY}``); never shown or logged."""
    max_results: int = Field(default=5, ge=1, le=50)
    """Results returned at most."""
    max_snippet: int = Field(default=300, gt=0)
    """Characters kept of each snippet."""
    time_limit: float = Field(default=10.0, gt=0)
    """Seconds one search may take."""


class WebSearch(BuiltinTool):
    """Search the web; returns titles, URLs and snippets of the top results."""

    name = "web_search"
    Settings = WebSearchSettings
    settings: WebSearchSettings

    def setup(self) -> None:
        s = self.settings
        url = s.url or DEFAULT_URLS.get(s.provider)
        if not url:
            raise ConfigError("a searxng search needs `url:`", key="url")
        if not url.startswith(("http://", "https://")):
            raise ConfigError("must be an http(s) URL", key="url")
        if s.provider != "searxng" and s.api_key is None:
            raise ConfigError(f"{s.provider} needs an API key", key="api_key")
        self.url = url.rstrip("/")

    async def execute(
        self,
        query: Annotated[str, Field(min_length=1, max_length=400, description="search terms")],
        max_results: Annotated[int | None, Field(ge=1, le=50)] = None,
    ) -> str:
        import httpx

        s = self.settings
        count = min(max_results or s.max_results, s.max_results)
        key = s.api_key.get_secret_value() if s.api_key is not None else ""
        try:
            async with httpx.AsyncClient(timeout=s.time_limit, follow_redirects=False) as client:
                if s.provider == "searxng":
                    response = await client.get(
                        self.url + "/search", params={"q": query, "format": "json"}
                    )
                elif s.provider == "brave":
                    response = await client.get(
                        self.url,
                        params={"q": query, "count": count},
                        headers={"X-Subscription-Token": key, "Accept": "application/json"},
                    )
                else:
                    response = await client.post(
                        self.url,
                        json={"query": query, "max_results": count},
                        headers={"Authorization": f"Bearer {key}"},
                    )
        except httpx.TimeoutException:
            raise ToolError("the search timed out") from None
        except httpx.HTTPError as e:
            raise ToolError(f"the search failed: {type(e).__name__}") from None
        if response.status_code != 200:
            raise ToolError(f"the search API answered HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise ToolError("the search API did not answer JSON") from None
        return format_results(parse_results(s.provider, data)[:count], s.max_snippet)


def parse_results(provider: str, data: Any) -> list[tuple[str, str, str]]:
    """(title, url, snippet) triples from a provider's JSON answer."""
    if not isinstance(data, dict):
        raise ToolError("unexpected answer from the search API")
    if provider == "brave":
        web = data.get("web")
        items = web.get("results") if isinstance(web, dict) else None
        snippet_key = "description"
    else:
        items = data.get("results")
        snippet_key = "content"
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("url"):
            out.append(
                (str(item.get("title") or ""), str(item["url"]), str(item.get(snippet_key) or ""))
            )
    return out


def format_results(results: list[tuple[str, str, str]], max_snippet: int) -> str:
    if not results:
        return "no results"
    lines = []
    for i, (title, url, raw) in enumerate(results, 1):
        snippet = " ".join(raw.split())
        if len(snippet) > max_snippet:
            snippet = snippet[: max_snippet - 1] + "…"
        lines.append(f"{i}. {' '.join(title.split())}\n   {url}\n   {snippet}")
    return "\n".join(lines)
