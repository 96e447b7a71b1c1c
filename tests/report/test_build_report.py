"""``build_report``: one self-contained HTML file (plotly.js inlined once, nothing fetched from
the network) whose header and charts carry the marts' numbers, read without writing to the
warehouse."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import duckdb
import plotly.offline
import pytest

from pipeline import report
from pipeline.report import ReportError, build_report, fmt_ago, load_report_data
from tests.report.conftest import HOURS_SINCE_SYNC


class _Resources(HTMLParser):
    """Every tag and every src/href/srcset/data/action attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action", "poster") and value:
                self.links.append(value)


@pytest.fixture(scope="module")
def page(tmp_path_factory, warehouse_file, report_now) -> str:
    output = tmp_path_factory.mktemp("report") / "report.html"
    assert build_report(warehouse_file, output, now=report_now) == output.resolve()
    return output.read_text(encoding="utf-8")


def test_page_is_self_contained(page):
    parser = _Resources()
    parser.feed(page)
    external = [link for link in parser.links if re.match(r"^\s*(https?:)?//", link, re.I)]
    assert external == []
    assert "link" not in parser.tags  # no stylesheets or fonts from anywhere
    assert "<script src" not in page.lower()
    # plotly.js itself names its CDN (for map data these charts never load); the rest may not.
    ours = page.replace(plotly.offline.get_plotlyjs(), "")
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", ours, re.I)
    assert "cdn.plot.ly" not in ours
    assert "fonts.googleapis" not in ours


def test_plotly_js_is_inlined_exactly_once(page):
    assert page.count(plotly.offline.get_plotlyjs()) == 1
    assert page.count("Plotly.newPlot(") == 6


def test_header_shows_range_freshness_and_headline_numbers(page, warehouse_file):
    with duckdb.connect(str(warehouse_file), read_only=True) as con:
        first, last, calls, missed, median = con.execute(
            """
            SELECT min(session_date), max(session_date), count(*),
                count(*) FILTER (WHERE was_missed),
                quantile_cont(duration_seconds, 0.5)
                    FILTER (WHERE was_missed IS NOT TRUE AND duration_seconds IS NOT NULL)
            FROM marts.fct_sessions WHERE channel = 'Voice'
            """
        ).fetchone()
        mart_calls, mart_missed = con.execute(
            "SELECT sum(total_calls), sum(missed_calls) FROM marts.missed_call_rate_daily"
        ).fetchone()
    assert (calls, missed) == (mart_calls, mart_missed)
    header = page[page.index("<header") : page.index("</main>")]
    assert f'<time datetime="{first}">' in header
    assert f'<time datetime="{last}">' in header
    assert f"synced {HOURS_SINCE_SYNC} hours ago" in header
    assert f">{calls:,}<" in header
    assert f">{missed:,}<" in header
    assert f">{missed / calls:.1%}<" in header
    assert f">{median / 60:.1f} min<" in header


def test_charts_account_for_every_call(warehouse_file):
    data = load_report_data(warehouse_file)
    # The histogram's last bin holds the long tail instead of dropping it.
    assert sum(calls for _, calls in data.duration_bins) == data.headline.answered
    heat = report.hourly_figure(data).data[0]
    assert [len(row) for row in heat.z] == [24] * 7
    assert list(heat.y) == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    with duckdb.connect(str(warehouse_file), read_only=True) as con:
        (hour_missed,) = con.execute(
            "SELECT sum(missed_calls) FROM marts.missed_calls_by_hour"
        ).fetchone()
        (top_endpoint_missed,) = con.execute(
            "SELECT max(m) FROM (SELECT sum(missed_calls) AS m FROM "
            "marts.endpoint_performance_daily GROUP BY endpoint_id)"
        ).fetchone()
    assert sum(map(sum, heat.z)) == hour_missed
    endpoints = report.endpoints_figure(data).data[0]
    assert endpoints.x[0] == top_endpoint_missed
    assert list(endpoints.x) == sorted(endpoints.x, reverse=True)
    assert len(set(endpoints.y)) == len(endpoints.y)  # shared names never merge two bars
    durations = report.durations_figure(data)
    lines = sorted(shape.x0 for shape in durations.layout.shapes)
    assert lines == [data.headline.median_answered / 60, data.headline.p90_answered / 60]


def test_opens_the_warehouse_read_only(tmp_path, warehouse_file, report_now):
    """Another process holding a read-only connection blocks every writer, not readers."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"con = duckdb.connect({str(warehouse_file)!r}, read_only=True)\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        before = warehouse_file.stat().st_mtime_ns
        build_report(warehouse_file, tmp_path / "report.html", now=report_now)
        assert warehouse_file.stat().st_mtime_ns == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_warehouse_being_written_gives_a_clear_error(tmp_path):
    busy = tmp_path / "warehouse.duckdb"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys\n"
            f"con = duckdb.connect({str(busy)!r})\n"
            "con.execute('CREATE SCHEMA marts')\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        with pytest.raises(ReportError, match=r"read-only .*is a sync writing to it"):
            build_report(busy, tmp_path / "report.html")
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)
    assert not (tmp_path / "report.html").exists()


def test_freshness_wording():
    synced = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert fmt_ago(synced, synced + timedelta(seconds=20)) == "synced just now"
    assert fmt_ago(synced, synced + timedelta(minutes=1)) == "synced 1 minute ago"
    assert fmt_ago(synced, synced + timedelta(minutes=59)) == "synced 59 minutes ago"
    assert fmt_ago(synced, synced + timedelta(hours=1)) == "synced 1 hour ago"
    assert fmt_ago(synced, synced + timedelta(hours=47, minutes=59)) == "synced 47 hours ago"
    assert fmt_ago(synced, synced + timedelta(days=3, hours=5)) == "synced 3 days ago"
    assert fmt_ago(None, synced) == "never synced"


def test_same_names_get_distinct_labels():
    items = [("a1", "Blue Ridge Clinic"), ("b2", "Blue Ridge Clinic"), ("c3", None)]
    assert report._unique_labels(items) == [
        "Blue Ridge Clinic",
        "Blue Ridge Clinic (2)",
        "id …c3",
    ]
    assert report._unique_labels([("x", "A very long customer name indeed")], 12) == [
        "A very long…"
    ]
