"""``guanjia bench all``: parsing, the generated section between markers, plots, and a real run."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.cli.bench_all import (
    END,
    LATENCY,
    START,
    THROUGHPUT,
    numeric_figures,
    parse_json_output,
    pick,
    plot_bars,
    replace_between_markers,
    summary_markdown,
)

DOC = "# Benchmarks\n\n## Ingest\nhand-written figures\n\n## Detectors\nmore\n"


def test_parse_takes_the_last_json_object_line():
    assert parse_json_output('progress…\n{"a": 1}\n') == {"a": 1}
    assert parse_json_output('{"a": 1}\n{"b": 2}') == {"b": 2}
    assert parse_json_output("no json here\n[1, 2]") is None


def test_numeric_figures_flatten_and_skip_text_and_booleans():
    figures = {"device": "CPU", "ok": True, "fps": 12.5, "models": {"yolo": {"p50_ms": 40, "name": "x"}}, "nan": float("nan")}
    assert numeric_figures(figures) == {"fps": 12.5, "models.yolo.p50_ms": 40.0}


def test_section_is_inserted_once_then_replaced_leaving_other_sections_alone():
    results = {"page": {"ok": True, "seconds": 2.0, "figures": {"snapshot_ms": 14.5, "images_per_s": 9}},
               "events": {"ok": False, "seconds": 4.0, "error": "exit 1: cannot reach Kafka at 127.0.0.1:9092"}}
    first = replace_between_markers(DOC, summary_markdown(results, "then", False, ["img/bench-latency.png"]))
    assert first.startswith(DOC.rstrip("\n")) and first.count(START) == 1 and first.count(END) == 1
    assert "| events | failed: exit 1: cannot reach Kafka at 127.0.0.1:9092 | 4.0 | 0 |" in first
    assert "| `snapshot_ms` | 14.5 |" in first and "![bench-latency](img/bench-latency.png)" in first
    results["page"]["figures"]["snapshot_ms"] = 99.0
    second = replace_between_markers(first + "\n## Later\nkept\n", summary_markdown(results, "now", True, []))
    assert second.count(START) == 1 and "| `snapshot_ms` | 99 |" in second and "14.5" not in second
    assert "## Ingest\nhand-written figures" in second and second.endswith("## Later\nkept\n")
    assert "bench all --quick" in second


def test_throughput_and_latency_figures_are_told_apart():
    results = {"detect": {"ok": True, "seconds": 1, "figures": {"m": {"images_per_s": 15.0, "p50_ms": 63.0, "rounds": 3}}}}
    assert pick(results, THROUGHPUT) == {"detect: m.images_per_s": 15.0}
    assert pick(results, LATENCY) == {"detect: m.p50_ms": 63.0}
    events = {"events": {"ok": True, "seconds": 1, "figures": {"latency_rate_detections_per_s": 300, "latency_p99_ms": 80}}}
    assert pick(events, LATENCY) == {"events: latency_p99_ms": 80.0}


def test_plot_is_a_png(tmp_path):
    path = tmp_path / "img" / "bench-latency.png"
    assert plot_bars({"a": 1.0, "b": 1000.0}, "t", "ms", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plot_bars({}, "t", "ms", tmp_path / "none.png") and not (tmp_path / "none.png").exists()


def test_real_run_writes_doc_and_reports_a_timeout_without_stopping(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC, encoding="utf-8")
    partial = CliRunner().invoke(cli, ["bench", "all", "--quick", "--only", "page", "--doc", str(doc),
                                       "--img-dir", str(tmp_path / "img")])
    assert partial.exit_code == 0, partial.output
    assert doc.read_text(encoding="utf-8") == DOC  # a partial run leaves the full table alone unless told to --write
    result = CliRunner().invoke(cli, ["bench", "all", "--quick", "--only", "page", "--json", "--doc", str(doc),
                                      "--img-dir", str(tmp_path / "img"), "--write"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["page"]["ok"] and out["page"]["figures"]["cameras"] == 200
    text = doc.read_text(encoding="utf-8")
    assert "| page | ok |" in text and "## Detectors\nmore" in text
    assert re.search(r"\| `snapshot_ms` \| [0-9.]+ \|", text)
    failed = CliRunner().invoke(cli, ["bench", "all", "--only", "page", "--timeout", "0.05", "--doc", str(doc),
                                      "--no-write"])
    assert failed.exit_code == 1 and "timed out after" in failed.output
    assert doc.read_text(encoding="utf-8") == text  # --no-write leaves the doc alone
