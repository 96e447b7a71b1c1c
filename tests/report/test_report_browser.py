"""The dashboard in a real browser (headless Chromium through Playwright): it loads from disk
with no network and no errors, every chart draws its data, the header shows the range and
freshness, and on a phone the page does not scroll sideways and the charts stack in one column.

Chromium is required: without it these tests fail (CI installs Debian's ``chromium``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from pipeline.report import build_report
from tests.report.conftest import HOURS_SINCE_SYNC

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHARTS = 6
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

CHARTS_READY = """() => {
    const divs = [...document.querySelectorAll('.plotly-graph-div')];
    return divs.length > 0 && divs.every(d => d._fullLayout && d.querySelector('svg.main-svg'));
}"""

CHART_FACTS = """() => [...document.querySelectorAll('.plotly-graph-div')].map(div => {
    const svg = div.querySelector('svg.main-svg').getBoundingClientRect();
    const card = div.closest('.card').getBoundingClientRect();
    return {
        id: div.id,
        points: (div.data || []).map(t => (t.z || t.y || t.x || []).length),
        drawn: div.querySelectorAll('.trace .point, .hm image').length,
        width: svg.width,
        height: svg.height,
        cardLeft: Math.round(card.left),
        cardRight: Math.round(card.right),
    };
})"""


@pytest.fixture(scope="module")
def report_file(tmp_path_factory, warehouse_file, report_now) -> Path:
    return build_report(
        warehouse_file, tmp_path_factory.mktemp("report") / "report.html", now=report_now
    )


@contextlib.contextmanager
def open_report(report: Path, viewport: dict):
    """A page showing ``report``, with every console error, page error and non-file request
    recorded (and any request off the disk refused)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the report's browser tests need Chromium "
            "(apt-get install chromium)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    problems: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            request_route.continue_()
        else:
            problems.append(f"network request: {url}")
            request_route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=viewport)
            context.route("**/*", route)
            page = context.new_page()
            page.on(
                "console",
                lambda message: (
                    problems.append(f"console {message.type}: {message.text}")
                    if message.type == "error"
                    else None
                ),
            )
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_function(CHARTS_READY, timeout=15_000)
            yield page, problems
        finally:
            browser.close()


def test_desktop_draws_every_chart_without_errors(report_file, tmp_path, warehouse_file):
    with open_report(report_file, DESKTOP) as (page, problems):
        charts = page.evaluate(CHART_FACTS)
        range_text = page.inner_text("#range")
        freshness = page.inner_text("#freshness")
        page.screenshot(path=str(tmp_path / "report-desktop.png"), full_page=True)
        assert problems == []

    assert len(charts) == CHARTS, [chart["id"] for chart in charts]
    for chart in charts:
        assert chart["points"], f"{chart['id']} has no traces"
        assert all(chart["points"]), f"{chart['id']} has an empty trace: {chart['points']}"
        assert chart["drawn"] > 0, f"{chart['id']} drew nothing"
        assert chart["width"] > 200 and chart["height"] > 200, chart
    # Two columns on a desktop.
    assert len({chart["cardLeft"] for chart in charts}) == 2
    import duckdb

    with duckdb.connect(str(warehouse_file), read_only=True) as con:
        first, last = con.execute(
            "SELECT min(session_date), max(session_date) FROM marts.fct_sessions"
        ).fetchone()
    assert str(first) in range_text and str(last) in range_text
    assert freshness.strip() == f"synced {HOURS_SINCE_SYNC} hours ago"
    assert (tmp_path / "report-desktop.png").stat().st_size > 50_000


def test_phone_stacks_charts_without_sideways_scroll(report_file, tmp_path):
    with open_report(report_file, PHONE) as (page, problems):
        scroll_width, inner_width = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        charts = page.evaluate(CHART_FACTS)
        page.screenshot(path=str(tmp_path / "report-phone.png"), full_page=True)
        assert problems == []

    assert scroll_width <= inner_width == PHONE["width"]
    assert len(charts) == CHARTS
    assert len({chart["cardLeft"] for chart in charts}) == 1, "charts are not in one column"
    for chart in charts:
        assert chart["cardRight"] <= PHONE["width"], chart
        assert 0 < chart["width"] <= PHONE["width"], chart
        assert chart["drawn"] > 0, f"{chart['id']} drew nothing"
    assert (tmp_path / "report-phone.png").stat().st_size > 50_000
