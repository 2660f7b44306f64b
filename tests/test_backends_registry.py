"""create_backend: built-in types, custom `module:Class` backends, helpful errors, lazy SDKs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import massgen.backends as backends
from massgen.backends import BACKEND_TYPES, Backend, create_backend, default_env_var
from massgen.backends.replay import ReplayBackend
from massgen.errors import ConfigError
from massgen.providers import OPENAI_COMPATIBLE
from massgen.types import ChatMessage, CompletionRequest

REQUEST = CompletionRequest(
    messages=(ChatMessage("system", "sys"), ChatMessage("user", "What is 2+2?"))
)

CUSTOM = textwrap.dedent(
    """
    from massgen.backends.base import Backend

    class SyncEcho(Backend):
        def generate(self, prompt, **kwargs):
            return f"sync:{self.model}:{self.options.get('greeting')}:{prompt}"

    class AsyncEcho(Backend):
        async def generate(self, prompt, **kwargs):
            return f"async:{self.name}:{kwargs.get('system')}:{prompt}"

    class NotABackend:
        pass
    """
)


def test_backend_types_lists_every_builtin() -> None:
    assert set(BACKEND_TYPES) == {
        "openai",
        "anthropic",
        "google",
        "gemini",
        "xai",
        "openrouter",
        "lmstudio",
        "ollama",
        "vllm",
        "replay",
    }


def test_default_env_vars() -> None:
    assert default_env_var("openai") == "OPENAI_API_KEY"
    assert default_env_var("anthropic") == "ANTHROPIC_API_KEY"
    assert default_env_var("gemini") == default_env_var("google") == "GEMINI_API_KEY"
    assert default_env_var("xai") == "XAI_API_KEY"
    assert default_env_var("openrouter") == "OPENROUTER_API_KEY"
    for local in ("ollama", "lmstudio", "vllm", "replay", "pkg.mod:Cls"):
        assert default_env_var(local) is None


def test_replay_is_built_with_its_options() -> None:
    b = create_backend("Replay", name="judge", params={"default": "ok", "latency": 0})
    assert isinstance(b, ReplayBackend)
    assert b.name == "judge"
    assert b.model == "replay"
    assert b.default == "ok"


@pytest.mark.parametrize(
    ("typo", "meant"), [("opneai", "openai"), ("antropic", "anthropic"), ("olama", "ollama")]
)
def test_unknown_type_suggests_the_closest(typo: str, meant: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_backend(typo, model="m")
    assert repr(typo) in info.value.message
    assert info.value.hint is not None and f"did you mean {meant!r}" in info.value.hint


def test_unknown_type_without_a_close_match_lists_the_types() -> None:
    with pytest.raises(ConfigError) as info:
        create_backend("zzzzzz")
    assert info.value.hint is not None and "replay" in info.value.hint


def write_module(tmp_path: Path, name: str) -> Path:
    (tmp_path / f"{name}.py").write_text(CUSTOM)
    return tmp_path


async def test_custom_sync_and_async_backends_answer_through_complete(tmp_path: Path) -> None:
    base = write_module(tmp_path, "my_echo_backends")
    path_before = list(sys.path)
    sync = create_backend(
        "my_echo_backends:SyncEcho", model="m1", name="s", params={"greeting": "hi"}, base_dir=base
    )
    asyn = create_backend("my_echo_backends:AsyncEcho", model="m2", name="a", base_dir=base)
    assert sys.path == path_before  # the config's folder was only borrowed
    assert isinstance(sync, Backend) and isinstance(asyn, Backend)
    assert (await sync.complete(REQUEST)).text == "sync:m1:hi:What is 2+2?"
    done = await asyn.complete(REQUEST)
    assert done.text == "async:a:sys:What is 2+2?"
    assert done.usage.input_tokens > 0


def test_custom_class_must_be_a_backend(tmp_path: Path) -> None:
    base = write_module(tmp_path, "my_not_backend")
    with pytest.raises(ConfigError) as info:
        create_backend("my_not_backend:NotABackend", base_dir=base)
    assert "is not a Backend" in info.value.message
    assert (
        info.value.hint is not None and "subclass massgen.backends.base.Backend" in info.value.hint
    )


def test_custom_module_or_class_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot import module") as info:
        create_backend("no_such_module_xyz:Thing", base_dir=tmp_path)
    assert info.value.hint is not None and "next to the config" in info.value.hint
    base = write_module(tmp_path, "my_missing_class")
    with pytest.raises(ConfigError, match="has no class 'Nope'"):
        create_backend("my_missing_class:Nope", base_dir=base)
    with pytest.raises(ConfigError, match="bad backend type"):
        create_backend("my_missing_class:", base_dir=base)


def test_custom_backend_with_unexpected_options_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "my_strict.py").write_text(
        "from massgen.backends.base import Backend\n"
        "class Strict(Backend):\n"
        "    def __init__(self, model=''):\n"
        "        super().__init__(model)\n"
    )
    with pytest.raises(ConfigError, match="cannot build backend"):
        create_backend("my_strict:Strict", params={"surprise": 1}, base_dir=tmp_path)


async def test_params_reach_the_provider_through_the_registry() -> None:
    from tests.sim.simulator import ProviderSimulator

    with ProviderSimulator() as sim:
        b = create_backend(
            "openai",
            model="gpt-4o-mini",
            api_key="k",
            base_url=sim.openai_base_url,
            timeout=5,
            params={"seed": 11},
        )
        try:
            await b.complete(REQUEST)
        finally:
            await b.aclose()
        assert sim.requests[0].body["seed"] == 11


def test_public_names_are_exported() -> None:
    for name in backends.__all__:
        assert getattr(backends, name) is not None
    with pytest.raises(AttributeError):
        backends.NoSuchBackend  # noqa: B018


def test_importing_backends_loads_no_sdk() -> None:
    """Each SDK costs ~1 s to import: only the backend that needs one may load it."""
    code = textwrap.dedent(
        """
        import sys
        import massgen.backends as b
        b.create_backend("replay")
        b.ReplayBackend
        heavy = ("openai", "anthropic", "google.genai")
        assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]
        b.OpenAIBackend
        b.create_backend("openai", model="m", api_key="k")  # the default client: no SDK
        assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]
        b.create_backend("openai", model="m", api_key="k", client="sdk")
        assert "openai" in sys.modules
        assert "anthropic" not in sys.modules and "google.genai" not in sys.modules
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_client_is_for_openai_compatible_types_only() -> None:
    from massgen.backends.openai import OpenAIBackend

    expected = {"openai", "xai", "openrouter", "lmstudio", "ollama", "vllm"}
    assert expected == OPENAI_COMPATIBLE
    for kind in sorted(OPENAI_COMPATIBLE):
        b = create_backend(kind, model="m", api_key="k", client="sdk")
        assert isinstance(b, OpenAIBackend) and b.client == "sdk"
        assert create_backend(kind, model="m", api_key="k").client == "http"  # type: ignore[attr-defined]
    for kind in ("anthropic", "replay", "my_mod:Thing"):
        with pytest.raises(ConfigError) as info:
            create_backend(kind, model="m", api_key="k", client="http")
        assert info.value.key == "client"
        assert "OpenAI-compatible" in info.value.message
    with pytest.raises(ConfigError, match="unknown client"):
        create_backend("openai", model="m", api_key="k", client="grpc")


@pytest.mark.parametrize("written", ["", "client: sdk", "client: http"])
def test_a_team_file_picks_the_client(written: str) -> None:
    from massgen.config import loads
    from massgen.team import build_backend

    extra = f", {written}" if written else ""
    team = loads(
        "backends:\n"
        f"  gpt: {{type: openai, model: gpt-4o-mini, api_key: k{extra}}}\n"
        "  claude: {type: anthropic, model: claude-sonnet-5, api_key: k}\n"
        "agents:\n  - {name: ada, backend: gpt}\n  - {name: bo, backend: claude}\n"
    )
    gpt = build_backend(team.backends["gpt"], team)
    while hasattr(gpt, "inner"):  # look through the endpoint guards (circuit breaker)
        gpt = gpt.inner
    assert gpt.client == (written.partition(": ")[2] or "http")  # type: ignore[attr-defined]
    build_backend(team.backends["claude"], team)  # the default is never refused


def test_a_team_file_refuses_client_on_other_types() -> None:
    from massgen.config import loads

    with pytest.raises(ConfigError) as info:
        loads(
            "backends:\n  claude: {type: anthropic, model: c, client: sdk}\n"
            "agents:\n  - {name: ada, backend: claude}\n"
        )
    assert info.value.key == "backends.claude.client"
    assert "OpenAI-compatible" in info.value.message


def test_the_providers_page_lists_every_row() -> None:
    from massgen.providers import PROVIDERS

    page = (Path(__file__).resolve().parent.parent / "docs/providers.md").read_text()
    rows = {
        line.split("|")[1].strip(): line for line in page.splitlines() if line.startswith("| `")
    }
    for name, row in PROVIDERS.items():
        line = next(v for k, v in rows.items() if f"`{name}`" in k)
        assert all(f"`{var}`" in line for var in row.key_env), name
        assert row.base_url is None or f"`{row.base_url}`" in line, name
        assert ("| yes |" in line) == row.chat_completions, name
        assert all(f"`{tool}`" in line for tool in row.native_tools), name
