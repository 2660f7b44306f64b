"""Traces over HTTPS (docs/observability.md): the certificate variables and keys as the
OpenTelemetry SDK reads them, against the loopback OTLP receiver of tests/otlp.py wrapped in
TLS, with a throwaway CA and certificates made here; and the protocol variable. Real runs of
the replay backend."""

from __future__ import annotations

import json
import re
import shlex
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from massgen.config import ObservabilityConfig, loads
from massgen.errors import ConfigError
from massgen.observability import export_settings
from massgen.observability.export import tls
from massgen.orchestrator import Orchestrator
from tests.otlp import Receiver, observability_warnings, whole_run
from tests.procs import run_massgen
from tests.teamkit import GEO_CONSENSUS

ROOT = Path(__file__).resolve().parent.parent
TASK = "What is the capital of France?"


@dataclass(frozen=True)
class Files:
    """The reader's files: the CA that signed the collector's certificate, and massgen's
    certificate (from the same CA) with its key."""

    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> Files:
    made = Files(tmp_path / "ca.pem", tmp_path / "massgen.pem", tmp_path / "massgen-key.pem")
    ca.cert_pem.write_to_path(str(made.ca))
    client = ca.issue_cert("massgen")
    client.cert_chain_pems[0].write_to_path(str(made.cert))
    client.private_key_pem.write_to_path(str(made.key))
    return made


def server_tls(ca: trustme.CA, *, client_certificates: bool = False) -> ssl.SSLContext:
    """The collector's TLS: a certificate for 127.0.0.1 from ``ca``; with
    ``client_certificates``, it refuses a client without one from ``ca`` (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    if client_certificates:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
def collector(ca: trustme.CA) -> Iterator[Receiver]:
    with Receiver(server_tls(ca)) as r:
        yield r


@pytest.fixture
def mutual(ca: trustme.CA) -> Iterator[Receiver]:
    with Receiver(server_tls(ca, client_certificates=True)) as r:
        yield r


async def run(team: str | Path, times: int = 1) -> None:
    """Run the team ``times``; each run's spans are sent (or failed) before the next."""
    config = loads(team) if isinstance(team, str) else team
    async with Orchestrator.from_config(config) as orchestrator:
        for _ in range(times):
            assert (await orchestrator.arun(TASK)).winner == "bob"
            assert orchestrator.tracing is not None
            await orchestrator.tracing.flush()


async def test_spans_arrive_over_https_trusting_the_ca_the_traces_variable_names(
    collector: Receiver, files: Files, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(other))  # not this one:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", str(files.ca))  # this one
    await run(GEO_CONSENSUS)
    spans = collector.wait(whole_run)
    assert collector.url.startswith("https://") and collector.posts == ["/v1/traces"]
    assert {s.trace_id for s in spans} == {spans[0].trace_id}


async def test_without_the_ca_no_span_arrives_and_the_runs_cost_one_warning(
    collector: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    await run(GEO_CONSENSUS, times=2)  # the runs succeed
    assert collector.posts == []
    [warned] = observability_warnings(caplog)
    assert collector.url in warned and "OTEL_EXPORTER_OTLP_CERTIFICATE" in warned


async def test_a_collector_that_asks_for_a_client_certificate_gets_spans_only_with_one(
    mutual: Receiver,
    files: Files,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", mutual.url + "/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(files.ca))
    await run(GEO_CONSENSUS)
    [refused] = observability_warnings(
        caplog
    )  # the reason as TLS 1.3 gives it: an alert, or a reset
    assert mutual.posts == [] and mutual.url in refused
    caplog.clear()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", str(files.cert))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", str(files.key))
    await run(GEO_CONSENSUS)
    mutual.wait(whole_run)
    assert mutual.posts == ["/v1/traces"] and observability_warnings(caplog) == []


async def test_the_sections_files_are_relative_to_the_team_file_and_win_over_the_variables(
    mutual: Receiver, files: Files, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    section = {
        "otlp": mutual.url,
        "certificate_file": "ca.pem",
        "client_certificate_file": "massgen.pem",
        "client_key_file": "massgen-key.pem",
    }
    team = tmp_path / "team.yaml"
    team.write_text(GEO_CONSENSUS + "observability: " + json.dumps(section) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tmp_path / "absent.pem"))
    await run(team)
    mutual.wait(whole_run)


def test_a_missing_certificate_is_an_error_naming_it_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "team.yaml").write_text(GEO_CONSENSUS)
    absent = tmp_path / "absent.pem"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(absent),
    }
    done = run_massgen("run", "team.yaml", TASK, "--no-record", cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    head = f"error: `OTEL_EXPORTER_OTLP_CERTIFICATE`: cannot read {absent}: "
    assert done.stderr.startswith(head), done.stderr
    assert "\n  hint: give the PEM file of the CA" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def _encrypted(key: Path, to: Path) -> Path:
    plain = serialization.load_pem_private_key(key.read_bytes(), None)
    secret = serialization.BestAvailableEncryption(b"pass")
    pkcs8 = serialization.PrivateFormat.PKCS8
    to.write_bytes(plain.private_bytes(serialization.Encoding.PEM, pkcs8, secret))
    return to


@pytest.mark.parametrize(
    "case", ["ca-not-a-certificate", "key-encrypted", "key-alone", "key-not-the-certificates"]
)
def test_a_file_that_cannot_serve_is_an_error_naming_its_variable(
    case: str, files: Files, ca: trustme.CA, tmp_path: Path
) -> None:
    cert, key = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY"
    environ, named = {
        "ca-not-a-certificate": ({"OTEL_EXPORTER_OTLP_CERTIFICATE": files.key}, "CERTIFICATE"),
        "key-encrypted": (
            {cert: files.cert, key: _encrypted(files.key, tmp_path / "locked.pem")},
            "TRACES_CLIENT_KEY",
        ),
        "key-alone": ({key: files.key}, "TRACES_CLIENT_KEY"),
        "key-not-the-certificates": (
            {cert: files.cert, key: tmp_path / "other-key.pem"},
            "CLIENT_CERTIFICATE",
        ),
    }[case]
    ca.issue_cert("other").private_key_pem.write_to_path(str(tmp_path / "other-key.pem"))
    export = export_settings(
        ObservabilityConfig(otlp="https://127.0.0.1:9"), {k: str(v) for k, v in environ.items()}
    )
    with pytest.raises(ConfigError) as caught:
        tls(export)
    e = caught.value
    assert (e.key, bool(e.hint)) == (f"OTEL_EXPORTER_OTLP_{named}", True)
    assert "PRIVATE KEY" not in str(e) and "CERTIFICATE-----" not in str(e)
    if case == "key-alone":
        assert e.hint is not None and "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE" in e.hint
    else:
        assert any(str(path) in e.message for path in environ.values())
    http = export_settings(ObservabilityConfig(otlp="http://127.0.0.1:9"), {})
    assert tls(http) is None  # the files are for https only


@pytest.mark.parametrize("protocol", ["grpc", "http/json", "thrift"])
async def test_another_protocol_is_warned_of_once_and_spans_still_go_as_protobuf(
    protocol: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with Receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        await run(GEO_CONSENSUS, times=2)
        spans = receiver.wait(whole_run)
        assert spans[0].headers["content-type"] == "application/x-protobuf"
        [warned] = observability_warnings(caplog)
        assert f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}" in warned and "4318" in warned
        caplog.clear()
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")  # read first
        await run(GEO_CONSENSUS)
        assert observability_warnings(caplog) == []


def test_the_tls_example_of_docs_observability_md_runs(
    mutual: Receiver, files: Files, tmp_path: Path
) -> None:
    """The variables of the example, as written, for a collector that asks for massgen's
    certificate: its URL stands for the collector's, its files for these."""
    page = (ROOT / "docs/observability.md").read_text()
    block = re.search(r"```sh\n(export OTEL_EXPORTER_OTLP_ENDPOINT=https://.*?)```", page, re.S)
    assert block is not None
    ours = {
        "OTEL_EXPORTER_OTLP_CERTIFICATE": files.ca,
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": files.cert,
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": files.key,
    }
    env, commands = {}, []
    for line in block[1].splitlines():
        argv = shlex.split(line, comments=True)
        if argv[0] == "export":
            name, _, value = argv[1].partition("=")
            env[name] = str(ours.get(name, value))
        else:
            commands.append(argv)
    assert set(ours) < set(env) and env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("https://")
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = mutual.url
    (tmp_path / "team.yaml").write_text(GEO_CONSENSUS)
    [(program, *args)] = commands
    assert program == "massgen"
    done = run_massgen(*args, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "did not take spans" not in done.stderr
    mutual.wait(whole_run)
