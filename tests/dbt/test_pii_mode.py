"""``EVO_PII_MODE=hash``: phone numbers and caller names in the marts become keyed hashes that
keep counts and joins intact, and the key appears nowhere dbt writes."""

from __future__ import annotations

import shutil

import duckdb

from tests.dbt.test_dbt_marts import dbt_env, run_dbt

KEY = "unit-test-pii-key-8f3a1c9e2b7d"


def _copy_warehouse(built_warehouse, tmp_path):
    data_dir, _ = built_warehouse
    target = tmp_path / "data"
    target.mkdir()
    shutil.copy(data_dir / "warehouse.duckdb", target / "warehouse.duckdb")
    return target


def test_hash_mode_replaces_numbers_and_names_and_keeps_the_key_out(built_warehouse, tmp_path):
    data_dir = _copy_warehouse(built_warehouse, tmp_path)
    warehouse = data_dir / "warehouse.duckdb"
    env = dbt_env(data_dir, warehouse) | {"EVO_PII_MODE": "hash", "EVO_PII_HASH_KEY": KEY}
    result = run_dbt(["build", "--select", "fct_sessions", "--full-refresh"], tmp_path / "dbt", env)
    assert result.returncode == 0, result.stdout[-2000:]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT f.from_address, s.from_address, f.from_name, s.from_name, f.to_address "
            "FROM marts.fct_sessions f JOIN raw.sessions s USING (session_id)"
        ).fetchall()
    assert rows
    hashed_to_raw: dict[str, str] = {}
    for hashed_from, raw_from, hashed_name, raw_name, hashed_to in rows:
        for hashed, raw in ((hashed_from, raw_from), (hashed_name, raw_name)):
            assert (hashed is None) == (raw is None)
            if raw is not None:
                assert hashed.startswith("pii:") and raw not in hashed
                assert hashed_to_raw.setdefault(hashed, raw) == raw  # same input, same hash
        assert hashed_to is None or hashed_to.startswith("pii:")
    assert len({r[0] for r in rows}) == len({r[1] for r in rows})
    written = [warehouse, *(tmp_path / "dbt").rglob("*")]
    for path in written:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_hash_mode_without_a_key_fails_naming_the_setting(built_warehouse, tmp_path):
    data_dir = _copy_warehouse(built_warehouse, tmp_path)
    env = dbt_env(data_dir, data_dir / "warehouse.duckdb") | {"EVO_PII_MODE": "hash"}
    env.pop("EVO_PII_HASH_KEY", None)
    result = run_dbt(["run", "--select", "fct_sessions"], tmp_path / "dbt", env)
    assert result.returncode != 0
    assert "EVO_PII_HASH_KEY" in result.stdout + result.stderr
