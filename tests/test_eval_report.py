"""The eval report against numbers computed by hand: accuracy, Wilson interval, McNemar
against the best single agent, cost per correct answer, latency percentiles, and which
questions count."""

from __future__ import annotations

import json
import re

import pytest

from massgen.eval import build_report
from massgen.eval.chart import _ticks, page, svg


def row(q: int, method: str, correct: bool, *, cost=0.01, latency=1.0, requests=1, **extra):
    return {
        "id": f"q{q}|{method}",
        "question": f"q{q}",
        "method": method,
        "status": "done",
        "correct": correct,
        "cost": cost,
        "latency": latency,
        "requests": requests,
        "prompt_tokens": 100,
        "completion_tokens": 10 * requests,
        **extra,
    }


def rows() -> list[dict]:
    out = []
    for q in range(10):
        out.append(row(q, "single:a", q < 7))
        out.append(row(q, "single:b", q < 5, cost=0.002))
        out.append(
            row(q, "vote", q < 9, cost=0.012, latency=float(q + 1), requests=3, agreement=q / 10)
        )
    out.append(row(10, "single:a", False))  # a question vote and b never finished
    return out


METHODS = ["single:a", "single:b", "vote"]


def test_accuracy_interval_and_paired_test_as_computed_by_hand():
    report = build_report(rows(), METHODS)
    assert (report.questions, report.incomplete, report.best_single) == (10, 1, "single:a")
    a, b, vote = report["single:a"], report["single:b"], report["vote"]
    assert (a.n, a.correct, a.accuracy) == (10, 7, 0.7)
    assert a.interval == pytest.approx((0.3968, 0.8922), abs=5e-5)  # Newcombe's 7/10
    assert vote.interval == pytest.approx((0.5958, 0.9821), abs=5e-5)  # Wilson 9/10
    # vote right where a is wrong on q7, q8; never the reverse: p = 2 * (1/2)^2 = 0.5
    assert (vote.versus, vote.only_this, vote.only_versus, vote.p_value) == ("single:a", 2, 0, 0.5)
    assert (b.only_this, b.only_versus, b.p_value) == (0, 2, 0.5)
    assert a.p_value is None and a.versus is None
    assert a.cost == pytest.approx(0.1) and a.cost_per_correct == pytest.approx(0.1 / 7)
    assert b.cost_per_correct == pytest.approx(0.02 / 5)
    assert (vote.requests, vote.prompt_tokens, vote.completion_tokens) == (3, 100, 30)
    # latencies 1..10 s: P50 = 5.5, P95 = 1 + 0.95 * 9 (linear between order statistics)
    assert (vote.latency_p50, vote.latency_p95) == pytest.approx((5.5, 9.55))
    assert vote.agreement == pytest.approx(0.45)


def test_a_failed_run_is_wrong_and_no_correct_answer_has_no_cost_per_correct():
    found = [row(0, "single:a", True, status="failed"), row(0, "vote", False)]
    report = build_report(found, ["single:a", "vote"])
    assert report["single:a"].failed == 1
    assert report["vote"].cost_per_correct is None
    assert "1 failed runs counted wrong" in report.markdown()
    assert report["single:a"].correct == 0  # whatever the row says


def test_bootstrap_intervals_are_seeded_and_contain_the_accuracy():
    one = build_report(rows(), METHODS, interval="bootstrap", seed=3)
    two = build_report(rows(), METHODS, interval="bootstrap", seed=3)
    assert one["vote"].interval == two["vote"].interval
    low, high = one["single:a"].interval
    assert low <= 0.7 <= high and (low, high) != pytest.approx((0.3968, 0.8922), abs=1e-3)


def test_markdown_json_and_chart_carry_the_same_figures():
    report = build_report(rows(), METHODS)
    table = report.markdown()
    assert "| vote | 10 | 90.0% | 59.6%–98.2% | 0.5 (+2/−0) | 3.00 |" in table
    assert "| single:a | 10 | 70.0% | 39.7%–89.2% | (best single) |" in table
    assert "1 questions left out" in table
    data = json.loads(json.dumps(report.to_dict()))
    assert [m["method"] for m in data["methods"]] == METHODS
    assert data["methods"][2]["p_value"] == 0.5
    picture = svg(report)
    assert picture.count('class="method"') == 3 and "cost per question (USD)" in picture
    html = page(report)
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")


def test_free_runs_are_charted_against_requests_and_ticks_are_round():
    free = [dict(r, cost=0.0) for r in rows()]
    picture = svg(build_report(free, METHODS))
    assert "requests per question" in picture
    # single:a and single:b both make 1 request: drawn side by side, not on one another
    dots = re.findall(r'<g class="method" data-method="([^"]+)">.*?<circle cx="([\d.]+)"', picture)
    x = {name: float(cx) for name, cx in dots}
    assert x["single:b"] - x["single:a"] == 14 and x["vote"] > x["single:b"]
    assert _ticks(0.0123) == pytest.approx([0, 0.0025, 0.005, 0.0075, 0.01, 0.0125])
    assert _ticks(9.0) == [0, 2, 4, 6, 8, 10]


def test_a_png_is_written_only_when_matplotlib_is_installed(tmp_path):
    import importlib.util

    from massgen.eval.chart import write_png

    wrote = write_png(build_report(rows(), METHODS), tmp_path / "chart.png")
    assert wrote == (importlib.util.find_spec("matplotlib") is not None)
    assert (tmp_path / "chart.png").exists() == wrote
