"""``evo-sync report``: writes the dashboard ($EVO_DATA_DIR/report.html or --output) and prints
its path; without a warehouse or marts it exits 1 with one line saying what to run first."""

from __future__ import annotations

import argparse
import shutil

import duckdb

from pipeline.cli import main
from pipeline.report import report_command


def test_missing_warehouse_exits_1_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EVO_DATA_DIR", str(tmp_path / "nothing-here"))
    assert main(["report"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "no warehouse at" in err
    assert "run `make demo` or `evo-sync backfill` first" in err
    assert not (tmp_path / "nothing-here" / "report.html").exists()


def test_warehouse_without_marts_exits_1_with_one_line(tmp_path, monkeypatch, capsys):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.synced_days (partition_date DATE)")
    monkeypatch.setenv("EVO_DATA_DIR", str(tmp_path))
    assert main(["report", "--output", str(tmp_path / "out.html")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "marts.fct_sessions" in err
    assert "run `make demo` or `evo-sync backfill` first" in err
    assert not (tmp_path / "out.html").exists()


def test_writes_to_output_and_prints_the_path(tmp_path, monkeypatch, capsys, built_warehouse):
    data_dir, _ = built_warehouse
    monkeypatch.setenv("EVO_DATA_DIR", str(data_dir))
    output = tmp_path / "nested" / "dash.html"
    assert report_command(argparse.Namespace(output=str(output))) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(output.resolve())
    assert err == ""
    assert output.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not (data_dir / "report.html").exists()


def test_default_output_is_the_data_dir(tmp_path, monkeypatch, capsys, warehouse_file):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copyfile(warehouse_file, data_dir / "warehouse.duckdb")
    monkeypatch.setenv("EVO_DATA_DIR", str(data_dir))
    assert main(["report"]) == 0
    assert capsys.readouterr().out.strip() == str(data_dir / "report.html")
    assert (data_dir / "report.html").stat().st_size > 1_000_000  # plotly.js is inside
    assert sorted(p.name for p in data_dir.iterdir()) == ["report.html", "warehouse.duckdb"]
