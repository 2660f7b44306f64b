"""Loading team files: values, defaults, and the errors a person sees."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import massgen.config as config
from massgen.config import (
    AgentConfig,
    BackendConfig,
    ConsensusConfig,
    RedisConfig,
    TeamConfig,
    json_schema,
    load,
    loads,
)
from massgen.errors import ConfigError

ONE_AGENT = "agents:\n  - {name: ada, backend: openai}\n"


def load_text(text: str, env: dict[str, str] | None = None, **kw: object) -> TeamConfig:
    return loads(textwrap.dedent(text), file="team.yaml", env=env or {}, **kw)  # type: ignore[arg-type]


def error_of(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(text, env)
    return info.value


def test_public_api_is_exported() -> None:
    for name in (
        "load",
        "loads",
        "json_schema",
        "TeamConfig",
        "AgentConfig",
        "BackendConfig",
        "MemoryConfig",
        "ConsensusConfig",
        "CacheConfig",
        "OrchestratorConfig",
        "RedisConfig",
    ):
        assert name in config.__all__
        assert hasattr(config, name)


def test_minimal_team_gets_documented_defaults() -> None:
    team = load_text(ONE_AGENT)
    o = team.orchestrator
    assert (o.strategy, o.error_strategy, o.max_retries, o.retry_delay) == (
        "consensus",
        "continue",
        3,
        1.0,
    )
    c = o.consensus
    assert (c.mode, c.answer) == ("adaptive", "auto")
    assert (c.threshold, c.max_rounds, c.topology, c.neighbors, c.final, c.answer_budget) == (
        0.5,
        2,
        "auto",
        2,
        "winner",
        400,
    )
    assert (o.cache.enabled, o.cache.ttl, o.cache.path) == (False, 3600, None)
    agent = team.agents[0]
    assert agent.memory.strategy == "full" and agent.memory.size is None
    backend = team.backend_for(agent)
    assert (backend.type, backend.model, backend.timeout, backend.api_key) == (
        "openai",
        "",
        60,
        None,
    )
    assert team.redis is None and team.source is None


def test_bare_provider_backend_gets_an_implicit_named_entry() -> None:
    team = load_text(ONE_AGENT)
    assert team.backends["openai"].type == "openai"


def test_backend_for_resolves_names_and_applies_agent_overrides() -> None:
    team = load_text("""
        backends:
          fast: {type: openai, model: gpt-4o-mini, temperature: 0.9}
        agents:
          - {name: a, backend: fast}
          - {name: b, backend: fast, model: gpt-4o, temperature: 0.1, max_tokens: 50}
          - name: c
            backend: {type: anthropic, model: claude-haiku-4-5}
    """)
    assert team.backend_for("a").model == "gpt-4o-mini"
    b = team.backend_for(team.agent("b"))
    assert (b.model, b.temperature, b.max_tokens) == ("gpt-4o", 0.1, 50)
    assert team.backends["fast"].model == "gpt-4o-mini"  # the shared entry is untouched
    assert team.backend_for("c").type == "anthropic"
    with pytest.raises(KeyError):
        team.agent("nobody")


def test_backend_type_is_case_insensitive_and_custom_classes_allowed() -> None:
    assert BackendConfig(type="OpenAI").type == "openai"
    assert BackendConfig(type="my_pkg.backends:Mine").type == "my_pkg.backends:Mine"


def test_yaml_syntax_error_reports_line() -> None:
    err = error_of("""
        agents:
          - name: ada
            backend: [openai
    """)
    assert err.file == "team.yaml" and err.line == 5
    assert "invalid YAML" in err.message


def test_a_tab_that_indents_is_named_in_the_hint() -> None:
    err = error_of("agents:\n\t- {name: ada, backend: openai}\n")
    assert err.file == "team.yaml" and err.line == 2
    assert err.hint is not None and "tab" in err.hint


def test_unknown_key_suggests_the_field_at_its_line() -> None:
    err = error_of("""
        agents:
          - {name: ada, backend: openai}
        orchestrator:
          strategy: consensus
          consensus:
            max_round: 3
    """)
    assert (err.line, err.key) == (7, "orchestrator.consensus.max_round")
    assert err.hint == "did you mean `max_rounds`?"
    assert "did you mean `max_rounds`?" in str(err)


def test_unknown_key_in_inline_backend_gets_dotted_path() -> None:
    err = error_of("""
        agents:
          - {name: ada, backend: openai}
          - name: bob
            backend:
              type: anthropic
              tmperature: 0.2
    """)
    assert (err.line, err.key) == (7, "agents[1].backend.tmperature")
    assert err.hint == "did you mean `temperature`?"


def test_unknown_key_without_close_match_lists_allowed_keys() -> None:
    err = error_of(ONE_AGENT + "zzz: 1\n")
    assert err.key == "zzz" and "allowed keys:" in (err.hint or "") and "agents" in (err.hint or "")


def test_wrong_type_names_expected_type() -> None:
    err = error_of("""
        agents:
          - name: ada
            backend: openai
            max_tokens: lots
    """)
    assert (err.line, err.key) == (5, "agents[0].max_tokens")
    assert err.message == "expected an integer, got 'lots'"
    assert "errors.pydantic.dev" not in str(err) and "Input should" not in str(err)


def test_number_where_a_string_belongs_hints_quotes() -> None:
    err = error_of("agents:\n  - {name: 12, backend: openai}\n")
    assert err.key == "agents[0].name" and err.hint == 'put it in quotes: "12"'


def test_invalid_enum_lists_allowed_values_and_suggests() -> None:
    err = error_of("""
        agents:
          - {name: ada, backend: openai}
        orchestrator:
          strategy: concensus
    """)
    assert (err.line, err.key) == (5, "orchestrator.strategy")
    assert "`parallel`, `sequential` or `consensus`" in err.message
    assert err.hint == "did you mean `consensus`?"


def test_out_of_range_number() -> None:
    err = error_of(ONE_AGENT + "orchestrator:\n  consensus:\n    threshold: 1.5\n")
    assert (err.line, err.key) == (5, "orchestrator.consensus.threshold")
    assert err.message == "must be at most 1, got 1.5"


def test_several_errors_report_the_first_in_file_order_and_count_the_rest() -> None:
    err = error_of("""
        agents:
          - name: ada
            backend: openai
            temperature: hot
            max_tokens: many
    """)
    assert err.line == 5 and err.message.endswith("(and 1 more error)")


def test_missing_agents_and_empty_agents() -> None:
    err = error_of("name: t\n")
    assert err.key == "agents" and err.message == "required key is missing" and err.line == 1
    err = error_of("agents: []\n")
    assert err.key == "agents" and "at least 1" in err.message


def test_missing_backend_type() -> None:
    err = error_of("agents:\n  - name: a\n    backend: {model: x}\n")
    assert (err.key, err.line) == ("agents[0].backend.type", 3)
    assert "type: openai" in (err.hint or "")


def test_backend_of_wrong_kind() -> None:
    err = error_of("agents:\n  - {name: a, backend: 5}\n")
    assert err.key == "agents[0].backend" and "backend name or a backend mapping" in err.message


def test_null_section_is_explained() -> None:
    err = error_of(ONE_AGENT + "orchestrator:\n")
    assert err.key == "orchestrator" and err.line == 3 and "null" in err.message


@pytest.mark.parametrize("name", ["a b", "", " ada", "x" * 65, "a/b"])
def test_agent_names_must_be_clean(name: str) -> None:
    err = error_of(f"agents:\n  - {{name: {json.dumps(name)}, backend: openai}}\n")
    assert err.key == "agents[0].name" and err.line == 2


# -- interpolation ---------------------------------------------------------------------------


def test_env_variable_missing_reports_line_and_hint() -> None:
    err = error_of("""
        agents:
          - name: ada
            backend:
              type: openai
              base_url: "http://${LLM_HOST}:8080/v1"
    """)
    assert (err.line, err.key) == (6, "agents[0].backend.base_url")
    assert err.message == "environment variable `LLM_HOST` is not set"
    assert err.hint == "set LLM_HOST or give a default: ${LLM_HOST:-value}"


def test_every_missing_env_variable_is_reported_at_once() -> None:
    err = error_of("""
        backends:
          gpt: {type: openai, model: gpt-4o-mini, api_key: "${MY_OPENAI_KEY}"}
          claude: {type: anthropic, model: claude-haiku-4-5, api_key: "${MY_CLAUDE_KEY}"}
        agents:
          - {name: ada, backend: gpt}
          - {name: bob, backend: claude, role: "on ${MY_OPENAI_KEY:-x} ${HOST}"}
    """)
    rows = str(err).splitlines()
    assert rows[0] == "team.yaml: 3 environment variables are not set:"
    assert rows[1:4] == [
        "  team.yaml:3: `backends.gpt.api_key`: MY_OPENAI_KEY",
        "  team.yaml:4: `backends.claude.api_key`: MY_CLAUDE_KEY",
        "  team.yaml:7: `agents[1].role`: HOST",
    ]
    assert err.hint is not None and "${NAME:-value}" in err.hint


def test_one_variable_missing_in_two_places_is_named_once() -> None:
    err = error_of("""
        agents:
          - {name: ada, backend: {type: openai, base_url: "http://${HOST}/v1"}}
          - {name: bob, backend: {type: openai, base_url: "http://${HOST}/v2"}}
    """)
    assert str(err).splitlines()[0] == "team.yaml: `HOST` is not set:"
    assert "team.yaml:3:" in str(err) and "team.yaml:4:" in str(err)


def test_env_variables_defaults_partial_strings_and_escape() -> None:
    team = load_text(
        """
        name: "${TEAM}-$${NOT_A_VAR} ${UNSET:-fallback} ${EMPTY:-used}"
        agents:
          - name: ada
            backend:
              type: openai
              base_url: "http://${HOST}:8080/v1"
              temperature: ${TEMP:-0.25}
        """,
        env={"TEAM": "blue", "HOST": "gpu", "EMPTY": ""},
    )
    assert team.name == "blue-${NOT_A_VAR} fallback used"
    backend = team.backend_for("ada")
    assert backend.base_url == "http://gpu:8080/v1" and backend.temperature == 0.25


def test_keys_are_not_interpolated() -> None:
    err = error_of(ONE_AGENT + "${X}: 1\n", env={"X": "name"})
    assert err.key == "['${X}']" and err.message == "unknown key"


@pytest.mark.parametrize("bad", ["${", "${1X}", "${A-B}", "${}"])
def test_malformed_variables_are_config_errors(bad: str) -> None:
    err = error_of(f"name: '{bad}'\n" + ONE_AGENT)
    assert (err.key, err.line) == ("name", 1) and "$${" in (err.hint or "")


def test_env_loaded_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSGEN_TEST_MODEL", "gpt-4o")
    team = loads("agents:\n  - {name: a, backend: openai, model: '${MASSGEN_TEST_MODEL}'}\n")
    assert team.agents[0].model == "gpt-4o"


# -- cross references ------------------------------------------------------------------------


def test_duplicate_agent_names_point_at_second() -> None:
    err = error_of("""
        agents:
          - {name: ada, backend: openai}
          - {name: bob, backend: openai}
          - {name: ada, backend: openai}
    """)
    assert (err.line, err.key) == (5, "agents[2].name")
    assert "duplicate agent name" in err.message


def test_duplicate_yaml_keys_are_refused() -> None:
    err = error_of("""
        agents:
          - name: ada
            backend: openai
            name: bob
    """)
    assert (err.line, err.key) == (5, "agents[0].name")
    assert "first given at line 3" in err.message


def test_unknown_backend_name_suggests() -> None:
    err = error_of("""
        backends:
          fast: {type: openai}
        agents:
          - {name: ada, backend: fsat}
    """)
    assert (err.line, err.key, err.hint) == (5, "agents[0].backend", "did you mean `fast`?")


def test_unknown_backend_type_suggests() -> None:
    err = error_of("agents:\n  - name: a\n    backend: {type: opnai}\n")
    assert (err.key, err.hint) == ("agents[0].backend.type", "did you mean `openai`?")
    err = error_of("agents:\n  - name: a\n    backend: {type: 'not:a:class'}\n")
    assert "package.module:ClassName" in err.message


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("orchestrator: {aggregator: adda}", "orchestrator.aggregator"),
        ("orchestrator: {consensus: {presenter: adda}}", "orchestrator.consensus.presenter"),
    ],
)
def test_unknown_agent_references(extra: str, key: str) -> None:
    err = error_of(ONE_AGENT + extra + "\n")
    assert (err.key, err.line, err.hint) == (key, 3, "did you mean `ada`?")


def test_unknown_fallback_and_summarizer() -> None:
    err = error_of("agents:\n  - {name: ada, backend: openai, fallback: bob}\n")
    assert (err.key, err.line) == ("agents[0].fallback", 2)
    assert "no agent has this name" in err.message
    err = error_of("agents:\n  - name: ada\n    backend: openai\n    memory: {summarizer: x}\n")
    assert (err.key, err.line) == ("agents[0].memory.summarizer", 4)


def test_fallback_to_itself_and_cycles() -> None:
    err = error_of("agents:\n  - {name: ada, backend: openai, fallback: ada}\n")
    assert err.key == "agents[0].fallback" and "own fallback" in err.message
    err = error_of("""
        agents:
          - {name: a, backend: openai, fallback: b}
          - {name: b, backend: openai, fallback: c}
          - {name: c, backend: openai, fallback: a}
    """)
    assert (err.key, err.line) == ("agents[0].fallback", 3)
    assert "a -> b -> c -> a" in err.message


def test_fallback_chain_without_cycle_is_fine() -> None:
    team = load_text("""
        agents:
          - {name: a, backend: openai, fallback: b}
          - {name: b, backend: openai, fallback: c}
          - {name: c, backend: openai}
    """)
    assert [x.fallback for x in team.agents] == ["b", "c", None]


# -- the seed's spellings --------------------------------------------------------------------


def test_seed_spellings_fold_into_nested_settings() -> None:
    team = load_text("""
        agents:
          - name: ada
            backend: openai
            memory_strategy: sliding_window
            memory_size: 1000
        orchestrator:
          cache_enabled: true
          cache_ttl: 60
    """)
    assert team.agents[0].memory.strategy == "sliding_window"
    assert team.agents[0].memory.size == 1000
    assert team.orchestrator.cache.enabled is True and team.orchestrator.cache.ttl == 60
    direct = AgentConfig(name="x", backend="openai", memory_strategy="summary")  # type: ignore[call-arg]
    assert direct.memory.strategy == "summary"


def test_errors_in_seed_spellings_name_what_was_written() -> None:
    err = error_of("agents:\n  - name: ada\n    backend: openai\n    memory_size: -5\n")
    assert (err.key, err.line, err.message) == (
        "agents[0].memory_size",
        4,
        "must be greater than 0, got -5",
    )
    err = error_of(ONE_AGENT + "orchestrator:\n  cache_ttl: soon\n")
    assert (err.key, err.line) == ("orchestrator.cache_ttl", 4)


def test_seed_spelling_given_twice_is_an_error() -> None:
    err = error_of("""
        agents:
          - name: ada
            backend: openai
            memory: {strategy: full}
            memory_strategy: summary
    """)
    assert (err.key, err.line) == ("agents[0].memory_strategy", 6)
    assert "given twice" in err.message


# -- replay options --------------------------------------------------------------------------


def test_replay_options_at_top_level_move_into_params(tmp_path: Path) -> None:
    (tmp_path / "answers.yaml").write_text("replies: [hi]\n")
    (tmp_path / "team.yaml").write_text(
        textwrap.dedent("""
        agents:
          - name: ada
            backend:
              type: replay
              latency: 0.1
              stream_chunk: 4
              rules: [{match: 'capital', reply: Paris}]
              default: dunno
              answers_file: answers.yaml
    """)
    )
    team = load(tmp_path / "team.yaml")
    params = team.backend_for("ada").params
    assert params["latency"] == 0.1 and params["stream_chunk"] == 4
    assert params["rules"] == [{"match": "capital", "reply": "Paris"}]
    assert params["default"] == "dunno"
    assert params["answers_file"] == str(tmp_path / "answers.yaml")


def test_replay_options_are_checked_where_written() -> None:
    err = error_of("""
        agents:
          - name: ada
            backend:
              type: replay
              rules:
                - {match: '(', reply: x}
    """)
    assert (err.key, err.line) == ("agents[0].backend.rules[0].match", 7)
    assert "regular expression" in err.message
    err = error_of("agents:\n  - name: a\n    backend: {type: replay, latency: -1}\n")
    assert (err.key, err.message) == ("agents[0].backend.latency", "must be at least 0, got -1")


def test_replay_options_on_other_backends_are_unknown_keys() -> None:
    err = error_of("agents:\n  - name: a\n    backend: {type: openai, rules: []}\n")
    assert err.key == "agents[0].backend.rules" and "params" in (err.hint or "")


# -- paths -----------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_files_folder(tmp_path: Path) -> None:
    sub = tmp_path / "teams"
    sub.mkdir()
    (sub / "team.yaml").write_text(
        textwrap.dedent("""
        agents:
          - name: ada
            backend: {type: replay, params: {answers_file: ../answers.yaml}}
        orchestrator:
          cache: {path: cache/db.sqlite}
        tools:
          file_reader: {root: ./docs, max_bytes: 100}
          web: {base_url: "http://x/y", log_dir: logs}
          other: {path: /abs/place}
          odd: {path: "http://host/path"}
    """)
    )
    team = load(sub / "team.yaml")
    assert team.source == (sub / "team.yaml").resolve()
    assert team.base_dir == sub.resolve()
    assert team.backend_for("ada").params["answers_file"] == str(
        tmp_path.resolve() / "answers.yaml"
    )
    assert team.orchestrator.cache.path == str(sub.resolve() / "cache" / "db.sqlite")
    assert team.tools["file_reader"] == {"root": str(sub.resolve() / "docs"), "max_bytes": 100}
    assert team.tools["web"]["log_dir"] == str(sub.resolve() / "logs")
    assert team.tools["web"]["base_url"] == "http://x/y"
    assert team.tools["other"]["path"] == "/abs/place"
    assert team.tools["odd"]["path"] == "http://host/path"


def test_loads_resolves_against_base_dir(tmp_path: Path) -> None:
    team = loads(ONE_AGENT + "orchestrator: {cache: {path: c.db}}\n", base_dir=tmp_path)
    assert team.orchestrator.cache.path == str(tmp_path / "c.db")
    assert team.base_dir == tmp_path


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="folder"):
        load(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="UTF-8"):
        load(tmp_path / "bin.yaml")


@pytest.mark.parametrize("text", ["", "# just a comment\n", "---\n"])
def test_empty_documents(text: str) -> None:
    err = error_of(text)
    assert err.message == "the file is empty" and err.line == 1


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert "top level must be a mapping" in error_of(text).message


# -- YAML features and abuse -----------------------------------------------------------------


def test_anchors_and_merge_keys() -> None:
    team = load_text("""
        backends:
          base: &base {type: openai, model: gpt-4o-mini, timeout: 30}
          slow:
            <<: *base
            timeout: 90
        agents:
          - {name: a, backend: slow}
    """)
    assert team.backends["slow"].model == "gpt-4o-mini"
    assert team.backends["slow"].timeout == 90


def test_recursive_alias_is_refused() -> None:
    err = error_of("a: &x [*x]\n" + ONE_AGENT)
    assert err.line == 1 and "alias" in err.message


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    err = error_of("\n".join(lines) + "\n" + ONE_AGENT)
    assert "alias bomb" in err.message


def test_unsupported_tags_and_bad_scalars() -> None:
    assert (
        "unsupported YAML tag" in error_of("name: !python/object:os.system x\n" + ONE_AGENT).message
    )
    assert error_of("name: !!int abc\n" + ONE_AGENT).line == 1


def test_dates_stay_text() -> None:
    assert load_text("name: 2024-01-01\n" + ONE_AGENT).name == "2024-01-01"


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deep_nesting_is_refused(depth: int) -> None:
    # libyaml's composer crashes the process on very deep nesting: we must stop before it.
    err = error_of("tools: {t: " + "[" * depth + "]" * depth + "}\n" + ONE_AGENT)
    assert "nested" in err.message and err.line == 1


def test_deep_nesting_through_aliases_is_refused() -> None:
    chain = ["a0: &a0 " + "[" * 40 + "]" * 40]
    chain += [f"a{i}: &a{i} " + "[" * 40 + f"*a{i - 1}" + "]" * 40 for i in range(1, 4)]
    err = error_of("tools:\n" + "\n".join("  " + line for line in chain) + "\n" + ONE_AGENT)
    assert "nested" in err.message and err.line is not None


def test_non_scalar_keys_are_refused() -> None:
    err = error_of("? [a, b]\n: 1\n" + ONE_AGENT)
    assert err.line == 1 and "plain name" in err.message


# -- secrets ---------------------------------------------------------------------------------

CANARY = "sk-canary-0123456789abcdef"


def test_api_key_never_printed() -> None:
    team = load_text(
        "agents:\n  - name: a\n    backend: {type: openai, api_key: '${KEY}'}\n",
        env={"KEY": CANARY},
    )
    backend = team.backend_for("a")
    assert backend.api_key is not None and backend.api_key.get_secret_value() == CANARY
    for text in (
        repr(team),
        str(team),
        repr(backend),
        str(backend),
        backend.model_dump_json(),
        team.model_dump_json(),
    ):
        assert CANARY not in text


def test_empty_api_key_means_provider_default() -> None:
    team = load_text("agents:\n  - name: a\n    backend: {type: openai, api_key: '${K:-}'}\n")
    assert team.backend_for("a").api_key is None


def test_values_from_the_environment_are_not_echoed_in_errors() -> None:
    err = error_of(
        "agents:\n  - name: a\n    backend: {type: openai, temperature: '${T}'}\n",
        env={"T": CANARY},
    )
    assert err.key == "agents[0].backend.temperature" and CANARY not in str(err)
    err = error_of("agents:\n  - name: a\n    backend: {type: '${T}'}\n", env={"T": CANARY})
    assert CANARY not in str(err)
    err = error_of("agents:\n  - {name: '${T} x', backend: openai}\n", env={"T": CANARY})
    assert CANARY not in str(err)


def test_secret_keys_are_not_echoed_even_when_literal() -> None:
    err = error_of(f"agents:\n  - name: a\n    backend: {{type: openai, api_key: [{CANARY}]}}\n")
    assert err.key == "agents[0].backend.api_key" and CANARY not in str(err)


def test_redis_password_is_redacted() -> None:
    team = load_text(ONE_AGENT + f"redis: {{url: 'redis://user:{CANARY}@host:6379/0'}}\n")
    assert team.redis is not None
    assert team.redis.redacted_url == "redis://user:***@host:6379/0"
    assert team.redis.url.endswith("@host:6379/0")
    assert CANARY not in repr(team) and CANARY not in str(team.redis)
    query = RedisConfig(url=f"rediss://host?password={CANARY}&db=1")
    assert CANARY not in query.redacted_url and "db=1" in query.redacted_url
    assert RedisConfig(url="redis://localhost:6379").redacted_url == "redis://localhost:6379"
    assert RedisConfig(url="unix:///tmp/redis.sock").prefix == "massgen:"


def test_bad_redis_url_does_not_echo_it() -> None:
    err = error_of(ONE_AGENT + f"redis: {{url: 'http://u:{CANARY}@host'}}\n")
    assert err.key == "redis.url" and CANARY not in str(err)


def test_base_url_credentials_are_redacted_in_repr() -> None:
    backend = BackendConfig(type="vllm", base_url=f"http://u:{CANARY}@gpu:8000/v1")
    assert CANARY not in repr(backend)


# -- consensus rule and schema ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "live", "needed"),
    [(0.5, 3, 2), (0.5, 4, 2), (0.5, 1, 1), (1.0, 3, 3), (0.1, 30, 3), (0.01, 2, 1), (0.7, 10, 7)],
)
def test_votes_needed(threshold: float, live: int, needed: int) -> None:
    assert ConsensusConfig(threshold=threshold).votes_needed(live) == needed


def test_json_schema_describes_the_team() -> None:
    schema = json_schema()
    json.dumps(schema)  # serialisable
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert {"agents", "orchestrator", "backends", "redis"} <= set(schema["properties"])
    assert "source" not in schema["properties"] and "base_dir" not in schema["properties"]
    assert schema["required"] == ["agents"]
    defs = schema["$defs"]
    assert "max_rounds" in defs["ConsensusConfig"]["properties"]
    assert defs["ConsensusConfig"]["properties"]["max_rounds"]["description"]
    assert '"writeOnly": true' in json.dumps(defs["BackendConfig"]["properties"]["api_key"])
    assert "memory_strategy" in defs["AgentConfig"]["properties"]
    assert "cache_ttl" in defs["OrchestratorConfig"]["properties"]


def test_models_validate_without_yaml() -> None:
    team = TeamConfig(agents=[AgentConfig(name="a", backend="replay")])
    assert team.backend_for("a").type == "replay"


def test_a_standby_agent_nobody_falls_back_to_is_an_error():
    from massgen.config import loads
    from massgen.errors import ConfigError

    text = (
        "agents:\n"
        "  - {name: a, backend: {type: replay}}\n"
        "  - {name: b, backend: {type: replay}, standby: true}\n"
    )
    try:
        loads(text, file="team.yaml")
    except ConfigError as e:
        assert e.line == 3 and "standby" in str(e) and "fallback: b" in str(e)
    else:
        raise AssertionError("expected a ConfigError")
    ok = loads(
        text.replace(
            "{name: a, backend: {type: replay}}", "{name: a, backend: {type: replay}, fallback: b}"
        )
    )
    assert ok.agent("b").standby
