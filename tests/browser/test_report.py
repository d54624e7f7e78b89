"""The bench's report.html in a real browser: it loads offline with no console error, the
self-check banner shows, every chart is drawn, and the headline has a row per design.

Every request the page makes is recorded and refused unless it is the file itself or a data:
URL, so a report that reached for the network would fail here, not only look wrong offline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, ConsoleMessage, Page, Route

from loadtests.measure import analysis, report
from loadtests.measure.charts import CHARTS
from loadtests.measure.schema import Results, load

pytestmark = pytest.mark.asyncio(loop_scope="module")

FIXTURE = Path(__file__).parents[1] / "data" / "measure_analysed.json"


@pytest.fixture(scope="module")
def results() -> Results:
    return load(FIXTURE)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory, results: Results) -> Path:
    out = tmp_path_factory.mktemp("report")
    report.write(results, out)
    return out / "report.html"


class Opened:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requested: list[str] = []


@pytest_asyncio.fixture(loop_scope="module")
async def opened(context: BrowserContext, report_html: Path) -> AsyncIterator[Opened]:
    page = await context.new_page()
    seen = Opened(page)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.errors.append(message.text)

    async def route(request: Route) -> None:
        url = request.request.url
        seen.requested.append(url)
        if url == report_html.as_uri() or url.startswith("data:"):
            await request.continue_()
        else:
            await request.abort()

    page.on("console", console)
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    await page.route("**/*", route)
    await page.goto(report_html.as_uri(), wait_until="load")
    try:
        yield seen
    finally:
        await page.close()


async def test_the_report_loads_offline_without_console_errors(
    opened: Opened, report_html: Path
) -> None:
    assert await opened.page.title() == report.TITLE
    assert opened.errors == []
    outside = [
        u for u in opened.requested if u != report_html.as_uri() and not u.startswith("data:")
    ]
    assert outside == []


async def test_the_banner_is_visible_and_names_the_failed_checks(
    opened: Opened, results: Results
) -> None:
    banner = opened.page.locator("#self-checks")
    assert await banner.is_visible()
    failed = sorted(
        c["name"] for c in results.get("checks", []) if analysis.judged(c) and not c["ok"]
    )
    assert failed
    names = await banner.locator(".check").all_inner_texts()
    assert sorted(names) == failed
    background = await banner.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(198, 40, 40)"


async def test_every_chart_is_drawn(opened: Opened) -> None:
    images = opened.page.locator("img")
    assert await images.count() == len(CHARTS)
    widths = await images.evaluate_all("all => all.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == len(CHARTS) and all(w > 0 for w in widths), widths


async def test_the_headline_has_a_row_per_design(opened: Opened, results: Results) -> None:
    rows = opened.page.locator("#headline tbody tr")
    assert await rows.count() == len(results["designs"]) == 7
    first_cells = await opened.page.locator("#headline tbody tr td:first-child").all_inner_texts()
    assert first_cells[-1] == "control"
