"""``guanjia bench detect``: the figures it prints, and what it says when the asked-for GPU provider is absent."""

from __future__ import annotations

import json

from click.testing import CliRunner

from detectors.bench import bench_detect
from tests.plugins.shared import shared_path


def test_missing_gpu_provider_is_reported_and_the_run_falls_back_to_cpu():
    shared_path("models", "shufflenetv2_onfire_224.onnx")
    shared_path("models", "person_detector_light_192.onnx")
    result = CliRunner().invoke(bench_detect, ["--models", "shufflenetv2_onfire_224,person_detector_light_192",
                                               "--batches", "1,2", "--rounds", "1", "--providers",
                                               "NoSuchExecutionProvider,CPUExecutionProvider", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["gpu"] == "none: NoSuchExecutionProvider not available, measured on CPU"
    fire, light = out["models"]["shufflenetv2_onfire_224"], out["models"]["person_detector_light_192"]
    assert fire["providers"] == ["CPUExecutionProvider"]
    assert fire["served_input"] == fire["ceiling_input"] == [224, 224] and not fire["rect_letterbox"]
    assert light["rect_letterbox"] and light["served_input"] == [160, 192] and light["ceiling_input"] == [192, 192]
    for entry in (fire, light):
        assert set(entry["batches"]) == {"1", "2"}
        row = entry["batches"][str(entry["best_batch"])]
        assert row["ratio"] == row["full"]["images_per_s"] / row["ceiling"]["images_per_s"] > 0
