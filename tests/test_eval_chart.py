"""The eval chart as a reader sees it: the HTML page `massgen eval` writes, opened in a real
headless Chromium (Debian's ``chromium`` through Playwright; nothing downloaded): no script,
no request leaving the page, every method drawn with its interval bar inside the plot, and a
screenshot in test-artifacts/ to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from massgen.eval import build_report
from massgen.eval.chart import page
from tests.test_dashboard_browser import ARTIFACTS, browser  # noqa: F401 (a fixture)
from tests.test_eval_report import METHODS, rows


async def test_the_chart_renders_every_method_with_its_interval(browser: Any, tmp_path: Path):  # noqa: F811
    report = build_report(rows(), [*METHODS, "consensus"][:3])
    html = tmp_path / "chart.html"
    html.write_text(page(report, "massgen eval: sums"))
    ARTIFACTS.mkdir(exist_ok=True)
    tab = await browser.new_page(viewport={"width": 900, "height": 760})
    requests: list[str] = []
    errors: list[str] = []
    tab.on("request", lambda r: requests.append(r.url))
    tab.on("console", lambda m: m.type == "error" and errors.append(m.text))
    await tab.goto(html.as_uri())
    assert requests == [html.as_uri()] and errors == []  # self-contained
    plot = await tab.locator("svg rect").first.bounding_box()
    points = tab.locator("g.method")
    assert await points.count() == 3
    for i in range(3):
        dot = await points.nth(i).locator("circle").first.bounding_box()
        bar = await points.nth(i).locator("line").first.bounding_box()
        assert plot and dot and bar
        inside_x = plot["x"] <= dot["x"] and dot["x"] + dot["width"] <= plot["x"] + plot["width"]
        inside_y = plot["y"] <= bar["y"] and bar["y"] + bar["height"] <= plot["y"] + plot["height"]
        assert inside_x and inside_y, (i, plot, dot, bar)
        assert bar["height"] > 20  # 10 questions: the interval is wide, and shown so
    # higher accuracy is drawn higher: vote (90%) above single:a (70%) above single:b (50%)
    ys = [(await points.nth(i).locator("circle").first.bounding_box() or {})["y"] for i in range(3)]
    assert ys[2] < ys[0] < ys[1]
    assert await tab.locator("table tr").count() == 4
    await tab.screenshot(path=str(ARTIFACTS / "eval-chart.png"), full_page=True)
    assert (ARTIFACTS / "eval-chart.png").stat().st_size > 10_000
