"""The eval's report: per method its accuracy with a 95 % interval (or ``confidence``), a
paired test against the best single agent, what it spent and how long it took; as a
markdown table and JSON.

Only questions every method finished are counted (a budget stop or Ctrl-C can leave a
question half done; a run the budget stopped midway is not finished): the methods are
compared on the same questions, as a paired test needs. A failed run counts as wrong."""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from massgen.evalstats import bootstrap, mcnemar_exact, wilson, z_for

INTERVALS = ("wilson", "bootstrap")


@dataclass(frozen=True, slots=True)
class MethodScore:
    method: str
    n: int
    correct: int
    accuracy: float
    interval: tuple[float, float]
    requests: float
    """Mean requests per question."""
    prompt_tokens: float
    completion_tokens: float
    cost: float
    """Total USD over the ``n`` questions."""
    cost_per_correct: float | None
    latency_p50: float
    latency_p95: float
    failed: int = 0
    agreement: float | None = None
    """Mean agreement (the winner's support), for methods that record it."""
    judge_cost: float = 0.0
    versus: str | None = None
    """The best single agent this method is tested against (None: it is that agent)."""
    only_this: int = 0
    """Questions this method got right and ``versus`` wrong."""
    only_versus: int = 0
    p_value: float | None = None
    """Exact McNemar test on the discordant questions."""


@dataclass(slots=True)
class EvalReport:
    """Scores per method, on ``questions`` questions all methods finished."""

    methods: list[MethodScore]
    questions: int
    incomplete: int = 0
    """Questions left out: not every method finished them."""
    interval: str = "wilson"
    best_single: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    confidence: float = 0.95
    """Of every method's interval."""

    def __getitem__(self, method: str) -> MethodScore:
        return next(m for m in self.methods if m.method == method)

    def to_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "incomplete": self.incomplete,
            "interval": self.interval,
            "confidence": self.confidence,
            "best_single": self.best_single,
            "methods": [asdict(m) for m in self.methods],
            **({"meta": self.meta} if self.meta else {}),
        }

    def markdown(self) -> str:
        return to_markdown(self)


def _percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _right(row: Mapping[str, Any]) -> bool:
    return bool(row.get("correct")) and row.get("status") != "failed"


def build_report(
    rows: Sequence[Mapping[str, Any]],
    methods: Sequence[str],
    *,
    interval: str = "wilson",
    seed: int = 0,
    meta: Mapping[str, Any] | None = None,
    confidence: float = 0.95,
) -> EvalReport:
    """The report of results ``rows`` (one per question and method) for ``methods``, each
    method's interval of ``confidence``."""
    if interval not in INTERVALS:
        raise ValueError(f"interval is one of {INTERVALS}, not {interval!r}")
    z = z_for(confidence)
    by: dict[str, dict[str, Mapping[str, Any]]] = {m: {} for m in methods}
    order: list[str] = []
    for row in rows:
        if row.get("method") in by and not row.get("stopped"):
            by[row["method"]][row["question"]] = row
            if row["question"] not in order:
                order.append(row["question"])
    complete = [q for q in order if all(q in by[m] for m in methods)]
    right = {m: [_right(by[m][q]) for q in complete] for m in methods}
    singles = [m for m in methods if m.startswith("single:")]
    best = max(singles, key=lambda m: sum(right[m]), default=None)  # first of the best
    scores = []
    for m in methods:
        got = [by[m][q] for q in complete]
        k, n = sum(right[m]), len(complete)
        if interval == "wilson" or n == 0:
            low, high = wilson(k, n, z)
        else:
            values = [float(x) for x in right[m]]
            low, high = bootstrap(values, rng=random.Random(seed), confidence=confidence)
        cost = sum(float(r.get("cost") or 0.0) for r in got)
        latencies = [float(r.get("latency") or 0.0) for r in got]
        agreements = [float(r["agreement"]) for r in got if r.get("agreement") is not None]
        only_this = only_versus = 0
        p_value = None
        if best is not None and m != best and n:
            only_this = sum(a and not b for a, b in zip(right[m], right[best], strict=True))
            only_versus = sum(b and not a for a, b in zip(right[m], right[best], strict=True))
            p_value = mcnemar_exact(only_this, only_versus)

        def mean(key: str, rows: Sequence[Mapping[str, Any]] = got) -> float:
            return statistics.fmean(float(r.get(key) or 0) for r in rows) if rows else 0.0

        scores.append(
            MethodScore(
                method=m,
                n=n,
                correct=k,
                accuracy=k / n if n else 0.0,
                interval=(low, high),
                requests=mean("requests"),
                prompt_tokens=mean("prompt_tokens"),
                completion_tokens=mean("completion_tokens"),
                cost=cost,
                cost_per_correct=cost / k if k else None,
                latency_p50=_percentile(latencies, 0.5),
                latency_p95=_percentile(latencies, 0.95),
                failed=sum(r.get("status") == "failed" for r in got),
                agreement=statistics.fmean(agreements) if agreements else None,
                judge_cost=sum(float(r.get("judge_cost") or 0.0) for r in got),
                versus=best if best is not None and m != best else None,
                only_this=only_this,
                only_versus=only_versus,
                p_value=p_value,
            )
        )
    left_out = len(order) - len(complete)
    return EvalReport(scores, len(complete), left_out, interval, best, dict(meta or {}), confidence)


def _money(x: float | None) -> str:
    if x is None:
        return "–"
    return f"${x:.4f}" if x >= 0.01 or x == 0 else f"${x:.6f}"


def _p(score: MethodScore) -> str:
    if score.p_value is None:
        return "(best single)" if score.method.startswith("single:") else "–"
    return f"{score.p_value:.3g} (+{score.only_this}/−{score.only_versus})"


def to_markdown(report: EvalReport) -> str:
    """The report as a markdown table, with a line on what was counted."""
    head = (
        f"| method | n | accuracy | {report.confidence * 100:g}% CI "
        "| vs best single: p (+won/−lost) | requests/q "
        "| prompt tok/q | completion tok/q | cost | $/correct | latency P50 | P95 |"
    )
    lines = [head, "|" + "---|" * 12]
    for s in report.methods:
        low, high = s.interval
        lines.append(
            f"| {s.method} | {s.n} | {s.accuracy:.1%} | {low:.1%}–{high:.1%} | {_p(s)} "
            f"| {s.requests:.2f} | {s.prompt_tokens:.0f} | {s.completion_tokens:.0f} "
            f"| {_money(s.cost)} | {_money(s.cost_per_correct)} "
            f"| {s.latency_p50:.2f}s | {s.latency_p95:.2f}s |"
        )
    notes = [f"{report.questions} questions, {report.interval} intervals"]
    if report.incomplete:
        notes.append(f"{report.incomplete} questions left out (not finished by every method)")
    failed = sum(s.failed for s in report.methods)
    if failed:
        notes.append(f"{failed} failed runs counted wrong")
    judge = sum(s.judge_cost for s in report.methods)
    if judge:
        notes.append(f"judge cost {_money(judge)} (not in the methods' cost)")
    return "\n".join(lines) + "\n\n" + "; ".join(notes) + ".\n"
