"""``evo-sync report``: one self-contained HTML dashboard built from the dbt marts.

The page opens from disk with no network: plotly.js is inlined once, each chart is a plotly
figure, and the CSS uses the system font stack. The warehouse is opened read-only; while a
sync holds it for writing, the report stops with a clear message instead of waiting.
"""

from __future__ import annotations

import html
import math
import os
import sys
from collections import namedtuple
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pipeline import config

REPORT_FILENAME = "report.html"
HINT = "run `make demo` or `evo-sync backfill` first"
REQUIRED_TABLES = (
    ("raw", "synced_days"),
    ("marts", "fct_sessions"),
    ("marts", "missed_call_rate_daily"),
    ("marts", "missed_calls_by_hour"),
    ("marts", "endpoint_performance_daily"),
    ("marts", "customer_calls_daily"),
)
TOP_ENDPOINTS = 10
TOP_CUSTOMERS_CHART = 12
TOP_CUSTOMERS_TABLE = 25
MAX_DURATION_BINS = 50
NICE_BIN_SECONDS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

FONT_STACK = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif'
)
INK, MUTED, GRID, AXIS = "#0f172a", "#64748b", "#e2e8f0", "#cbd5e1"
BLUE, TEAL, RED, AMBER = "#2563eb", "#0d9488", "#dc2626", "#f59e0b"
DIRECTION_COLOURS = {"Incoming": BLUE, "Outgoing": TEAL}
OUTCOME_COLOURS = {
    "Answered": BLUE,
    "Completed": BLUE,
    "NoAnswer": "#94a3b8",
    "Busy": "#64748b",
    "Failed": "#334155",
    "Voicemail": AMBER,
    "Abandoned": "#f97316",
    "Missed": RED,
}
FALLBACK_COLOURS = ("#7c3aed", "#db2777", "#0891b2", "#65a30d", "#a16207", "#4b5563")
HEAT_SCALE = [[0.0, "#fff7ed"], [0.35, "#fdba74"], [0.7, "#f97316"], [1.0, "#b91c1c"]]
PLOT_CONFIG = {"responsive": True, "displaylogo": False, "modeBarButtonsToRemove": ["lasso2d"]}


class ReportError(Exception):
    """The report cannot be built (no warehouse, no marts, or the warehouse is busy)."""


# --------------------------------------------------------------------------- queries

HEADLINE_SQL = """
SELECT
    min(session_date),
    max(session_date),
    count(*),
    count(*) FILTER (WHERE direction = 'Incoming'),
    count(*) FILTER (WHERE direction = 'Outgoing'),
    count(*) FILTER (WHERE was_missed),
    count(*) FILTER (WHERE was_missed) / nullif(count(*), 0),
    count(*) FILTER (WHERE was_missed) / nullif(count(*) FILTER (WHERE direction = 'Incoming'), 0),
    quantile_cont(duration_seconds, 0.5)
        FILTER (WHERE was_missed IS NOT TRUE AND duration_seconds IS NOT NULL),
    quantile_cont(duration_seconds, 0.9)
        FILTER (WHERE was_missed IS NOT TRUE AND duration_seconds IS NOT NULL),
    quantile_cont(duration_seconds, 0.99)
        FILTER (WHERE was_missed IS NOT TRUE AND duration_seconds IS NOT NULL),
    count(duration_seconds) FILTER (WHERE was_missed IS NOT TRUE)
FROM marts.fct_sessions
WHERE channel = 'Voice'
"""

FRESHNESS_SQL = """
SELECT
    max(synced_at) AT TIME ZONE 'UTC',
    count(*),
    count(*) FILTER (WHERE complete IS NOT TRUE)
FROM raw.synced_days
"""

MISSED_RATE_SQL = """
SELECT
    session_date,
    direction,
    sum(total_calls) AS total_calls,
    sum(missed_calls) AS missed_calls,
    sum(missed_calls) / nullif(sum(total_calls), 0) AS missed_call_rate
FROM marts.missed_call_rate_daily
GROUP BY session_date, direction
ORDER BY direction, session_date
"""

OUTCOMES_SQL = """
SELECT
    session_date,
    coalesce(outcome, 'Unknown') AS outcome,
    count(*) AS calls,
    bool_or(was_missed IS TRUE) AS any_missed
FROM marts.fct_sessions
WHERE channel = 'Voice'
GROUP BY ALL
ORDER BY session_date, outcome
"""

DURATION_BINS_SQL = """
SELECT
    least(floor(duration_seconds / $width), $last_bin)::INTEGER AS bin,
    count(*) AS calls
FROM marts.fct_sessions
WHERE channel = 'Voice' AND was_missed IS NOT TRUE AND duration_seconds IS NOT NULL
GROUP BY bin
ORDER BY bin
"""

HOURLY_SQL = """
SELECT
    day_of_week,
    hour_of_day,
    sum(total_calls) AS total_calls,
    sum(missed_calls) AS missed_calls
FROM marts.missed_calls_by_hour
GROUP BY day_of_week, hour_of_day
"""

ENDPOINTS_SQL = """
SELECT
    endpoint_id,
    arg_max(endpoint_name, session_date) AS endpoint_name,
    sum(incoming_calls) AS incoming_calls,
    sum(missed_calls) AS missed_calls,
    sum(missed_calls) / nullif(sum(incoming_calls), 0) AS missed_call_rate
FROM marts.endpoint_performance_daily
GROUP BY endpoint_id
HAVING sum(missed_calls) > 0
ORDER BY missed_calls DESC, missed_call_rate DESC NULLS LAST, endpoint_id
LIMIT $limit
"""

# The daily medians cannot be combined into a median over the range, so the median comes from
# fct_sessions with the mart's own definition (answered incoming Voice calls).
CUSTOMERS_SQL = """
WITH totals AS (
    SELECT
        top_customer_id,
        arg_max(top_customer_name, session_date) AS top_customer_name,
        sum(total_calls) AS total_calls,
        sum(incoming_calls) AS incoming_calls,
        sum(outgoing_calls) AS outgoing_calls,
        sum(missed_calls) AS missed_calls,
        sum(answered_calls) AS answered_calls,
        sum(missed_calls) / nullif(sum(incoming_calls), 0) AS missed_call_rate
    FROM marts.customer_calls_daily
    GROUP BY top_customer_id
),
medians AS (
    SELECT top_customer_id, quantile_cont(duration_seconds, 0.5) AS median_duration_seconds
    FROM marts.fct_sessions
    WHERE
        channel = 'Voice'
        AND direction = 'Incoming'
        AND top_customer_id IS NOT NULL
        AND was_missed IS NOT TRUE
        AND duration_seconds IS NOT NULL
    GROUP BY top_customer_id
)
SELECT totals.*, medians.median_duration_seconds
FROM totals
LEFT JOIN medians USING (top_customer_id)
ORDER BY total_calls DESC, top_customer_id
"""


def _records(con: Any, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    """The rows of ``sql`` as named tuples (fields named after the columns)."""
    cursor = con.execute(sql, params or {})
    record = namedtuple("Record", [column[0] for column in cursor.description])
    return [record(*row) for row in cursor.fetchall()]


@dataclass(frozen=True)
class Headline:
    first_day: date
    last_day: date
    calls: int
    incoming: int
    outgoing: int
    missed: int
    missed_rate: float | None
    missed_rate_incoming: float | None
    median_answered: float | None
    p90_answered: float | None
    p99_answered: float | None
    answered: int
    synced_at: datetime | None
    synced_days: int
    incomplete_days: int


@dataclass(frozen=True)
class ReportData:
    headline: Headline
    missed_rate: list[tuple]
    outcomes: list[tuple]
    duration_bins: list[tuple]
    bin_seconds: int
    hourly: list[tuple]
    endpoints: list[tuple]
    customers: list[tuple]


def load_report_data(warehouse_path: Path) -> ReportData:
    """Read everything the report shows from the warehouse, opened read-only."""
    import duckdb

    if not Path(warehouse_path).is_file():
        raise ReportError(f"no warehouse at {warehouse_path}; {HINT}")
    try:
        con = duckdb.connect(str(warehouse_path), read_only=True)
    except duckdb.Error as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ReportError(
            f"cannot open {warehouse_path} read-only (is a sync writing to it?): {first_line}"
        ) from None
    with con:
        present = set(
            con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        )
        missing = [
            f"{schema}.{name}" for schema, name in REQUIRED_TABLES if (schema, name) not in present
        ]
        if missing:
            raise ReportError(f"the warehouse has no {', '.join(missing)} yet; {HINT}")
        row = con.execute(HEADLINE_SQL).fetchone()
        if not row or not row[2]:
            raise ReportError(f"the marts hold no Voice calls yet; {HINT}")
        synced_at, synced_days, incomplete = con.execute(FRESHNESS_SQL).fetchone()
        headline = Headline(
            *row,
            synced_at=synced_at.replace(tzinfo=UTC) if synced_at else None,
            synced_days=synced_days,
            incomplete_days=incomplete,
        )
        bin_seconds, last_bin = _duration_bins(headline.p99_answered)
        return ReportData(
            headline=headline,
            missed_rate=_records(con, MISSED_RATE_SQL),
            outcomes=_records(con, OUTCOMES_SQL),
            duration_bins=_records(
                con, DURATION_BINS_SQL, {"width": bin_seconds, "last_bin": last_bin}
            ),
            bin_seconds=bin_seconds,
            hourly=_records(con, HOURLY_SQL),
            endpoints=_records(con, ENDPOINTS_SQL, {"limit": TOP_ENDPOINTS}),
            customers=_records(con, CUSTOMERS_SQL),
        )


def _duration_bins(p99: float | None) -> tuple[int, int]:
    """A round bin width and the last bin index: bins cover 0..p99, longer calls share the last
    bin, so one very long call does not squash the whole histogram."""
    upper = max(p99 or 0.0, 60.0)
    width = next(
        (w for w in NICE_BIN_SECONDS if upper / w <= MAX_DURATION_BINS), NICE_BIN_SECONDS[-1]
    )
    return width, max(1, math.ceil(upper / width))


# --------------------------------------------------------------------------- formatting


def fmt_int(value: int | None) -> str:
    return "–" if value is None else f"{int(value):,}"


def fmt_pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def fmt_minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f} min"


def fmt_ago(then: datetime | None, now: datetime) -> str:
    """``synced 3 hours ago`` (minutes under an hour, days from two days on)."""
    if then is None:
        return "never synced"
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return "synced just now"
    for unit, size, limit in (("minute", 60, 3600), ("hour", 3600, 172800), ("day", 86400, None)):
        if limit is None or seconds < limit:
            count = int(seconds // size)
            return f"synced {count} {unit}{'' if count == 1 else 's'} ago"
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- figures


def _base_layout(**overrides: Any) -> dict[str, Any]:
    axis = {
        "gridcolor": GRID,
        "linecolor": AXIS,
        "zerolinecolor": AXIS,
        "tickfont": {"color": MUTED, "size": 12},
        "title": {"font": {"color": MUTED, "size": 12}},
        "automargin": True,
    }
    layout: dict[str, Any] = {
        "template": "none",
        "font": {"family": FONT_STACK, "size": 13, "color": INK},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "margin": {"l": 8, "r": 12, "t": 28, "b": 8},
        "hoverlabel": {"font": {"family": FONT_STACK}},
        "hovermode": "closest",
        "legend": {
            "orientation": "h",
            "yanchor": "bottom",
            "y": 1.02,
            "xanchor": "left",
            "x": 0,
            "font": {"size": 12},
        },
        "xaxis": dict(axis),
        "yaxis": dict(axis),
    }
    for key, value in overrides.items():
        if key in ("xaxis", "yaxis"):
            title = {**axis["title"], **value.get("title", {})}
            layout[key] = {**layout[key], **value, "title": title}
        else:
            layout[key] = value
    return layout


def _date_axis(first: date, last: date, title: str = "Day") -> dict[str, Any]:
    days = (last - first).days + 1
    return {
        "type": "date",
        "title": {"text": title},
        "tickformat": "%d %b",
        "dtick": 86_400_000 * max(1, math.ceil(days / 6)),
        "hoverformat": "%a %d %b %Y",
    }


def missed_rate_figure(data: ReportData):
    import plotly.graph_objects as go

    fig = go.Figure()
    directions = sorted({row.direction for row in data.missed_rate})
    for index, direction in enumerate(directions):
        rows = [row for row in data.missed_rate if row.direction == direction]
        fig.add_trace(
            go.Scatter(
                x=[row.session_date for row in rows],
                y=[row.missed_call_rate for row in rows],
                name=direction,
                mode="lines+markers",
                line={"color": _colour(direction, DIRECTION_COLOURS, index), "width": 2.5},
                marker={"size": 6},
                hovertext=[
                    f"{direction}: {fmt_pct(row.missed_call_rate)} "
                    f"({fmt_int(row.missed_calls)} of {fmt_int(row.total_calls)} calls)"
                    for row in rows
                ],
                hovertemplate="%{x}<br>%{hovertext}<extra></extra>",
                connectgaps=False,
            )
        )
    h = data.headline
    fig.update_layout(
        _base_layout(
            xaxis=_date_axis(h.first_day, h.last_day),
            yaxis={
                "title": {"text": "Missed-call rate"},
                "tickformat": ".0%",
                "rangemode": "tozero",
            },
            hovermode="x unified",
        )
    )
    return fig


def outcomes_figure(data: ReportData):
    import plotly.graph_objects as go

    missed_outcomes = set(_missed_outcomes(data))
    totals: dict[str, int] = {}
    for row in data.outcomes:
        totals[row.outcome] = totals.get(row.outcome, 0) + row.calls
    # Answered at the bottom, the missed outcomes stacked on top, the rest in between.
    order = sorted(
        totals, key=lambda o: (o in missed_outcomes, o not in ("Answered", "Completed"), -totals[o])
    )
    fig = go.Figure()
    for index, outcome in enumerate(order):
        rows = [row for row in data.outcomes if row.outcome == outcome]
        label = outcome
        fig.add_trace(
            go.Bar(
                x=[row.session_date for row in rows],
                y=[row.calls for row in rows],
                name=label,
                marker={"color": _colour(outcome, OUTCOME_COLOURS, index), "line": {"width": 0}},
                hovertemplate=f"{html.escape(label)}: %{{y:,}} calls<extra></extra>",
            )
        )
    h = data.headline
    fig.update_layout(
        _base_layout(
            barmode="stack",
            bargap=0.25,
            xaxis=_date_axis(h.first_day, h.last_day),
            yaxis={"title": {"text": "Voice calls"}, "tickformat": ",d"},
            hovermode="x unified",
            legend={**_base_layout()["legend"], "traceorder": "normal"},
        )
    )
    return fig


def durations_figure(data: ReportData):
    import plotly.graph_objects as go

    width = data.bin_seconds
    last_bin = max((row.bin for row in data.duration_bins), default=0)
    labels = []
    for bin_index, calls in data.duration_bins:
        start, end = bin_index * width / 60, (bin_index + 1) * width / 60
        span = f"{start:g} min or longer" if bin_index == last_bin else f"{start:g}–{end:g} min"
        labels.append(f"{span}: {fmt_int(calls)} calls")
    fig = go.Figure(
        go.Bar(
            x=[(row.bin + 0.5) * width / 60 for row in data.duration_bins],
            y=[row.calls for row in data.duration_bins],
            width=[width / 60] * len(data.duration_bins),
            name="Answered calls",
            marker={"color": BLUE, "opacity": 0.85, "line": {"color": "#ffffff", "width": 1}},
            hovertext=labels,
            hovertemplate="%{hovertext}<extra></extra>",
            showlegend=False,
        )
    )
    h = data.headline
    for value, label, height, colour in (
        (h.median_answered, "median", 1.0, INK),
        (h.p90_answered, "p90", 0.88, RED),
    ):
        if value is None:
            continue
        # Both labels sit right of their lines, the p90's lower, so they never meet.
        fig.add_shape(
            type="line",
            x0=value / 60,
            x1=value / 60,
            y0=0,
            y1=1,
            yref="paper",
            line={"color": colour, "width": 2, "dash": "dash"},
        )
        fig.add_annotation(
            x=value / 60,
            y=height,
            yref="paper",
            text=f"{label} {fmt_minutes(value)}",
            showarrow=False,
            xanchor="left",
            xshift=4,
            yanchor="top",
            font={"color": colour, "size": 12},
            bgcolor="rgba(255,255,255,0.85)",
        )
    fig.update_layout(
        _base_layout(
            bargap=0,
            xaxis={"title": {"text": "Duration (minutes)"}, "rangemode": "tozero"},
            yaxis={"title": {"text": "Answered calls"}, "tickformat": ",d"},
        )
    )
    return fig


def hourly_figure(data: ReportData):
    import plotly.graph_objects as go

    cells = {(row.day_of_week, row.hour_of_day): row for row in data.hourly}
    hours = list(range(24))
    z, text = [], []
    for day_number, day_name in enumerate(DAY_NAMES, start=1):
        z_row, text_row = [], []
        for hour in hours:
            cell = cells.get((day_number, hour))
            total, missed = (cell.total_calls, cell.missed_calls) if cell else (0, 0)
            rate = missed / total if total else None
            z_row.append(missed)
            text_row.append(
                f"{day_name} {hour:02d}:00–{hour:02d}:59<br>{fmt_int(missed)} missed of "
                f"{fmt_int(total)} incoming ({fmt_pct(rate)})"
            )
        z.append(z_row)
        text.append(text_row)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"{hour:02d}" for hour in hours],
            y=list(DAY_NAMES),
            text=text,
            hovertemplate="%{text}<extra></extra>",
            colorscale=HEAT_SCALE,
            xgap=2,
            ygap=2,
            colorbar={
                "title": {"text": "Missed", "side": "top", "font": {"size": 12}},
                "thickness": 10,
                "outlinewidth": 0,
                "tickfont": {"size": 11, "color": MUTED},
            },
        )
    )
    fig.update_layout(
        _base_layout(
            xaxis={"title": {"text": "Hour of day"}, "dtick": 3, "showgrid": False},
            yaxis={"autorange": "reversed", "showgrid": False},
        )
    )
    return fig


def endpoints_figure(data: ReportData):
    import plotly.graph_objects as go

    rows = data.endpoints
    labels = _unique_labels([(row.endpoint_id, row.endpoint_name) for row in rows])
    fig = go.Figure(
        go.Bar(
            x=[row.missed_calls for row in rows],
            y=labels,
            orientation="h",
            marker={"color": RED, "opacity": 0.85},
            text=[fmt_pct(row.missed_call_rate) for row in rows],
            textposition="outside",
            cliponaxis=False,
            textfont={"color": MUTED, "size": 11},
            hovertext=[
                f"<b>{_escape(row.endpoint_name or row.endpoint_id)}</b> "
                f"({_escape(row.endpoint_id)})<br>{fmt_int(row.missed_calls)} missed of "
                f"{fmt_int(row.incoming_calls)} incoming ({fmt_pct(row.missed_call_rate)})"
                for row in rows
            ],
            hovertemplate="%{hovertext}<extra></extra>",
            name="Missed calls",
        )
    )
    fig.update_layout(
        _base_layout(
            height=max(300, 28 * len(rows) + 90),
            xaxis={"title": {"text": "Missed incoming calls"}, "tickformat": ",d", "nticks": 4},
            yaxis={"autorange": "reversed", "showgrid": False, "type": "category"},
            margin={"l": 8, "r": 40, "t": 12, "b": 8},
            bargap=0.3,
        )
    )
    return fig


def customers_figure(data: ReportData):
    import plotly.graph_objects as go

    rows = data.customers[:TOP_CUSTOMERS_CHART]
    labels = _unique_labels([(row.top_customer_id, row.top_customer_name) for row in rows])
    series = [
        ("Answered", BLUE, [row.answered_calls for row in rows]),
        ("Missed", RED, [row.missed_calls for row in rows]),
        (
            "Not completed",
            "#94a3b8",
            [row.incoming_calls - row.missed_calls - row.answered_calls for row in rows],
        ),
        ("Outgoing", TEAL, [row.outgoing_calls for row in rows]),
    ]
    fig = go.Figure()
    for name, colour, values in series:
        if not any(values):
            continue
        fig.add_trace(
            go.Bar(
                x=values,
                y=labels,
                orientation="h",
                name=name,
                marker={"color": colour, "line": {"width": 0}},
                hovertext=[
                    f"<b>{_escape(row.top_customer_name or row.top_customer_id)}</b> "
                    f"({_escape(row.top_customer_id)})<br>"
                    f"{name}: {fmt_int(value)} of {fmt_int(row.total_calls)} calls<br>"
                    f"missed-call rate {fmt_pct(row.missed_call_rate)} · "
                    f"median answered {fmt_minutes(row.median_duration_seconds)}"
                    for value, row in zip(values, rows, strict=True)
                ],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    fig.update_layout(
        _base_layout(
            barmode="stack",
            height=max(300, 28 * len(rows) + 110),
            xaxis={"title": {"text": "Voice calls"}, "tickformat": ",d", "nticks": 4},
            yaxis={"autorange": "reversed", "showgrid": False, "type": "category"},
            legend={**_base_layout()["legend"], "traceorder": "normal"},
            bargap=0.3,
        )
    )
    return fig


def _unique_labels(items: list[tuple[str, str | None]], max_chars: int | None = 24) -> list[str]:
    """Category labels: names shortened to ``max_chars``; a label already used (two customers
    of the same name) gets " (2)", " (3)", so two bars never merge into one."""
    labels: list[str] = []
    seen: dict[str, int] = {}
    for identifier, name in items:
        base = name or f"id …{identifier[-8:]}"
        if max_chars and len(base) > max_chars:
            base = base[: max_chars - 1].rstrip() + "…"
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base} ({seen[base]})")
    return labels


def _escape(text: str) -> str:
    """Plotly renders a little HTML in hover text; names are text."""
    return html.escape(text, quote=False)


def _missed_outcomes(data: ReportData) -> list[str]:
    return sorted({row.outcome for row in data.outcomes if row.any_missed})


def _colour(key: str, palette: dict[str, str], index: int) -> str:
    return palette.get(key, FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])


# --------------------------------------------------------------------------- page

CSS = """
:root {
  --bg: #f4f6fb; --card: #ffffff; --ink: #0f172a; --muted: #64748b; --line: #e2e8f0;
  --accent: #4f46e5; --red: #dc2626; --blue: #2563eb;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 FONTS; font-variant-numeric: tabular-nums;
}
.wrap { max-width: 1280px; margin: 0 auto; padding: 28px 20px 40px; }
header.top { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: flex-end;
  justify-content: space-between; margin-bottom: 20px; }
header.top h1 { margin: 0; font-size: 26px; line-height: 1.2; letter-spacing: -0.01em; }
.eyebrow { margin: 0 0 4px; color: var(--accent); font-weight: 600; font-size: 13px;
  text-transform: uppercase; letter-spacing: 0.06em; }
.meta { margin: 6px 0 0; color: var(--muted); }
.meta strong { color: var(--ink); font-weight: 600; }
.pill { display: inline-flex; align-items: center; gap: 8px; padding: 6px 12px;
  border-radius: 999px; background: #ecfdf5; color: #065f46; font-weight: 600; font-size: 14px;
  border: 1px solid #a7f3d0; }
.pill::before { content: ""; width: 8px; height: 8px; border-radius: 50%; background: #10b981; }
.pill.stale { background: #fffbeb; color: #92400e; border-color: #fde68a; }
.pill.stale::before { background: #f59e0b; }
.kpis { display: grid; gap: 16px; grid-template-columns: repeat(4, minmax(0, 1fr));
  margin-bottom: 16px; }
.kpi { background: var(--card); border: 1px solid var(--line); border-radius: 14px;
  padding: 16px 18px; box-shadow: 0 1px 2px rgba(15, 23, 42, 0.04); min-width: 0; }
.kpi h2 { margin: 0; font-size: 13px; font-weight: 600; color: var(--muted); }
.kpi .value { display: block; margin-top: 4px; font-size: 30px; font-weight: 700;
  line-height: 1.15; letter-spacing: -0.02em; overflow-wrap: anywhere; }
.kpi .value.red { color: var(--red); }
.kpi .note { display: block; margin-top: 4px; color: var(--muted); font-size: 13px; }
.grid { display: grid; gap: 16px; grid-template-columns: repeat(2, minmax(0, 1fr)); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 14px;
  padding: 18px 18px 10px; box-shadow: 0 1px 2px rgba(15, 23, 42, 0.04); min-width: 0; }
.card.wide { grid-column: 1 / -1; }
.card h2 { margin: 0; font-size: 17px; line-height: 1.3; }
.card .sub { margin: 2px 0 8px; color: var(--muted); font-size: 13px; }
.chart { width: 100%; height: 340px; }
.table-wrap { overflow-x: auto; margin: 4px 0 8px; }
table { width: 100%; border-collapse: collapse; font-size: 14px; }
th, td { padding: 8px 10px; text-align: right; border-bottom: 1px solid var(--line);
  white-space: nowrap; }
th:first-child, td:first-child { text-align: left; white-space: normal; }
thead th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase;
  letter-spacing: 0.04em; }
tbody tr:hover { background: #f8fafc; }
.rate { display: inline-block; min-width: 52px; }
.bar { display: inline-block; height: 6px; border-radius: 3px; background: var(--red);
  vertical-align: middle; margin-left: 6px; opacity: 0.8; }
footer { margin-top: 24px; color: var(--muted); font-size: 13px; }
@media (max-width: 960px) {
  .kpis { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .grid { grid-template-columns: minmax(0, 1fr); }
}
@media (max-width: 520px) {
  .wrap { padding: 18px 12px 32px; }
  header.top h1 { font-size: 22px; }
  .kpis { gap: 10px; }
  .kpi { padding: 12px 14px; }
  .kpi .value { font-size: 24px; }
  .chart { height: 300px; }
  .card { padding: 14px 12px 6px; }
  th, td { padding: 7px 5px; font-size: 13px; }
  thead th { letter-spacing: 0; }
  .opt { display: none; }
  .bar { display: none; }
}
""".replace("FONTS", FONT_STACK)


def render_html(data: ReportData, now: datetime) -> str:
    """The whole page: header, headline numbers, six charts and the customers table."""
    import plotly.offline

    h = data.headline
    stale = h.synced_at is None or (now - h.synced_at).total_seconds() > 26 * 3600
    freshness = fmt_ago(h.synced_at, now)
    synced_iso = h.synced_at.isoformat(timespec="seconds") if h.synced_at else ""
    days = (h.last_day - h.first_day).days + 1
    incomplete = f" · <strong>{h.incomplete_days}</strong> incomplete" if h.incomplete_days else ""
    kpis = [
        ("Voice calls", fmt_int(h.calls), f"{fmt_int(h.incoming)} in · {fmt_int(h.outgoing)} out"),
        ("Missed calls", fmt_int(h.missed), f"{fmt_pct(h.missed_rate_incoming)} of incoming"),
        ("Missed-call rate", fmt_pct(h.missed_rate), "missed ÷ all Voice calls"),
        ("Median answered", fmt_minutes(h.median_answered), f"p90 {fmt_minutes(h.p90_answered)}"),
    ]
    kpi_html = "\n".join(
        f'<section class="kpi" aria-labelledby="kpi-{index}"><h2 id="kpi-{index}">{title}</h2>'
        f'<span class="value{" red" if "issed" in title else ""}">{value}</span>'
        f'<span class="note">{note}</span></section>'
        for index, (title, value, note) in enumerate(kpis)
    )
    cards = [
        (
            "missed-rate",
            "Daily missed-call rate by direction",
            "Missed ÷ all Voice calls of the day, all accounts.",
            missed_rate_figure(data),
        ),
        (
            "outcomes",
            "Calls per day by outcome",
            f"Voice calls, both directions; {_join(_missed_outcomes(data))} are missed calls "
            "(stacked on top).",
            outcomes_figure(data),
        ),
        (
            "durations",
            "How long answered calls last",
            f"{fmt_int(h.answered)} answered Voice calls in {_bin_text(data.bin_seconds)} bins; "
            f"calls of {_last_bin_minutes(data):g} min or longer share the last bar.",
            durations_figure(data),
        ),
        (
            "hourly",
            "When calls are missed",
            "Missed incoming calls by weekday and hour, all history, all accounts.",
            hourly_figure(data),
        ),
        (
            "endpoints",
            "Endpoints that miss the most calls",
            f"Top {len(data.endpoints)} numbers and agents by missed incoming calls; "
            "labels show their missed-call rate.",
            endpoints_figure(data),
        ),
        (
            "customers",
            "Calls by top-level customer",
            f"Top {min(TOP_CUSTOMERS_CHART, len(data.customers))} of {len(data.customers)} "
            "customers by Voice calls (resellers roll up their customers).",
            customers_figure(data),
        ),
    ]
    card_html = "\n".join(_chart_card(*card) for card in cards)
    timezone = html.escape(config.timezone_name())
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="evo-sync report">
<title>Evo Voice calls · {h.first_day} – {h.last_day}</title>
<style>{CSS}</style>
<script>{plotly.offline.get_plotlyjs()}</script>
</head>
<body>
<div class="wrap">
<header class="top">
  <div>
    <p class="eyebrow">Evo Voice call analytics</p>
    <h1>Calls dashboard</h1>
    <p class="meta" id="range"><time datetime="{h.first_day}">{h.first_day}</time> –
      <time datetime="{h.last_day}">{h.last_day}</time> · <strong>{days}</strong>
      day{"" if days == 1 else "s"} · <strong>{h.synced_days}</strong> synced{incomplete}</p>
  </div>
  <p class="pill{" stale" if stale else ""}" id="freshness">
    <time datetime="{synced_iso}" title="newest sync {synced_iso}">{freshness}</time></p>
</header>
<main>
<div class="kpis">
{kpi_html}
</div>
<div class="grid">
{card_html}
{_customers_table(data)}
</div>
</main>
<footer>
  Generated {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC by <code>evo-sync report</code> from the
  dbt marts. Days and hours are local to <code>EVO_VOICE_TIMEZONE</code> ({timezone}).
  A missed call is one with <code>was_missed</code>; an answered call is a completed Voice call
  that was not missed (docs/metrics.md has every definition).
</footer>
</div>
</body>
</html>
"""


def _join(words: list[str]) -> str:
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words) or "none"


def _bin_text(seconds: int) -> str:
    return f"{seconds}-second" if seconds < 60 else f"{seconds // 60}-minute"


def _last_bin_minutes(data: ReportData) -> float:
    last_bin = max((row.bin for row in data.duration_bins), default=0)
    return last_bin * data.bin_seconds / 60


def _chart_card(key: str, title: str, subtitle: str, fig: Any) -> str:
    chart = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"chart-{key}",
        config=PLOT_CONFIG,
        default_width="100%",
        default_height="100%",
    )
    height = fig.layout.height
    style = f' style="height:{height}px"' if height else ""
    return (
        f'<section class="card" aria-labelledby="title-{key}">'
        f'<h2 id="title-{key}">{html.escape(title)}</h2>'
        f'<p class="sub">{html.escape(subtitle)}</p>'
        f'<div class="chart"{style} role="figure" aria-label="{html.escape(title)}">'
        f"{chart}</div></section>"
    )


def _customers_table(data: ReportData) -> str:
    rows = data.customers[:TOP_CUSTOMERS_TABLE]
    labels = _unique_labels(
        [(row.top_customer_id, row.top_customer_name) for row in rows], max_chars=None
    )
    top_rate = max((row.missed_call_rate or 0 for row in rows), default=0) or 1
    body = "\n".join(
        "<tr>"
        f"<td>{html.escape(label)}</td>"
        f"<td>{fmt_int(row.total_calls)}</td>"
        f'<td class="opt">{fmt_int(row.incoming_calls)}</td>'
        f"<td>{fmt_int(row.missed_calls)}</td>"
        f'<td><span class="rate">{fmt_pct(row.missed_call_rate)}</span><span class="bar" '
        f'style="width:{40 * (row.missed_call_rate or 0) / top_rate:.0f}px"></span></td>'
        f"<td>{fmt_minutes(row.median_duration_seconds)}</td>"
        "</tr>"
        for label, row in zip(labels, rows, strict=True)
    )
    shown = (
        f"top {len(rows)} of {len(data.customers)}"
        if len(rows) < len(data.customers)
        else f"all {len(rows)}"
    )
    return f"""<section class="card wide" aria-labelledby="title-customer-table">
<h2 id="title-customer-table">Top-level customers</h2>
<p class="sub">Voice calls over the whole range, {shown} customers. Missed-call rate = missed
÷ incoming calls; median of answered incoming calls.</p>
<div class="table-wrap"><table>
<thead><tr><th scope="col">Customer</th><th scope="col">Calls</th>
<th scope="col" class="opt">Incoming</th><th scope="col">Missed</th>
<th scope="col"><span class="opt">Missed </span>rate</th>
<th scope="col">Median</th></tr></thead>
<tbody>
{body}
</tbody>
</table></div>
</section>"""


# --------------------------------------------------------------------------- entry points


def build_report(warehouse_path: Path, output: Path, *, now: datetime | None = None) -> Path:
    """Write the dashboard for the warehouse's marts to ``output`` and return its path.

    Args:
        warehouse_path: the DuckDB file, opened read-only.
        output: the HTML file to write (its folder is created; replaced atomically).
        now: the moment freshness is measured from (default: the current time).

    Raises:
        ReportError: no warehouse, no marts, no Voice calls, or the file is locked.
    """
    now = now or datetime.now(UTC)
    data = load_report_data(Path(warehouse_path))
    page = render_html(data, now)
    output = Path(output).expanduser().resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a browser never sees half a file.
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, output)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return output


def report_command(args: Any) -> int:
    """``evo-sync report [--output PATH]``: build the dashboard and print where it went."""
    output = (
        Path(args.output) if getattr(args, "output", None) else config.data_dir() / REPORT_FILENAME
    )
    try:
        written = build_report(config.warehouse_path(), output)
    except ReportError as error:
        print(f"evo-sync report: {error}", file=sys.stderr)
        return 1
    print(written)
    return 0
