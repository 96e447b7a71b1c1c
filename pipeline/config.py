"""Project paths and the non-secret settings with defaults (secrets come via ``dg.EnvVar``)."""

from __future__ import annotations

import os
import sys
from datetime import date, timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
DEFAULT_START_DAYS_AGO = 30
DEFAULT_LOOKBACK_DAYS = 3
DEFAULT_DAYS_PER_FETCH = 7
DEFAULT_PARALLEL_FETCHES = 2


def data_dir() -> Path:
    """``EVO_DATA_DIR`` as an absolute path (default: ``data/`` in the project)."""
    raw = os.environ.get("EVO_DATA_DIR", "").strip()
    return Path(raw).expanduser().resolve() if raw else PROJECT_ROOT / "data"


def lake_uri() -> str:
    """``EVO_LAKE_URI`` (a folder or an object-store URI), default ``$EVO_DATA_DIR/lake``."""
    return os.environ.get("EVO_LAKE_URI", "").strip() or str(data_dir() / "lake")


def warehouse_path() -> Path:
    return data_dir() / "warehouse.duckdb"


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None


def days_per_fetch() -> int | None:
    """``EVO_SYNC_DAYS_PER_FETCH`` (days per request window), or None when unset: the asset
    then sizes the windows by the run's volume."""
    value = env_int("EVO_SYNC_DAYS_PER_FETCH", 0)
    if value < 0:
        raise ValueError(f"EVO_SYNC_DAYS_PER_FETCH={value} is negative")
    return value or None


def timezone_name() -> str:
    return os.environ.get("EVO_VOICE_TIMEZONE", "").strip() or "UTC"


def sync_start_date() -> date:
    """``EVO_SYNC_START_DATE`` (YYYY-MM-DD), default 30 days ago: the first partition."""
    raw = os.environ.get("EVO_SYNC_START_DATE", "").strip()
    if not raw:
        return date.today() - timedelta(days=DEFAULT_START_DAYS_AGO)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"EVO_SYNC_START_DATE={raw!r} is not a date (YYYY-MM-DD)") from None


def lookback_days() -> int:
    return env_int("EVO_SYNC_LOOKBACK_DAYS", DEFAULT_LOOKBACK_DAYS)


def export_data_dir() -> None:
    """Make ``EVO_DATA_DIR`` absolute in the environment so dbt (which runs in
    ``dbt_project/``) and the Python code agree on the warehouse file."""
    os.environ["EVO_DATA_DIR"] = str(data_dir())


def venv_executable(name: str) -> str:
    """A console script installed beside this Python (the project's venv), else ``name`` for
    a lookup on PATH."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name
