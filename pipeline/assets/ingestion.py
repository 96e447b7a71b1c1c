"""Ingestion assets: Evo Voice ``GET /sessions`` and ``GET /accounts`` -> Parquet lake -> DuckDB."""

import functools
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import orjson
import pyarrow as pa

from pipeline import config, progress
from pipeline.evo.models import AccountInfo
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


@functools.cache
def raw_column_schemas() -> dict[str, dg.TableSchemaMetadataValue]:
    """Every ``raw`` table's columns as the warehouse declares them: the DDL that
    :func:`ensure_raw_schema` derives from the Arrow schemas (and ``raw.synced_days``), read
    back from an empty in-memory DuckDB so the UI shows exactly what analysts query."""
    with duckdb.connect() as con:
        ensure_raw_schema(con)
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


def _session_table_metadata(table: str, days: Sequence[DaySummary]) -> dict[str, object]:
    """Column schema and rows written for ``days`` (one ``raw.synced_days`` row per day)."""
    if table == "synced_days":
        return _table_metadata(table, len(days))
    return _table_metadata(table, sum(getattr(s, ROW_COUNT_FIELDS[table]) for s in days))


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
            description="No session_id appears twice in the warehouse.",
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
            warehouse.lake(),
            warehouse.warehouse(),
            first_day,
            last_day,
            days_per_fetch=config.env_int("EVO_SYNC_DAYS_PER_FETCH", config.DEFAULT_DAYS_PER_FETCH),
            parallel_fetches=config.env_int(
                "EVO_SYNC_PARALLEL_FETCHES", config.DEFAULT_PARALLEL_FETCHES
            ),
            on_day=lambda summary: progress.emit("day", summary),
            on_page=lambda rows: progress.emit("page", rows),
        )
    for day, reason in outcome.failed.items():
        progress.emit("failed", (day, reason))
    if outcome.failed:
        for summary in outcome.committed:
            for name, key in SESSION_KEYS.items():
                context.log_event(
                    dg.AssetMaterialization(
                        key,
                        partition=summary.partition_date.isoformat(),
                        metadata={
                            **_day_metadata(summary),
                            **_session_table_metadata(name, [summary]),
                        },
                    )
                )
        lines = [f"{day}: {reason}" for day, reason in outcome.failed.items()]
        raise dg.Failure(
            description=f"{len(outcome.failed)} day(s) failed to sync:\n" + "\n".join(lines),
            metadata={
                "failed_days": dg.MetadataValue.json({str(k): v for k, v in outcome.failed.items()})
            },
        )
    metadata = _range_metadata(outcome)
    for name, key in SESSION_KEYS.items():
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                **(metadata if name == "sessions" else {}),
                **_session_table_metadata(name, outcome.committed),
            },
        )
    yield from _checks(warehouse, outcome)


def _day_metadata(summary: DaySummary) -> dict[str, object]:
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
    }


def _range_metadata(outcome: RangeOutcome) -> dict[str, object]:
    days = outcome.committed
    if len(days) == 1:
        return _day_metadata(days[0])
    windows = {(s.window_first_day, s.sync_id): s for s in days}.values()
    unknown_fields: dict[str, int] = {}
    unknown_enums: dict[str, int] = {}
    for window in windows:
        for name, n in window.unknown_fields.items():
            unknown_fields[name] = unknown_fields.get(name, 0) + n
        for name, n in window.unknown_enum_values.items():
            unknown_enums[name] = unknown_enums.get(name, 0) + n
    table = (
        "| day | sessions | members | log rows | rejected |\n|---|---:|---:|---:|---:|\n"
        + "".join(
            f"| {s.partition_date} | {s.sessions} | {s.members} | {s.log_rows} | {s.rejected} |\n"
            for s in days
        )
    )
    return {
        "days": len(days),
        "sessions": sum(s.sessions for s in days),
        "members": sum(s.members for s in days),
        "log_rows": sum(s.log_rows for s in days),
        "breadcrumbs": sum(s.breadcrumbs for s in days),
        "rejected": sum(s.rejected for s in days),
        "pages_fetched": sum(w.pages for w in windows),
        "retries": sum(w.retries for w in windows),
        "dropped_outside_day": sum(w.outside_window for w in windows),
        "duplicates_removed": sum(s.duplicates_removed for s in days),
        "unknown_fields": dg.MetadataValue.json(unknown_fields),
        "unknown_enum_values": dg.MetadataValue.json(unknown_enums),
        "per_day": dg.MetadataValue.md(table),
    }


def _checks(warehouse: WarehouseResource, outcome: RangeOutcome) -> Iterator[dg.AssetCheckResult]:
    days = [s.partition_date for s in outcome.committed]
    with warehouse.warehouse().reader() as con:
        duplicated = con.execute(
            """
            SELECT session_id, count(*) AS copies FROM raw.sessions
            WHERE session_id IN (
                SELECT session_id FROM raw.sessions WHERE partition_date BETWEEN ? AND ?)
            GROUP BY session_id HAVING count(*) > 1 ORDER BY session_id LIMIT 20
            """,
            [min(days), max(days)],
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
