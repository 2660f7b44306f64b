"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright with
that executable; no browser is downloaded): a 3-agent consensus runs in this process while
the page shows its agents' text streaming in, then the winner. Screenshots (desktop and
phone width) land in test-artifacts/. Without Chromium or Playwright the test fails, saying
what to install (.ci/run installs both)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from massgen.serve.board import Board
from tests.boardkit import ANSWERS, FIRST, WINNER, gated_team, served
from tests.mas.helpers import SHARED_REDIS
from tests.procs import start_ready
from tests.test_cli_distributed import TEAM

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path(os.environ.get("MASSGEN_TEST_CHROMIUM", "/usr/bin/chromium"))
TASK = "What is the capital of France? <img src=x onerror=alert(2)>"

# The WCAG contrast ratio of every element's own text against the background it is drawn on.
LOW_CONTRAST = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (node) => {
    for (; node; node = node.parentElement) {
      const c = rgb(getComputedStyle(node).backgroundColor);
      if (c.length === 3 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const node of document.querySelectorAll("body *")) {
    const own = [...node.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !node.checkVisibility() || node.closest(".sr-only")) continue;
    const [a, b] = [lum(rgb(getComputedStyle(node).color)), lum(background(node))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push(node.tagName + " " + node.className + ": " + ratio.toFixed(2));
  }
  return low;
}"""


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("Playwright is missing: pip install -e '.[dev]'")
    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        await chromium.close()


class Watched:
    """A page, and what would show a fault: console errors, uncaught errors, dialogs."""

    def __init__(self, page: Any) -> None:
        self.page, self.faults = page, []
        page.on("console", lambda m: m.type == "error" and self.faults.append(m.text))
        page.on("pageerror", lambda e: self.faults.append(f"uncaught: {e}"))
        page.on("dialog", self.on_dialog)

    async def on_dialog(self, dialog: Any) -> None:
        self.faults.append(f"a dialog opened: {dialog.message}")
        await dialog.dismiss()


async def test_the_page_streams_a_consensus_then_shows_the_winner(browser: Any) -> None:
    from playwright.async_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    board, gate = Board(), asyncio.Event()
    async with served(board) as url:
        desktop = Watched(await browser.new_page(viewport={"width": 1280, "height": 900}))
        page = desktop.page
        await page.goto(url)
        await expect(page.locator("#conn")).to_have_text("live")
        await expect(page.get_by_text("No run yet.")).to_be_visible()
        team = gated_team(gate)
        subscriber = board.subscriber("geo", "massgen/geo")
        run = asyncio.ensure_future(team.arun(TASK, subscribers=[subscriber]))
        card = page.get_by_role("article")
        await expect(card.get_by_role("heading", level=3)).to_have_text("geo · massgen/geo")
        for name, first in FIRST.items():  # each agent's first piece, as it streams
            await expect(page.get_by_role("region", name=f"{name}'s text")).to_have_text(first)
        await expect(card.locator(".meta .badge")).to_have_text("running")
        await expect(card.get_by_role("heading", name="Votes")).to_be_hidden()  # none yet
        await page.screenshot(path=ARTIFACTS / "dashboard-streaming.png")
        gate.set()
        result = await run
        await team.aclose()
        assert result.winner == WINNER
        await expect(card.locator(".final h4")).to_have_text("Winner: bob (100% agreement)")
        await expect(card.get_by_role("region", name="Final answer")).to_have_text(ANSWERS[WINNER])
        for name, answer in ANSWERS.items():  # <script> in cy's answer is text, not run
            await expect(page.get_by_label(f"{name}'s text")).to_have_text(answer)
        await expect(card.locator(".task")).to_have_text(TASK)
        row = page.locator("#recent tbody tr")
        await expect(row).to_have_count(1)
        await expect(row.locator("td[data-label=Winner]")).to_have_text(WINNER)
        await expect(row.locator("td[data-label=Agreement]")).to_have_text("100%")
        assert await page.locator("script").count() == 1  # the page's own; no img either
        assert await page.locator("img").count() == 0
        assert await page.evaluate(LOW_CONTRAST) == []
        await page.keyboard.press("Tab")  # the text boxes scroll, so they take focus
        focused = await page.evaluate("document.activeElement.getAttribute('aria-label')")
        assert focused == "ada's text"
        await page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)

        phone = Watched(
            await browser.new_page(
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
                color_scheme="dark",  # its contrast is checked too
            )
        )
        await phone.page.goto(url)
        await expect(phone.page.locator(".final h4")).to_have_text("Winner: bob (100% agreement)")
        wide = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        assert await phone.page.evaluate(wide) == 0, "the page scrolls sideways on a phone"
        assert await phone.page.evaluate(LOW_CONTRAST) == []
        await phone.page.screenshot(path=ARTIFACTS / "dashboard-phone.png", full_page=True)
    assert desktop.faults == [] and phone.faults == []


async def test_the_page_shows_the_workers_on_redis_as_they_come_and_go(
    browser: Any, tmp_path: Path, prefix: str
) -> None:
    from playwright.async_api import expect

    team = tmp_path / "team.yaml"
    team.write_text(TEAM + f"redis: {{url: '{SHARED_REDIS}', prefix: '{prefix}'}}\n")
    argv = [sys.executable, "-m", "massgen", "worker", str(team)]
    worker = await asyncio.to_thread(start_ready, argv, ready="hosting ", count=3)
    try:
        board = Board(redis_url=SHARED_REDIS, prefix=prefix, registry_every=0.2, runs=False)
        async with served(board) as url:
            watched = Watched(await browser.new_page(viewport={"width": 1280, "height": 700}))
            page = watched.page
            await page.goto(url)
            workers = page.get_by_role("region", name="Workers")
            await expect(workers.get_by_text(f"prefix {prefix}")).to_be_visible()
            # as `massgen dashboard` serves it: no runs there, so only the workers
            await expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_hidden()
            rows = workers.locator("tbody tr")
            await expect(rows.locator("td[data-label=Agent]")).to_have_text(["ada", "bob", "cy"])
            await expect(rows.locator("td[data-label='Dead letters']")).to_have_text(["0"] * 3)
            host = f"{socket.gethostname()}/{worker.pid}"
            await expect(rows.locator("td[data-label='Host/pid']")).to_have_text([host] * 3)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=ARTIFACTS / "dashboard-workers.png", full_page=True)
            worker.send_signal(signal.SIGTERM)  # it deregisters: the next read shows none
            await asyncio.to_thread(worker.communicate, timeout=20)
            await expect(workers.get_by_text("No live worker.")).to_be_visible()
            await expect(rows).to_have_count(0)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0 and watched.faults == []
