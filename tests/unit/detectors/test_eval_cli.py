"""guanjia eval crowd|fire on a few items of ../shared/data (skipped without it)."""

import csv
import json

from click.testing import CliRunner

from pipeline.cli import cli
from tests.plugins.shared import shared_path


def run(*args):
    result = CliRunner().invoke(cli, ["eval", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_eval_crowd_images_json_and_csv(tmp_path):
    root = shared_path("data", "crowd", "shanghaitech_B_train")
    out = tmp_path / "per_image.csv"
    data = json.loads(run("crowd", "--images", str(root / "images"), "--gt", str(root / "gt_counts.json"),
                          "--limit", "3", "--csv", str(out), "--json"))
    assert data["n"] == 3 and data["estimator"] == "boxes"
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3
    errors = [float(r["predicted"]) - float(r["truth"]) for r in rows]
    assert abs(sum(abs(e) for e in errors) / 3 - data["mae"]) < 0.01
    assert data["bias"] < 0  # boxes undercount dense street crowds


def test_eval_crowd_video_uses_frame_indexes():
    root = shared_path("data", "crowd", "mall_train")
    data = json.loads(run("crowd", "--video", str(root / "mall_train_2fps.mp4"), "--gt", str(root / "gt_counts.json"),
                          "--limit", "2", "--json"))
    assert data["n"] == 2 and data["mean_truth"] > 10


def test_eval_fire_reports_sweep():
    root = shared_path("data", "fire", "cair_dev")
    data = json.loads(run("fire", "--images", str(root / "images"), "--labels", str(root / "labels.json"),
                          "--limit", "12", "--json"))
    assert data["n"] == 12 and 0 < data["positives"] < 12  # --limit spreads over fire and no-fire images
    assert data["tp"] + data["fp"] + data["tn"] + data["fn"] == 12
    assert [s["threshold"] for s in data["sweep"]][:2] == [0.1, 0.15]


def test_eval_needs_exactly_one_source(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text("{}")
    result = CliRunner().invoke(cli, ["eval", "crowd", "--gt", str(gt)])
    assert result.exit_code != 0 and "exactly one of --images or --video" in result.output


def test_eval_fire_video_adds_confirmation():
    clip = shared_path("data", "fire", "furg", "house6.mp4")
    data = json.loads(run("fire", "--video", str(clip), "--label", "fire", "--every", "60", "--json"))
    assert data["n"] == 15 and data["positives"] == 15  # 899 frames, every 60th
    assert data["confirm"] == "3 of 5"
    assert data["first_confirmed_frame"] == 120  # fire in every frame: confirmed at the 3rd analysed frame (0, 60, 120)
    assert data["confirmed_frames"] == 15 - 2  # every analysed frame from then on; the first k-1 cannot confirm


def test_eval_fire_video_needs_a_label(tmp_path):
    clip = tmp_path / "x.mp4"
    clip.write_bytes(b"")
    result = CliRunner().invoke(cli, ["eval", "fire", "--video", str(clip)])
    assert result.exit_code != 0 and "--video needs --label" in result.output


def bad_input(*args):
    result = CliRunner().invoke(cli, ["eval", *args])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.exception  # not a traceback
    return result.output


def test_bad_ground_truth_and_settings_get_one_line_errors_that_name_them(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    gt = tmp_path / "gt.json"
    gt.write_text("{}")
    assert f"{gt}: expected a non-empty object" in bad_input("crowd", "--images", str(images), "--gt", str(gt))
    gt.write_text('{"a.jpg": 3,\n "b.jpg": }')
    assert f"{gt}:2:" in bad_input("crowd", "--images", str(images), "--gt", str(gt))
    gt.write_text('{"a.jpg": "many"}')
    assert "a.jpg: count 'many' is not a number" in bad_input("crowd", "--images", str(images), "--gt", str(gt))
    labels = tmp_path / "labels.json"
    labels.write_text('{"a.jpg": "smoke"}')
    out = bad_input("fire", "--images", str(images), "--labels", str(labels))
    assert f"{labels}: a.jpg: label 'smoke'" in out
    gt.write_text('{"a.jpg": 3}')
    assert "--batch" in bad_input("crowd", "--images", str(images), "--gt", str(gt), "--batch", "0")
    assert "--threshold" in bad_input("crowd", "--images", str(images), "--gt", str(gt), "--threshold", "1.5")
    labels.write_text('{"a.jpg": "fire"}')
    out = bad_input("fire", "--images", str(images), "--labels", str(labels), "--confirm-k", "6")
    assert "confirm_k (6) must not exceed confirm_n (5)" in out
