"""Flatten API pages into Arrow tables, write the Parquet lake, load the DuckDB warehouse."""
