"""Every built-in backend type, one row each: everything else about a provider derives here.
It sits low (beside ``types``) so that config checks ``type:`` without importing backends."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Provider:
    """What massgen knows of one provider before it imports any SDK."""

    name: str  # the ``type:`` a config writes (``gemini`` is another name for ``google``)
    module: str  # the adapter, imported only when a backend of this type is built (~1 s)
    cls: str
    key_env: tuple[str, ...] = ()  # environment variables holding the key, tried in order
    needs_key: bool = True  # local servers need none (a dummy one keeps SDKs quiet)
    base_url: str | None = None  # when the config gives none (``None``: the SDK's own)
    example_model: str | None = None  # for hints; ``None`` when a backend needs no model
    chat_completions: bool = False  # speaks Chat Completions: takes ``client: http | sdk``
    native_tools: frozenset[str] = frozenset()  # provider-side tools (``web_search``)
    tool_images: bool = True  # takes images in tool results (local servers: text models)


_OPENAI = "massgen.backends.openai"
_SEARCH = frozenset({"web_search"})


def _local(name: str, cls: str, port: int, example: str, *keys: str) -> Provider:
    url = f"http://localhost:{port}/v1"
    return Provider(
        name, _OPENAI, cls, keys, False, url, example, chat_completions=True, tool_images=False
    )


_ROWS = (
    Provider("openai", _OPENAI, "OpenAIBackend", ("OPENAI_API_KEY",), example_model="gpt-4o-mini",
             chat_completions=True, native_tools=_SEARCH),
    Provider("anthropic", "massgen.backends.anthropic", "AnthropicBackend", ("ANTHROPIC_API_KEY",),
             example_model="claude-haiku-4-5", native_tools=_SEARCH),
    Provider("google", "massgen.backends.google", "GoogleBackend",
             ("GEMINI_API_KEY", "GOOGLE_API_KEY"), example_model="gemini-2.5-flash",
             native_tools=_SEARCH),
    Provider("xai", _OPENAI, "XAIBackend", ("XAI_API_KEY",), base_url="https://api.x.ai/v1",
             example_model="grok-4-fast", chat_completions=True, native_tools=_SEARCH),
    Provider("openrouter", _OPENAI, "OpenRouterBackend", ("OPENROUTER_API_KEY",),
             base_url="https://openrouter.ai/api/v1", example_model="openai/gpt-4o-mini",
             chat_completions=True),
    _local("lmstudio", "LMStudioBackend", 1234, "qwen2.5-7b-instruct"),
    _local("ollama", "OllamaBackend", 11434, "llama3.2"),
    _local("vllm", "VLLMBackend", 8000, "meta-llama/Llama-3.1-8B-Instruct", "VLLM_API_KEY"),
    Provider("replay", "massgen.backends.replay", "ReplayBackend", needs_key=False),
)  # fmt: skip

PROVIDERS: dict[str, Provider] = {}
"""Every built-in backend type by name; ``type:`` may also be ``package.module:Class``."""
for _row in _ROWS:
    PROVIDERS[_row.name] = _row
    if _row.name == "google":
        PROVIDERS["gemini"] = _row

BACKEND_TYPES: tuple[str, ...] = (*PROVIDERS,)
OPENAI_COMPATIBLE: frozenset[str] = frozenset(k for k, v in PROVIDERS.items() if v.chat_completions)
