"""`guanjia sensors replay` CSV reading: shipped demo file and row errors."""

from pathlib import Path

import click
import pytest

from pipeline.cli.sensors_cmd import read_csv
from pipeline.embedded import EmbeddedRunner

from .helpers import CATALOG


def test_demo_csv_reads_sorted_and_raises_sensor_events():
    readings = read_csv(Path("configs/sensors-demo.csv"))
    assert len(readings) == 12 and [r.time for r in readings] == sorted(r.time for r in readings)
    runner = EmbeddedRunner([], CATALOG)
    events = [e for r in readings for e in runner.feed(r)]
    opened = {e.catalog_code for e in events if e.action.value == "opened"}
    assert opened == {"01.01.02.01", "02.01.01.01", "02.02.01.01"}
    assert sum(e.action.value == "closed" for e in events) == 3


def test_bad_rows_listed_with_file_row_and_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sensor_id,kind,time,value,grid_id\ns1,smok,0,1,G\ns2,gas,x,1,G\n", encoding="utf-8")
    with pytest.raises(click.ClickException) as info:
        read_csv(bad)
    lines = info.value.message.splitlines()
    assert lines[0].startswith(f"{bad}:2: kind:") and lines[1].startswith(f"{bad}:3: time:")


def test_unknown_column_rejected(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sensor_id,kind,tme,value\n", encoding="utf-8")
    with pytest.raises(click.ClickException, match="unknown column"):
        read_csv(bad)
