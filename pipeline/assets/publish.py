"""The BI-facing copy of the marts, published after every successful dbt build."""

import dagster as dg

from pipeline.assets.transform import evo_dbt_models
from pipeline.lake.publish import publish, published_path
from pipeline.resources import WarehouseResource

MART_KEYS = [key for key in evo_dbt_models.keys if key.path[0] == "marts"]


@dg.asset(
    key=["published", "warehouse"],
    deps=MART_KEYS,
    group_name="marts",
    kinds={"duckdb"},
    description="Read-only copy of the marts for BI tools ($EVO_DATA_DIR/published/"
    "warehouse.duckdb), replaced atomically after each successful build.",
)
def published_warehouse(warehouse: WarehouseResource) -> dg.MaterializeResult:
    target = published_path(warehouse.data_path())
    rows = publish(warehouse.warehouse(), target)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(target)),
            "tables": len(rows),
            "rows": dg.MetadataValue.json(rows),
        }
    )
