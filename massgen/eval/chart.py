"""The report as a picture: accuracy (with its interval as a bar) against cost per question,
one point per method, in a self-contained HTML page with inline SVG (no script, nothing
fetched). When every method cost nothing (offline backends), the x axis is requests per
question instead. A PNG too, only if matplotlib is installed."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path

from massgen.eval.report import EvalReport, MethodScore

W, H = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 40, 60
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _axis(report: EvalReport) -> tuple[str, list[float]]:
    costs = [s.cost / s.n if s.n else 0.0 for s in report.methods]
    if any(costs):
        return "cost per question (USD)", costs
    return "requests per question (every method cost $0)", [s.requests for s in report.methods]


def _ticks(high: float, count: int = 5) -> list[float]:
    """Round ticks from 0 past ``high``: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    base = 10 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= raw)
    return [round(i * step, 12) for i in range(math.ceil(high / step - 1e-9) + 1)]


def _label(x: float) -> str:
    return f"{x:.6g}"


def svg(report: EvalReport) -> str:
    """The chart as an SVG element."""
    title, xs = _axis(report)
    ticks = _ticks(max(xs, default=0.0) * 1.05 or 1.0)
    x_max = ticks[-1] or 1.0
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + plot_w * x / x_max

    def py(y: float) -> float:
        return TOP + plot_h * (1 - y)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" role="img" font-family="sans-serif" font-size="12">',
        f"<title>Accuracy against {html.escape(title)}, per method</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" '
        'fill="#fafafa" stroke="#999"/>',
    ]
    right, bottom = LEFT + plot_w, TOP + plot_h
    for i in range(11):
        y = py(i / 10)
        out.append(f'<line x1="{LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{i * 10}%</text>')
    for t in ticks:
        x = px(t)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 5}" stroke="#999"/>'
        )
        out.append(f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle">{_label(t)}</text>')
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{H - 18}" text-anchor="middle">'
        f"{html.escape(title)}</text>"
        f'<text transform="translate(18 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">'
        f"accuracy (bar: {report.confidence * 100:g}% interval)</text>"
    )
    for i, score in enumerate(report.methods):
        out.append(_point(score, _dodged(px, xs, i), py, COLOURS[i % len(COLOURS)], i))
    out.append("</svg>")
    return "\n".join(out)


DODGE = 14
"""Pixels between methods drawn at the same x (same cost), so their bars stay apart."""


def _dodged(px: Callable[[float], float], xs: list[float], i: int) -> float:
    """Method ``i``'s x in pixels, moved aside from the others at the same x."""
    same = [j for j, x in enumerate(xs) if abs(px(x) - px(xs[i])) < DODGE]
    first = max(px(xs[i]) - (len(same) - 1) / 2 * DODGE, LEFT + 6)  # not left of the plot
    return first + same.index(i) * DODGE


def _line(x1: float, y1: float, x2: float, y2: float, colour: str) -> str:
    return (
        f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" '
        f'stroke="{colour}" stroke-width="2"/>'
    )


def _point(score: MethodScore, x: float, py: Callable[[float], float], colour: str, i: int) -> str:
    low, high = score.interval
    y, top, bottom = py(score.accuracy), py(high), py(low)
    name = html.escape(score.method)
    legend_y = TOP + 16 + 20 * i
    return (
        f'<g class="method" data-method="{name}">'
        f"<title>{name}: {score.accuracy:.1%} ({low:.1%}–{high:.1%}), n={score.n}</title>"
        + _line(x, bottom, x, top, colour)
        + _line(x - 5, bottom, x + 5, bottom, colour)
        + _line(x - 5, top, x + 5, top, colour)
        + f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>'
        f'<text x="{x + 8:.1f}" y="{y - 6:.1f}" fill="{colour}">{i + 1}</text>'
        f'<circle cx="{W - RIGHT + 20}" cy="{legend_y - 4}" r="5" fill="{colour}"/>'
        f'<text x="{W - RIGHT + 30}" y="{legend_y}">{i + 1}. {name} {score.accuracy:.0%}</text>'
        "</g>"
    )


def _p_cell(score: MethodScore, best: str | None) -> str:
    if score.p_value is not None:
        return f"{score.p_value:.3g} (+{score.only_this}/−{score.only_versus})"
    return "best single" if score.method == best else "–"


def page(report: EvalReport, title: str = "massgen eval") -> str:
    """A whole HTML page: the chart, then the table."""
    rows = "".join(
        f"<tr><td>{html.escape(s.method)}</td><td>{s.n}</td><td>{s.accuracy:.1%}</td>"
        f"<td>{s.interval[0]:.1%}–{s.interval[1]:.1%}</td>"
        f"<td>{_p_cell(s, report.best_single)}</td>"
        f"<td>{s.requests:.2f}</td><td>${s.cost:.4f}</td>"
        f"<td>{'–' if s.cost_per_correct is None else f'${s.cost_per_correct:.4f}'}</td></tr>"
        for s in report.methods
    )
    head = "<tr><th>method</th><th>n</th><th>accuracy</th>"
    head += f"<th>{report.confidence * 100:g}% interval</th>"
    head += "<th>p vs best single</th><th>requests/q</th><th>cost</th><th>$/correct</th></tr>"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;margin-top:16px}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
        f"<p>{report.questions} questions; best single agent: "
        f"{html.escape(report.best_single or 'none')}. Methods of the same cost are drawn side "
        "by side.</p>\n"
        f"{svg(report)}\n<table>{head}{rows}</table></body></html>\n"
    )


def write_png(report: EvalReport, path: Path) -> bool:
    """The chart as a PNG with matplotlib, if it is installed; whether it was written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    title, xs = _axis(report)
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    for score, x in zip(report.methods, xs, strict=True):
        low, high = score.interval
        ax.errorbar(
            [x],
            [score.accuracy],
            yerr=[[score.accuracy - low], [high - score.accuracy]],
            fmt="o",
            capsize=4,
            label=score.method,
        )
    ax.set_xlabel(title)
    ax.set_ylabel(f"accuracy (bar: {report.confidence * 100:g}% interval)")
    ax.set_ylim(0, 1)
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
