"""Concurrency: separate processes syncing into the same data folder at the same time -- different
days, and a day two of them sync at once -- all succeed, and the warehouse and the lake end up
exactly the server's state. (A dashboard holding the published copy during a full sync and dbt
build is in test_crash.py, where it watches the run that recovers from the crashes.)"""

from __future__ import annotations

import json
import select
import subprocess

from pipeline.emulator import run_emulator
from tests.reliability.helpers import (
    DAYS,
    REPO_ROOT,
    assert_equals_truth,
    assert_lake_matches_warehouse,
    emulator_config,
    pipeline_env,
    truth_by_day,
    worker,
)


def test_processes_syncing_at_the_same_time_all_succeed(tmp_path):
    data_dir, go = tmp_path / "data", tmp_path / "go"
    ranges = [(DAYS[0], DAYS[0]), (DAYS[1], DAYS[1]), (DAYS[1], DAYS[2])]
    # Slow answers, so that the syncs overlap in time once they start together.
    with run_emulator(emulator_config(latency_ms=30)) as emulator:
        env = pipeline_env(emulator, data_dir, RELIABILITY_GO_FILE=str(go))
        processes = [
            subprocess.Popen(
                worker("sync", str(first), str(last)),
                env=env,
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for first, last in ranges
        ]
        for process in processes:
            ready, _, _ = select.select([process.stdout], [], [], 120)
            assert ready and process.stdout.readline().strip() == "ready"
        go.touch()
        results = []
        for process in processes:
            out, err = process.communicate(timeout=180)
            assert process.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        truth = truth_by_day(emulator, DAYS)
    assert max(r["started"] for r in results) < min(r["finished"] for r in results), results
    assert_equals_truth(data_dir / "warehouse.duckdb", truth)
    assert_lake_matches_warehouse(data_dir)
