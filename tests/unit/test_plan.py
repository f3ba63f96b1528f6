"""guanjia plan: figures come from the results file; what is missing is named, never invented."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli.plan_cmd import plan as plan_cmd
from pipeline.plan import PlanInputs, load_results, make_plan, record_results

INGEST_COND = {"width": 1920, "height": 1080, "gop": 50, "fps": 25, "interval_s": 2}


@pytest.fixture
def results_file(tmp_path: Path) -> Path:
    path = tmp_path / "results.json"
    record_results({"ingest.cpu_s_per_stream_hour": (36.0, "CPU-s per stream-hour"),
                    "ingest.rss_mb_per_camera": (4.0, "MB"), "ingest.fds_per_camera": (1.0, "fds")},
                   "guanjia bench scale --record", path=path, conditions={"ingest.cpu_s_per_stream_hour": INGEST_COND})
    record_results({"detect.crowd_cpu_images_per_core_s": (8.0, "img/s"), "detect.fire_cpu_images_per_core_s": (72.0, "img/s")},
                   "guanjia bench detect --json", path=path)
    record_results({"events.det_per_s_per_worker": (1000.0, "det/s"), "events.det_per_cpu_s": (2000.0, "det/CPU-s"),
                    "redis.bytes_per_camera": (1024.0, "B"), "kafka.detection_record_bytes": (1000.0, "B")},
                   "guanjia bench events --json", path=path)
    return path


def test_plan_is_computed_from_recorded_figures(results_file: Path) -> None:
    out = make_plan(PlanInputs(cameras=450_000, interval_s=2, headroom=1.0, growth=2.0), load_results(results_file))
    p = out["plan"]
    assert p["analysed_frames_per_s"] == 225_000
    assert p["ingest_cores"] == 450_000 * 36 // 3600 == 4500  # 100 cameras per core
    assert p["ingest_workers"] == 4500 and p["cameras_per_ingest_worker"] == 100
    assert p["kafka_partitions_cameras"] == 9000
    assert p["ingest_memory_gb"] == round(450_000 * 4 / 1024, 1)
    assert p["detector_cores_cpu_only"] == math.ceil(225_000 / (1 / (1 / 8 + 1 / 72)))
    assert p["event_workers"] == 225 and p["kafka_partitions_detections"] == 450
    assert p["event_cores"] == 113
    assert p["redis_memory_mb"] == round(450_000 * 1024 / 2**20, 1)
    assert p["kafka_detections_mb_per_s"] == 225.0
    assert p["camera_ingress_gbit_s"] == 1800.0
    assert p["gpus"] is None and any("GPU" in n for n in out["notes"])
    assert out["figures_used"]["ingest.cpu_s_per_stream_hour"]["source"] == "guanjia bench scale --record"


def test_headroom_and_a_gpu_figure_change_the_plan(results_file: Path) -> None:
    record_results({"detect.gpu_images_per_s": (10_000.0, "img/s per GPU")}, "guanjia bench detect --json", path=results_file)
    full = make_plan(PlanInputs(cameras=450_000, headroom=1.0), load_results(results_file))["plan"]
    loose = make_plan(PlanInputs(cameras=450_000, headroom=0.5), load_results(results_file))["plan"]
    assert full["gpus"] == 23 and loose["gpus"] == 45
    assert loose["ingest_cores"] == 2 * full["ingest_cores"]


def test_ingest_cost_scales_with_pixels_and_decoded_keyframes(results_file: Path) -> None:
    res = load_results(results_file)
    base = make_plan(PlanInputs(cameras=3600, headroom=1.0), res)["plan"]["ingest_cpu_s_per_camera_hour"]
    p720 = make_plan(PlanInputs(cameras=3600, resolution="720p", headroom=1.0), res)
    sparse = make_plan(PlanInputs(cameras=3600, interval_s=4, headroom=1.0), res)["plan"]["ingest_cpu_s_per_camera_hour"]
    assert p720["plan"]["ingest_cpu_s_per_camera_hour"] == pytest.approx(base * (1280 * 720) / (1920 * 1080), rel=1e-3)
    assert any("scaled" in n for n in p720["notes"])
    assert sparse == pytest.approx(base / 2)


def test_missing_figures_are_named_with_the_command_that_records_them(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    record_results({"events.det_per_s_per_worker": (1000.0, "det/s")}, "guanjia bench events --json", path=path)
    out = make_plan(PlanInputs(cameras=1000), load_results(path))
    assert "ingest_cores" not in out["plan"] and "event_workers" in out["plan"]
    assert out["missing"]["ingest.cpu_s_per_stream_hour"] == "guanjia bench scale --record"
    assert out["missing"]["detect.crowd_cpu_images_per_core_s"] == "guanjia bench detect --json"


def test_record_merges_and_keeps_other_figures(results_file: Path) -> None:
    record_results({"redis.bytes_per_camera": (700.0, "B")}, "guanjia bench scale --record", path=results_file)
    figures = load_results(results_file).figures
    assert figures["redis.bytes_per_camera"].value == 700.0
    assert figures["ingest.cpu_s_per_stream_hour"].conditions["gop"] == 50
    assert figures["ingest.cpu_s_per_stream_hour"].measured_at and figures["redis.bytes_per_camera"].machine


def test_a_broken_results_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"figures": {"x": {"value": "fast"}}}')
    with pytest.raises(ValueError, match=r"bad\.json: not a results file"):
        load_results(bad)


def test_cli_json_and_text(results_file: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(plan_cmd, ["--cameras", "450000", "--interval", "2", "--resolution", "1080p", "--gop", "50",
                                   "--results", str(results_file), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["plan"]["ingest_workers"] > 0 and out["inputs"]["cameras"] == 450_000
    text = runner.invoke(plan_cmd, ["--results", str(results_file)])
    assert text.exit_code == 0 and "ingest workers" in text.output and "← guanjia bench scale --record" in text.output


def test_cli_errors_are_one_line(tmp_path: Path, results_file: Path) -> None:
    runner = CliRunner()
    empty = runner.invoke(plan_cmd, ["--results", str(tmp_path / "none.json")])
    assert empty.exit_code == 1 and "run `guanjia bench scale --record` first" in empty.output
    bad = runner.invoke(plan_cmd, ["--results", str(results_file), "--resolution", "8k"])
    assert bad.exit_code == 1 and "unknown resolution '8k'" in bad.output
    neg = runner.invoke(plan_cmd, ["--results", str(results_file), "--cameras", "0"])
    assert neg.exit_code == 1 and "--cameras" in neg.output


@pytest.mark.parametrize(("args", "needle"), [
    (["--interval", "0"], "Error: --interval: Input should be greater than 0"),
    (["--interval", "inf"], "Error: --interval: Input should be a finite number"),
    (["--interval", "nan"], "Error: --interval: Input should be a finite number"),
    (["--fps", "inf"], "Error: --fps: Input should be a finite number"),
    (["--bitrate-mbps", "-1"], "Error: --bitrate-mbps: Input should be greater than 0"),
    (["--interval", "1e-320"], "Error: no plan for these inputs (OverflowError"),
    (["--fps", "1e-320"], "Error: no plan for these inputs (ZeroDivisionError"),
    (["--bitrate-mbps", "1e308"], "camera_ingress_gbit_s"),
])
def test_out_of_range_inputs_are_one_line_naming_the_option(results_file: Path, args: list[str], needle: str) -> None:
    res = CliRunner().invoke(plan_cmd, ["--results", str(results_file), *args])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output  # not a traceback
    assert needle in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert "--interval-s" not in res.output


def test_the_committed_results_file_gives_a_450k_plan() -> None:
    out = make_plan(PlanInputs(cameras=450_000), load_results())
    assert out["plan"]["ingest_workers"] > 0 and out["plan"]["event_workers"] > 0, out["missing"]
    assert out["plan"]["redis_memory_mb"] > 0 and out["plan"]["kafka_partitions_cameras"] >= out["plan"]["ingest_workers"]
