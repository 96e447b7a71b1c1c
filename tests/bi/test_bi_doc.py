"""docs/bi.md holds for a freshly built warehouse: every ```sql block runs as written, read-only,
against the working warehouse and its published copy (the file BI tools connect to) and returns
rows; and the page lists every mart and every column the marts' yml files declare."""

from __future__ import annotations

import re

import duckdb
import pytest
import yaml

from pipeline import config

BI_DOC = config.PROJECT_ROOT / "docs" / "bi.md"
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.DOTALL | re.MULTILINE)


def sql_blocks() -> list[str]:
    return SQL_BLOCK.findall(BI_DOC.read_text())


def test_the_page_has_the_example_queries_and_names_the_published_file():
    text = BI_DOC.read_text()
    assert len(sql_blocks()) >= 3
    assert "$EVO_DATA_DIR/published/warehouse.duckdb" in text
    assert "read_only=True" in text


@pytest.mark.parametrize("which", ["warehouse.duckdb", "published/warehouse.duckdb"])
@pytest.mark.parametrize("number", range(len(sql_blocks())), ids=lambda n: f"sql{n + 1}")
def test_every_sql_block_runs_and_returns_rows(built_warehouse, which, number):
    data_dir, _ = built_warehouse
    path = data_dir / which
    assert path.is_file(), f"the backfill did not write {which}"
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(sql_blocks()[number]).fetchall()
    assert rows, f"block {number + 1} returned no rows from {which}"


def test_every_mart_and_column_in_the_yml_is_listed():
    text = BI_DOC.read_text()
    marts = sorted((config.DBT_PROJECT_DIR / "models" / "marts").glob("*.yml"))
    assert marts
    for path in marts:
        for model in yaml.safe_load(path.read_text())["models"]:
            section = re.search(rf"\*\*`{model['name']}`\*\*:(.*?)(?:\n- \*\*|\n\n)", text, re.S)
            assert section, f"docs/bi.md lists no columns for {model['name']}"
            for column in model["columns"]:
                assert f"`{column['name']}`" in section.group(1), (model["name"], column["name"])
            assert f"| `{model['name']}` |" in text, f"{model['name']} missing from the grain table"
