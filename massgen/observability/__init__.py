"""Traces (OTLP/HTTP) and metrics (Prometheus), both fed by the run's events. Neither is
imported unless its feature is switched on (docs/observability.md)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlsplit

from massgen.errors import ConfigError
from massgen.redact import redact_url

if TYPE_CHECKING:
    from massgen.agents.agent import Agent
    from massgen.config.models import ObservabilityConfig
    from massgen.observability.tracing import Tracing

TRACES_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""The standard variables that switch traces on without an ``observability.otlp``."""
SAMPLERS = ("always_on", "always_off", "traceidratio")  # each also as parentbased_<it>
OTLP_EXPORTERS = frozenset({"otlp", "otlp_proto_http"})
"""The ``OTEL_TRACES_EXPORTER`` names of what massgen sends; ``none``: traces off."""
SECONDS_LIKE_MS = 1000.0
"""An export timeout (seconds) this long was likely meant in the spec's milliseconds."""
COMPRESSIONS = ("gzip", "deflate")  # and ``none``, as the SDK takes them
_log = logging.getLogger("massgen.observability.tracing")


class Given(NamedTuple):
    """A setting's value and where it was given (a variable, or a key of the section), so
    that an error or a warning about it names the place to change."""

    value: str
    name: str


@dataclass(frozen=True, slots=True)
class Export:
    """Where and how spans go: the ``observability`` section first, else the standard
    ``OTEL_*`` variables, read as the OpenTelemetry SDK reads them (docs/observability.md)."""

    url: str
    headers: dict[str, str]
    resource: dict[str, Any]
    timeout: float = 10.0
    """Seconds for each request, and for the last flush: ``OTEL_EXPORTER_OTLP_TIMEOUT`` is
    read in seconds, as the Python SDK reads it (1.45), not in the spec's milliseconds."""
    compression: str = ""
    """``gzip``, ``deflate`` or none."""
    sampler: str = "parentbased_always_on"
    ratio: float = 1.0
    """``traceidratio``'s: the share of traces kept."""
    delay: float = 5.0
    """Seconds from a batch's first span to its export (``OTEL_BSP_SCHEDULE_DELAY``, in ms)."""
    batch: int = 512
    """Spans at which a batch leaves at once (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``)."""
    queue: int = 2048
    """Spans waiting for the collector beyond which the oldest are dropped
    (``OTEL_BSP_MAX_QUEUE_SIZE``)."""
    protocol: Given | None = None
    """``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``: spans go as ``http/protobuf`` whatever it says
    (any other value is warned of)."""
    certificate: Given | None = None
    """A CA file (PEM) trusted for an ``https`` collector instead of the system's CAs."""
    client_certificate: Given | None = None
    """Mutual TLS: massgen's certificate (PEM), and its key unless ``client_key`` holds it."""
    client_key: Given | None = None


def traces_url(base: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base URL (as ``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def _pairs(given: Given | None, secret: bool = False) -> dict[str, str]:
    """``k=v,k2=v2`` (W3C baggage style, percent-encoded), as headers and resources are; an
    entry that is not ``k=v`` (``Authorization: Bearer x``) is warned of and left out, as the
    SDK does, without its text if it is ``secret``."""
    if given is None:
        return {}
    found: dict[str, str] = {}
    for at, item in enumerate(given.value.split(","), 1):
        key, eq, value = item.partition("=")
        if eq and key.strip():
            found[unquote(key.strip())] = unquote(value.strip())
        elif item.strip():
            shown = f"entry {at}" if secret else repr(item.strip())
            _log.warning("traces: %s: %s is not key=value, so it is left out", given.name, shown)
    return found


def _ignored(name: str, value: str, why: str, used: object) -> None:
    """As the SDK does with a value it cannot use: say so, and go on with the default."""
    _log.warning("traces: %s=%r %s: %s is used instead", name, value, why, used)


def _number(
    environ: Mapping[str, str], names: tuple[str, ...], default: float, least: float = 0.0
) -> float:
    """The first of ``names`` set, a number from ``least`` (``0``: above it); else (warned of
    if it is set) ``default``."""
    name = next((n for n in names if environ.get(n)), "")
    if not name:
        return default
    try:
        number = float(environ[name])
    except ValueError:
        number = math.nan  # fails both tests below
    if number >= least if least else number > 0:
        return number
    why = f"is not a number {'of at least' if least else 'above'} {least:g}"
    _ignored(name, environ[name], why, default)
    return default


def _compression(given: Given | None) -> str:
    """``gzip``, ``deflate`` or ``""``: none, also for a value the SDK does not take (warned
    of, as it does)."""
    value = given.value.strip().lower() if given else ""
    if given is None or value in COMPRESSIONS:
        return value
    if value != "none":
        _ignored(given.name, given.value, "is not gzip, deflate or none", "none")
    return ""


def _endpoint(environ: Mapping[str, str]) -> str | None:
    """The traces URL the variables give (``None``: none), an http(s) URL as OTLP/HTTP needs."""
    for name in TRACES_ENV:
        if value := environ.get(name):
            url = urlsplit(value)
            if url.scheme not in ("http", "https") or not url.netloc:
                shown = redact_url(value) if "://" in value else value.rpartition("@")[2]
                hint = "write the scheme too, e.g. http://localhost:4318"
                raise ConfigError(f"not an http(s) URL: {shown!r}", key=name, hint=hint)
            return value if name != "OTEL_EXPORTER_OTLP_ENDPOINT" else traces_url(value)
    return None


def export_settings(settings: ObservabilityConfig, environ: Mapping[str, str]) -> Export:
    """How :class:`Export` is read: settings first, then ``OTEL_EXPORTER_OTLP_TRACES_*``,
    then ``OTEL_EXPORTER_OTLP_*``. Files are not read here: the exporter reads them as it
    starts (:func:`massgen.observability.export.tls`)."""

    def given(name: str, key: str = "") -> Given | None:
        if key and (value := getattr(settings, key)):
            return Given(value, f"observability.{key}")
        for variable in (f"OTEL_EXPORTER_OTLP_TRACES_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
            if value := environ.get(variable):
                return Given(value, variable)
        return None

    from massgen.backends.openai_http import userinfo_auth

    given_url = traces_url(settings.otlp) if settings.otlp else _endpoint(environ)
    url, basic = userinfo_auth(given_url or traces_url("http://localhost:4318"))
    headers = {k: v.get_secret_value() for k, v in settings.headers.items()}
    if not headers and (listed := given("HEADERS")) is not None:
        from massgen.config.models import header_problem

        headers = _pairs(listed, secret=True)
        for key, value in headers.items():  # the file's were checked as it loaded
            if (wrong := header_problem(key, value)) is not None:
                hint = "name=value, a token and one line (%0A and %0D decode to line breaks)"
                raise ConfigError(wrong, key=listed.name, hint=hint)
    if basic:  # the URL's `user:password@` wins, as with the SDK's HTTP clients
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        headers["Authorization"] = basic
    attributes = environ.get("OTEL_RESOURCE_ATTRIBUTES")
    named = Given(attributes, "OTEL_RESOURCE_ATTRIBUTES") if attributes else None
    resource: dict[str, Any] = _pairs(named)
    name = settings.service_name or environ.get("OTEL_SERVICE_NAME")
    resource["service.name"] = name or resource.get("service.name") or "massgen"
    resource["process.pid"] = os.getpid()
    sampler = given_sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler and sampler.removeprefix("parentbased_") not in SAMPLERS:
        sampler = "parentbased_always_on"
        _ignored("OTEL_TRACES_SAMPLER", given_sampler, "is not a sampler", sampler)
    ratio, arg = 1.0, environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if sampler.endswith("traceidratio") and arg:
        try:
            ratio = float(arg)
        except ValueError:
            ratio = -1.0
        if not 0 <= ratio <= 1:
            ratio = 1.0
            _ignored("OTEL_TRACES_SAMPLER_ARG", arg, "is not a ratio from 0 to 1", ratio)
    timeouts = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
    if (timeout := _number(environ, timeouts, 10.0)) >= SECONDS_LIKE_MS:
        variable = next(n for n in timeouts if environ.get(n))
        _log.warning(
            "traces: %s=%r is read in seconds, as the OpenTelemetry Python SDK reads it (the"
            " specification says milliseconds): %g s is used, for each export and at exit",
            variable,
            environ[variable],
            timeout,
        )
    batch = int(_number(environ, ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE",), 512, least=1))
    queue = int(_number(environ, ("OTEL_BSP_MAX_QUEUE_SIZE",), 2048, least=1))
    if batch > queue:  # every full batch would be dropped as waiting too long (the SDK refuses)
        why = f"is above OTEL_BSP_MAX_QUEUE_SIZE ({queue})"
        _ignored("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", str(batch), why, queue)
        batch = queue
    return Export(
        url,
        headers,
        resource,
        timeout=timeout,
        compression=_compression(given("COMPRESSION")),
        sampler=sampler or "parentbased_always_on",
        ratio=ratio,
        delay=_number(environ, ("OTEL_BSP_SCHEDULE_DELAY",), 5000) / 1000,
        batch=batch,
        queue=queue,
        protocol=given("PROTOCOL"),
        certificate=given("CERTIFICATE", "certificate_file"),
        client_certificate=given("CLIENT_CERTIFICATE", "client_certificate_file"),
        client_key=given("CLIENT_KEY", "client_key_file"),
    )


def _otlp_exporter(environ: Mapping[str, str]) -> bool:
    """Whether ``OTEL_TRACES_EXPORTER`` (unset, or a list of names) leaves OTLP on, as the
    SDK's auto-configuration reads it: ``none`` is no exporter; one massgen does not have
    (``console``, ``zipkin``) is warned of, and without an OTLP one beside it traces are off
    (``otlp_proto_grpc`` is OTLP, sent as http/protobuf as with ``..._PROTOCOL=grpc``)."""
    given = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    names = {n.strip().lower() for n in given.split(",")} - {""}
    if names == {"none"}:
        return False
    otlp = not names or bool(names & {*OTLP_EXPORTERS, "otlp_proto_grpc"})
    if names - OTLP_EXPORTERS:
        _log.warning(
            "traces: OTEL_TRACES_EXPORTER=%r names exporters massgen does not have (it sends"
            " OTLP over http/protobuf only): %s",
            given,
            "spans go over OTLP/HTTP alone" if otlp else "traces are off",
        )
    return otlp


def tracing_settings(
    section: ObservabilityConfig | None, environ: Mapping[str, str]
) -> ObservabilityConfig | None:
    """The settings runs are traced with, or ``None``: traces are on with ``otlp`` set or a
    :data:`TRACES_ENV` variable (unless ``OTEL_TRACES_EXPORTER`` names no OTLP exporter),
    and off whatever they say with ``OTEL_SDK_DISABLED=true``."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if section is not None and section.otlp:  # as an exporter a program adds itself
        return section
    if not any(environ.get(name) for name in TRACES_ENV) or not _otlp_exporter(environ):
        return None
    if _endpoint(environ):  # a variable that is not a URL: an error before anything starts
        from massgen.config.models import ObservabilityConfig

        return section or ObservabilityConfig()
    return None


def start_tracing(settings: ObservabilityConfig, agents: Mapping[str, Agent]) -> Tracing:
    """The tracer of an orchestrator (or worker) of ``agents``."""
    from massgen.observability.tracing import Tracing

    return Tracing(settings, agents, export_settings(settings, os.environ))
