"""Counting and classification metrics of the evaluation CLI."""

import json

import pytest

from detectors.evaluation import (
    binary_scores,
    count_errors,
    load_counts,
    load_fire_labels,
    natural_key,
    spread,
    sweep,
)


def test_count_errors():
    e = count_errors([10, 20, 30], [12, 17, 30])
    assert e.n == 3
    assert e.mae == pytest.approx(5 / 3)
    assert e.rmse == pytest.approx(((4 + 9) / 3) ** 0.5)
    assert e.bias == pytest.approx(-1 / 3)


def test_count_errors_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        count_errors([1, 2], [1])


def test_binary_scores_and_sweep():
    labels = [True, True, True, False, False]
    scores = [0.9, 0.6, 0.2, 0.7, 0.1]
    s = binary_scores(labels, scores, 0.5)
    assert (s.tp, s.fp, s.tn, s.fn) == (2, 1, 1, 1)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(2 / 3)
    assert s.fpr == pytest.approx(0.5)
    assert [x.tp for x in sweep(labels, scores, [0.1, 0.95])] == [3, 0]


def test_load_counts_accepts_both_layouts(tmp_path):
    flat = tmp_path / "a.json"
    flat.write_text(json.dumps({"IMG_1.jpg": 5}))
    nested = tmp_path / "b.json"
    nested.write_text(json.dumps({"video": "x.mp4", "fps": 2, "counts_by_frame_index": {"0": 3, "7": 4}}))
    assert load_counts(flat) == {"IMG_1.jpg": 5.0}
    assert load_counts(nested) == {"0": 3.0, "7": 4.0}


def test_fire_labels_reject_unknown_label(tmp_path):
    path = tmp_path / "l.json"
    path.write_text(json.dumps({"a.jpg": "fire", "b.jpg": "smoke"}))
    with pytest.raises(ValueError, match="b.jpg"):
        load_fire_labels(path)


def test_natural_sort_and_spread():
    names = sorted(["IMG_10.jpg", "IMG_2.jpg", "IMG_1.jpg"], key=natural_key)
    assert names == ["IMG_1.jpg", "IMG_2.jpg", "IMG_10.jpg"]
    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread([1, 2], None) == [1, 2]
