"""The dbt project as Dagster sees it, and a manifest that is parsed when (and only when) the
models changed: ``prepare_if_dev`` only parses under ``dagster dev``, so the CLI, the tests and
any deployment load the same prepared manifest through :func:`ensure_manifest`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dagster_dbt import DbtProject
from filelock import FileLock

from pipeline import config

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
config.export_data_dir()

dbt_project = DbtProject(project_dir=config.DBT_PROJECT_DIR, profiles_dir=config.DBT_PROJECT_DIR)


def dbt_executable() -> str:
    """The ``dbt`` installed beside this Python (the project's venv), else the one on PATH."""
    return config.venv_executable("dbt")


def _newest_source_mtime() -> float:
    newest = (config.DBT_PROJECT_DIR / "dbt_project.yml").stat().st_mtime
    for folder in ("models", "macros", "tests", "seeds", "snapshots"):
        for path in (config.DBT_PROJECT_DIR / folder).rglob("*"):
            if path.is_file():
                newest = max(newest, path.stat().st_mtime)
    return newest


def ensure_manifest() -> Path:
    """Parse the dbt project if ``target/manifest.json`` is missing or older than its sources."""
    manifest = dbt_project.manifest_path
    with FileLock(str(config.DBT_PROJECT_DIR / ".parse.lock")):
        if manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime():
            return manifest
        result = subprocess.run(
            [
                dbt_executable(),
                "parse",
                "--quiet",
                "--project-dir",
                str(config.DBT_PROJECT_DIR),
                "--profiles-dir",
                str(config.DBT_PROJECT_DIR),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=config.DBT_PROJECT_DIR,
        )
        if result.returncode != 0:
            detail = (result.stdout + result.stderr).strip().splitlines()[-5:]
            raise RuntimeError("dbt parse failed: " + " | ".join(detail))
    return manifest
