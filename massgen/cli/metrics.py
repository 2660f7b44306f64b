"""``--metrics-port`` and ``--metrics-host`` of the commands that run or serve a team: a
:class:`~massgen.observability.metrics.Metrics` served while the command runs. Nothing of
it is imported without a port (docs/observability.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, TextIO

from massgen.cli.common import Opt

if TYPE_CHECKING:
    from massgen.observability.metrics import Metrics
    from massgen.orchestrator import Orchestrator
    from massgen.serve.teams import Team

MetricsPort = Annotated[
    int | None,
    Opt(
        "--metrics-port",
        metavar="PORT",
        min=0,
        max=65535,
        help="Serve Prometheus metrics on PORT (0: a free one) at /metrics.",
        show_default=False,
    ),
]
MetricsHost = Annotated[str, Opt("--metrics-host", metavar="HOST", help="Metrics address.")]


@contextlib.contextmanager
def metrics_served(
    port: int | None, host: str, to: TextIO, team: Orchestrator | None = None
) -> Iterator[Metrics | None]:
    """Metrics served on ``host:port`` while the block runs, their URL told on ``to``, fed
    by ``team``'s runs and read from its backends; ``None`` (nothing imported) without a port."""
    if port is None:
        yield None
        return
    from massgen.observability.metrics import Metrics, serve

    metrics = Metrics()
    if team is not None:
        team.subscribers.append(metrics)
        metrics.watch_backends(team.backends)
    with serve(metrics, host, port) as url:
        print(f"metrics on {url}", file=to, flush=True)
        yield metrics


@contextlib.contextmanager
def teams_metrics_served(
    port: int | None, host: str, to: TextIO, teams: list[Team]
) -> Iterator[None]:
    """As :func:`metrics_served`, for the ``teams`` of ``massgen serve``: each team's runs
    and backends (its sessions' too), every series labelled with the team's name."""
    if port is None:
        yield
        return
    from massgen.observability.metrics import TeamsMetrics, serve

    metrics = TeamsMetrics()
    for team in teams:
        team.observer = metrics.team(team.name)
        team.observer.watch_backends(team.backends)
    with serve(metrics, host, port) as url:
        print(f"metrics on {url}", file=to, flush=True)
        yield
