"""``EVO_PII_MODE=hash``: phone numbers and caller names in the marts become keyed hashes.

A dbt-duckdb plugin (``plugins: [{module: pipeline.pii}]`` in ``dbt_project/profiles.yml``)
registers the SQL function ``pii_hash(text)`` on every dbt connection: HMAC-SHA256 keyed with
``EVO_PII_HASH_KEY``. The key lives only in this process's memory -- never in SQL text, dbt
logs, compiled artifacts or the warehouse -- and equal inputs give equal hashes, so counts and
joins on the hashed columns still work. The ``pii()`` dbt macro applies it when the mode is on.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import pyarrow as pa
from dbt.adapters.duckdb.plugins import BasePlugin

HASH_PREFIX = "pii:"
HASH_HEX_CHARS = 20


def pii_mode() -> str:
    mode = os.environ.get("EVO_PII_MODE", "off").strip().lower() or "off"
    if mode not in ("off", "hash"):
        raise ValueError(f"EVO_PII_MODE={mode!r}: must be 'off' or 'hash'")
    return mode


def make_hasher(key: bytes):
    def pii_hash(values: pa.Array) -> pa.Array:
        return pa.array(
            [
                None
                if value is None
                else HASH_PREFIX
                + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]
                for value in values.to_pylist()
            ],
            pa.string(),
        )

    return pii_hash


class Plugin(BasePlugin):
    def configure_connection(self, conn) -> None:
        key = os.environ.get("EVO_PII_HASH_KEY", "")
        if pii_mode() == "hash" and len(key) < 16:
            raise ValueError(
                "EVO_PII_MODE=hash needs EVO_PII_HASH_KEY set to a secret of at least 16 characters"
            )
        conn.create_function(
            "pii_hash",
            make_hasher(key.encode()),
            ["VARCHAR"],
            "VARCHAR",
            type="arrow",
            side_effects=False,
        )
