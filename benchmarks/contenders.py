"""What our ingest is compared with: the raw floor (fetch + ``orjson.loads``, nothing else) and
dlt (the same pages through ``dlt.pipeline(destination="duckdb")`` with its nested tables).

Both read exactly the pages our ingest reads (:func:`common.session_queries`) with ``requests``
and one shared ``Session`` logged in through ``POST /auth/credentials``, fetching up to
``workers`` pages ahead in page order, the way ``EvoVoiceClient.iter_pages`` does.
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests
from common import PASSWORD, USERNAME, Query
from requests.adapters import HTTPAdapter

os.environ.setdefault("RUNTIME__DLT_TELEMETRY_DISABLED", "true")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")
# dlt warns that ringQueueId (always null in the emulator's data) gets no column: expected.
logging.getLogger("dlt").setLevel(logging.ERROR)


@dataclass
class FetchStats:
    pages: int = 0
    requests: int = 0
    bytes: int = 0
    sessions: int = 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class PageFetcher:
    """Every page of some ``/sessions`` queries, parsed, in order; ``workers`` in flight."""

    def __init__(self, base_url: str, workers: int) -> None:
        self.base_url = base_url
        self.workers = workers
        self.stats = FetchStats()
        self._lock = threading.Lock()
        self.http = requests.Session()
        adapter = HTTPAdapter(pool_connections=workers, pool_maxsize=max(workers, 2))
        self.http.mount("http://", adapter)
        response = self.http.post(
            base_url + "/auth/credentials",
            json={"userName": USERNAME, "password": PASSWORD, "rememberMe": True},
        )
        response.raise_for_status()

    def close(self) -> None:
        self.http.close()

    def _get(self, params: dict[str, str], number: int) -> dict[str, Any]:
        response = self.http.get(
            self.base_url + "/sessions", params={**params, "page": str(number)}
        )
        response.raise_for_status()
        content = response.content
        with self._lock:
            self.stats.requests += 1
            self.stats.bytes += len(content)
        return orjson.loads(content)

    def pages(self, queries: list[Query]) -> Iterator[list[dict[str, Any]]]:
        """The ``items`` of every page, until an empty page or ``hasMorePages == false``."""
        for query in queries:
            yield from self._query_pages(query.params)

    def _query_pages(self, params: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
        if self.workers <= 1:
            number = 0
            while True:
                body = self._get(params, number)
                yield from self._accept(body)
                if _is_last(body):
                    return
                number += 1
        with ThreadPoolExecutor(self.workers) as pool:
            pending: dict[int, Future[dict[str, Any]]] = {}
            ahead = 0
            number = 0
            try:
                while True:
                    while ahead < number + self.workers:
                        pending[ahead] = pool.submit(self._get, params, ahead)
                        ahead += 1
                    body = pending.pop(number).result()
                    yield from self._accept(body)
                    if _is_last(body):
                        return
                    number += 1
            finally:
                for future in pending.values():
                    future.cancel()

    def _accept(self, body: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        items = body.get("items") or []
        self.stats.pages += 1
        self.stats.sessions += len(items)
        if items:
            yield items


def _is_last(body: dict[str, Any]) -> bool:
    return not body.get("items") or body.get("hasMorePages") is False


def raw_floor(base_url: str, queries: list[Query], workers: int) -> dict[str, Any]:
    """Fetch every page and ``orjson.loads`` it; nothing else."""
    fetcher = PageFetcher(base_url, workers)
    try:
        cpu0, t0 = _cpu(), time.perf_counter()
        for _ in fetcher.pages(queries):
            pass
        seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
    finally:
        fetcher.close()
    s = fetcher.stats
    return {
        "sessions": s.sessions,
        "pages": s.pages,
        "requests": s.requests,
        "bytes": s.bytes,
        "seconds": seconds,
        "cpu_seconds": cpu,
    }


def dlt_load(
    base_url: str, queries: list[Query], workers: int, workdir: Path, file_format: str | None
) -> dict[str, Any]:
    """The same pages through dlt into a fresh DuckDB file, with dlt's nested child tables
    (``sessions__members``, ``sessions__log``, ``sessions__customer_breadcrumb``)."""
    import dlt
    import duckdb

    fetcher = PageFetcher(base_url, workers)
    database = workdir / "dlt.duckdb"

    @dlt.resource(name="sessions", write_disposition="replace")
    def sessions() -> Iterator[list[dict[str, Any]]]:
        yield from fetcher.pages(queries)

    pipeline = dlt.pipeline(
        pipeline_name="evo_bench",
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name="raw",
        pipelines_dir=str(workdir / "pipelines"),
    )
    try:
        cpu0, t0 = _cpu(), time.perf_counter()
        pipeline.extract(sessions(), loader_file_format=file_format)
        t1 = time.perf_counter()
        pipeline.normalize()
        t2 = time.perf_counter()
        pipeline.load()
        seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
        t3 = t0 + seconds
    finally:
        fetcher.close()
    con = duckdb.connect(str(database), read_only=True)
    try:
        names = [
            row[0]
            for row in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'raw' "
                "AND NOT starts_with(table_name, '_dlt') ORDER BY table_name"
            ).fetchall()
        ]
        tables = {n: con.execute(f'SELECT count(*) FROM raw."{n}"').fetchone()[0] for n in names}
    finally:
        con.close()
    s = fetcher.stats
    return {
        "sessions": s.sessions,
        "pages": s.pages,
        "requests": s.requests,
        "bytes": s.bytes,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "extract_seconds": t1 - t0,
        "normalize_seconds": t2 - t1,
        "load_seconds": t3 - t2,
        "tables": tables,
        "file_format": file_format or "insert_values (dlt default for duckdb)",
    }
