"""Ingestion assets: Evo Voice ``GET /sessions`` and ``GET /accounts`` -> Parquet lake -> DuckDB."""

import functools
import logging
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import orjson
import pyarrow as pa

from pipeline import config, progress
from pipeline.evo.client import EvoVoiceClient
from pipeline.evo.models import AccountInfo
from pipeline.evo.sessions import count_window, request_window
from pipeline.lake.store import Lake
from pipeline.lake.warehouse import (
    ACCOUNT_BILLING_ITEMS,
    ACCOUNTS,
    DaySummary,
    ensure_raw_schema,
)
from pipeline.partitions import daily_partitions
from pipeline.resources import EvoVoiceResource, WarehouseResource
from pipeline.sync import RangeOutcome, sync_days

DESCRIPTIONS = {
    "sessions": "One row per Evo Voice session (call, chat, fax) created on the partition day.",
    "session_members": "One row per member of a session (caller, agent, transfer target).",
    "session_log": "One row per log entry of a session, in order.",
    "session_breadcrumbs": "The customer trail of each session, top-level customer first.",
    "rejected_sessions": "Rows the API contract could not accept, with the reason and raw JSON.",
    "synced_days": "One row per partition day: what its latest successful sync saw.",
}
SESSION_KEYS = {name: dg.AssetKey(["raw", name]) for name in DESCRIPTIONS}
SESSIONS_KEY = SESSION_KEYS["sessions"]
ACCOUNT_KEYS = {
    "accounts": dg.AssetKey(["raw", "accounts"]),
    "account_billing_items": dg.AssetKey(["raw", "account_billing_items"]),
}
# The DaySummary field that counts each session table's rows of a day.
ROW_COUNT_FIELDS = {
    "sessions": "sessions",
    "session_members": "members",
    "session_log": "log_rows",
    "session_breadcrumbs": "breadcrumbs",
    "rejected_sessions": "rejected",
}
# Days are fetched in windows (neighbouring days share the window's overlap) and committed one
# by one; a run takes at most a month of days so a failed run costs little to repeat.
MAX_PARTITIONS_PER_RUN = 31
# Without EVO_SYNC_DAYS_PER_FETCH, a run's days are fetched in windows of about this many
# sessions (never fewer than the default days per window, never more than the run's days).
WINDOW_TARGET_SESSIONS = 250_000

log = logging.getLogger(__name__)


@functools.cache
def raw_column_schemas() -> dict[str, dg.TableSchemaMetadataValue]:
    """Every ``raw`` table's columns as the warehouse declares them: the DDL that
    :func:`ensure_raw_schema` derives from the Arrow schemas (and ``raw.synced_days``), read
    back from an empty in-memory DuckDB over an empty lake, so the UI shows exactly what
    analysts query."""
    with tempfile.TemporaryDirectory() as empty, duckdb.connect() as con:
        ensure_raw_schema(con, Lake(empty))
        rows = con.execute(
            """
            SELECT c.table_name, c.column_name, c.data_type, c.is_nullable = 'YES',
                   k.constraint_column_names IS NOT NULL
            FROM information_schema.columns AS c
            LEFT JOIN duckdb_constraints() AS k
              ON k.schema_name = c.table_schema AND k.table_name = c.table_name
             AND k.constraint_type = 'PRIMARY KEY' AND k.constraint_column_names = [c.column_name]
            WHERE c.table_schema = 'raw'
            ORDER BY c.table_name, c.ordinal_position
            """
        ).fetchall()
    columns: dict[str, list[dg.TableColumn]] = {}
    for table, column, data_type, nullable, unique in rows:
        constraints = dg.TableColumnConstraints(nullable=nullable, unique=unique)
        columns.setdefault(table, []).append(
            dg.TableColumn(column, data_type, constraints=constraints)
        )
    return {
        table: dg.MetadataValue.table_schema(dg.TableSchema(columns=cols))
        for table, cols in columns.items()
    }


def _table_metadata(table: str, rows: int) -> dict[str, object]:
    return {
        "dagster/column_schema": raw_column_schemas()[table],
        "dagster/row_count": dg.MetadataValue.int(rows),
    }


def _partition_metadata(table: str, summary: DaySummary, *, newest: bool) -> dict[str, object]:
    """What one partition's materialization of ``raw.<table>`` says: the rows it holds there
    (one ``raw.synced_days`` row per day), the day's sync statistics on ``raw.sessions``, and on
    the newest partition of a run also the column schema (the same for every partition of a run;
    the asset definitions carry it too), so each day's event stays small."""
    rows = 1 if table == "synced_days" else getattr(summary, ROW_COUNT_FIELDS[table])
    metadata: dict[str, object] = _day_metadata(summary) if table == "sessions" else {}
    if newest:
        metadata.update(_table_metadata(table, rows))
    else:
        metadata["dagster/row_count"] = dg.MetadataValue.int(rows)
    return metadata


def _day_is_closed(day: date) -> bool:
    """A day still being written may legitimately grow while it is paged."""
    return day < datetime.now(ZoneInfo(config.timezone_name())).date()


@dg.multi_asset(
    name="evo_sessions",
    specs=[
        dg.AssetSpec(
            key,
            description=DESCRIPTIONS[name],
            group_name="ingestion",
            kinds={"parquet", "duckdb"},
            metadata={"dagster/column_schema": raw_column_schemas()[name]},
        )
        for name, key in SESSION_KEYS.items()
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "no_duplicate_session_ids",
            asset=SESSIONS_KEY,
            description="No session_id of the days synced appears twice in the warehouse (on "
            "those days or their neighbours, the only days a session can move to).",
        ),
        dg.AssetCheckSpec(
            "complete_for_window",
            asset=SESSIONS_KEY,
            description="Distinct sessions seen for the request window >= the server's "
            "totalCount for the same query (warns on a day still being written).",
        ),
    ],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN),
    can_subset=False,
)
def evo_sessions(
    context: dg.AssetExecutionContext,
    evo_voice: EvoVoiceResource,
    warehouse: WarehouseResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Page through ``GET /sessions`` for the partition days, flatten each session's nested
    lists into child tables, write the Parquet lake and replace the days in DuckDB ``raw.*``."""
    time_window = context.partition_time_window
    first_day = time_window.start.date()
    last_day = datetime.fromtimestamp(
        time_window.end.timestamp() - 1, time_window.end.tzinfo
    ).date()
    with evo_voice.get_client() as client:
        outcome = sync_days(
            client,
            warehouse.warehouse(),
            first_day,
            last_day,
            days_per_fetch=fetch_window_days(client, first_day, last_day),
            parallel_fetches=config.env_int(
                "EVO_SYNC_PARALLEL_FETCHES", config.DEFAULT_PARALLEL_FETCHES
            ),
            on_day=lambda summary: progress.emit("day", summary),
            on_page=lambda rows: progress.emit("page", rows),
        )
    for day, reason in outcome.failed.items():
        progress.emit("failed", (day, reason))
    newest = outcome.committed[-1].partition_date if outcome.committed else None
    if outcome.failed:
        for summary in outcome.committed:
            for name, key in SESSION_KEYS.items():
                context.log_event(
                    dg.AssetMaterialization(
                        key,
                        partition=summary.partition_date.isoformat(),
                        metadata=_partition_metadata(
                            name, summary, newest=summary.partition_date == newest
                        ),
                    )
                )
        lines = [f"{day}: {reason}" for day, reason in outcome.failed.items()]
        raise dg.Failure(
            description=f"{len(outcome.failed)} day(s) failed to sync:\n" + "\n".join(lines),
            metadata={
                "failed_days": dg.MetadataValue.json({str(k): v for k, v in outcome.failed.items()})
            },
        )
    # Dagster writes one materialization per partition and key of the run: each carries its own
    # day's numbers (partition-scoped metadata), not the run's totals.
    for summary in outcome.committed:
        for name, key in SESSION_KEYS.items():
            context.add_asset_metadata(
                _partition_metadata(name, summary, newest=summary.partition_date == newest),
                asset_key=key,
                partition_key=summary.partition_date.isoformat(),
            )
    for key in SESSION_KEYS.values():
        yield dg.MaterializeResult(asset_key=key)
    yield from _checks(warehouse, outcome)


def fetch_window_days(client: EvoVoiceClient, first_day: date, last_day: date) -> int:
    """Days per request window for syncing ``first_day..last_day``: ``EVO_SYNC_DAYS_PER_FETCH``
    when set, else sized by volume. Every window costs a count request, a warehouse connection
    and, above all, re-reading its margin days (the neighbours its request must overlap), so a
    long run of quiet days is best fetched in one window; busy days keep the default size, which
    bounds a window's memory (its de-duplication state grows with its sessions). A failed window
    leaves all its days to be re-run (days of other windows stay committed)."""
    configured = config.days_per_fetch()
    if configured is not None:
        return configured
    days = (last_day - first_day).days + 1
    if days <= config.DEFAULT_DAYS_PER_FETCH:
        return config.DEFAULT_DAYS_PER_FETCH
    zone = client.settings.zone
    try:
        total = count_window(
            client, request_window(first_day, last_day, zone), today=datetime.now(zone).date()
        )
    except Exception as exc:  # the sync itself will say what is wrong with the server
        log.warning("sizing the request windows of %s..%s failed: %s", first_day, last_day, exc)
        total = None
    if total is None:
        return config.DEFAULT_DAYS_PER_FETCH
    by_volume = WINDOW_TARGET_SESSIONS * days // max(1, total)
    return max(config.DEFAULT_DAYS_PER_FETCH, min(days, by_volume))


def _day_metadata(summary: DaySummary) -> dict[str, object]:
    """A day's sync statistics; pages, retries, rows dropped outside the day and unknown fields
    or values are counted over the day's whole request window (``request_window``)."""
    return {
        "sessions": summary.sessions,
        "members": summary.members,
        "log_rows": summary.log_rows,
        "breadcrumbs": summary.breadcrumbs,
        "rejected": summary.rejected,
        "pages_fetched": summary.pages,
        "retries": summary.retries,
        "dropped_outside_day": summary.outside_window,
        "duplicates_removed": summary.duplicates_removed,
        "unknown_fields": dg.MetadataValue.json(summary.unknown_fields),
        "unknown_enum_values": dg.MetadataValue.json(summary.unknown_enum_values),
        "sync_id": summary.sync_id,
        "request_window": f"{summary.window_first_day}..{summary.window_last_day}",
    }


def _checks(warehouse: WarehouseResource, outcome: RangeOutcome) -> Iterator[dg.AssetCheckResult]:
    days = [s.partition_date for s in outcome.committed]
    # A session's day is the local date of its dateCreated, which the server never changes;
    # only a new EVO_VOICE_TIMEZONE moves it, by one day at most. So a synced session can have
    # a second copy only on the days synced or their neighbours: reading those, not the whole
    # history, keeps the check's cost with the days synced.
    with warehouse.warehouse().reader() as con:
        duplicated = con.execute(
            """
            SELECT session_id, count(*) AS copies FROM raw.sessions
            WHERE partition_date BETWEEN ? AND ?
              AND session_id IN (
                SELECT session_id FROM raw.sessions WHERE partition_date BETWEEN ? AND ?)
            GROUP BY session_id HAVING count(*) > 1 ORDER BY session_id LIMIT 20
            """,
            [
                min(days) - timedelta(days=1),
                max(days) + timedelta(days=1),
                min(days),
                max(days),
            ],
        ).fetchall()
    yield dg.AssetCheckResult(
        check_name="no_duplicate_session_ids",
        asset_key=SESSIONS_KEY,
        passed=not duplicated,
        metadata={"duplicated_ids": dg.MetadataValue.json([row[0] for row in duplicated])},
    )
    incomplete = [s for s in outcome.committed if s.complete is False]
    closed = [s for s in incomplete if _day_is_closed(s.partition_date)]
    yield dg.AssetCheckResult(
        check_name="complete_for_window",
        asset_key=SESSIONS_KEY,
        passed=not incomplete,
        severity=dg.AssetCheckSeverity.ERROR if closed else dg.AssetCheckSeverity.WARN,
        metadata={
            "incomplete_days": dg.MetadataValue.json(
                {
                    str(s.partition_date): {
                        "distinct_seen": s.window_distinct_sessions,
                        "server_total": s.server_total_count,
                    }
                    for s in incomplete
                }
            ),
            "days_checked": len(outcome.committed),
        },
    )


@dg.multi_asset(
    name="evo_accounts",
    specs=[
        dg.AssetSpec(
            ACCOUNT_KEYS["accounts"],
            group_name="ingestion",
            kinds={"duckdb"},
            description="One row per Evo Voice account visible to the user.",
            metadata={"dagster/column_schema": raw_column_schemas()["accounts"]},
        ),
        dg.AssetSpec(
            ACCOUNT_KEYS["account_billing_items"],
            group_name="ingestion",
            kinds={"duckdb"},
            description="One row per account and billing item (inboundVoiceCalls...).",
            metadata={"dagster/column_schema": raw_column_schemas()["account_billing_items"]},
        ),
    ],
)
def evo_accounts(
    evo_voice: EvoVoiceResource, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult]:
    """Refresh ``raw.accounts`` and ``raw.account_billing_items`` from ``GET /accounts``."""
    with evo_voice.get_client() as client:
        accounts, items = accounts_tables(client.iter_accounts(), datetime.now(UTC))
    warehouse.warehouse().replace_accounts(accounts, items)
    yield dg.MaterializeResult(
        asset_key=ACCOUNT_KEYS["accounts"],
        metadata={"rows": accounts.num_rows, **_table_metadata("accounts", accounts.num_rows)},
    )
    yield dg.MaterializeResult(
        asset_key=ACCOUNT_KEYS["account_billing_items"],
        metadata={
            "rows": items.num_rows,
            **_table_metadata("account_billing_items", items.num_rows),
        },
    )


def accounts_tables(raw_accounts, synced_at: datetime) -> tuple[pa.Table, pa.Table]:
    """Accounts through the pydantic contract (a handful of rows: no fast path needed)."""
    accounts, items = [], []
    for raw in raw_accounts:
        account = AccountInfo.model_validate(raw)
        extra = account.model_extra or {}
        accounts.append(
            {
                "account_id": account.id,
                "name": account.name,
                "parent_account_id": account.parent_account_id,
                "twilio_account_sid": account.twilio_account_sid,
                "ancestor_ids": account.ancestor_ids,
                "max_phone_numbers": account.max_phone_numbers,
                "is_byoa": account.is_byoa,
                "trust_hub_profile_sid": account.trust_hub_profile_sid,
                "logo_id": account.logo_id,
                "logo_uri": account.logo_uri,
                "date_created": account.date_created,
                "date_last_modified": account.date_last_modified,
                "created_by": account.created_by,
                "last_modified_by": account.last_modified_by,
                "extra_fields": orjson.dumps(extra).decode() if extra else None,
                "synced_at": synced_at,
            }
        )
        billing = account.billing_settings
        if billing is not None:
            for name, value in billing.model_dump(by_alias=True).items():
                if isinstance(value, dict):
                    items.append(
                        {
                            "account_id": account.id,
                            "item": name,
                            "base_cost": _number(value.get("baseCost")),
                            "raw_unit_multiplier": _number(value.get("rawUnitMultiplier")),
                            "unit_cost": _number(value.get("unitCost")),
                            "allowance": _number(value.get("allowance")),
                            "synced_at": synced_at,
                        }
                    )
    return (
        pa.Table.from_pylist(accounts, schema=ACCOUNTS),
        pa.Table.from_pylist(items, schema=ACCOUNT_BILLING_ITEMS),
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
