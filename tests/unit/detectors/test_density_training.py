"""The head trainer on synthetic features: it learns counts it can see, CV never scores a training image."""

from __future__ import annotations

import numpy as np

from detectors.training.features import FeatureBank
from detectors.training.fit import TrainConfig
from detectors.training.report import write_report
from detectors.training.train import DevData, mall_blocks, mall_train_frames, run_fits, shb_folds


def _bank(rng: np.random.Generator, n: int) -> tuple[FeatureBank, np.ndarray]:
    """Feature maps where a 'person' is a stride-16 cell whose first stride-16 channel is high."""
    feat8 = rng.normal(0, 1, (n, 128, 8, 12)).astype(np.float16)
    feat16 = rng.normal(0, 1, (n, 128, 4, 6)).astype(np.float32)
    people = rng.random((n, 4, 6)) < rng.uniform(0.05, 0.6, (n, 1, 1))
    feat16[:, 0] += 4.0 * people
    feat16[:, 1] += 3.0 * people
    return FeatureBank(feat8, feat16.astype(np.float16)), people.sum(axis=(1, 2)).astype(np.float64)


def test_folds_hold_out_every_image_once_and_keep_a_gap_around_mall_blocks():
    folds = shb_folds(23, 5, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(23))
    blocks = mall_blocks(100, 5)
    assert [b.tolist()[0] for b in blocks] == [0, 20, 40, 60, 80]
    train = mall_train_frames(100, blocks[2])
    assert not set(train.tolist()) & set(range(40 - 8, 60 + 9))


def test_training_learns_visible_counts_and_exports(tmp_path):
    rng = np.random.default_rng(0)
    shb, shb_counts = _bank(rng, 100)
    mall, mall_counts = _bank(rng, 20)
    dev = DevData(shb, shb, mall, shb_counts, mall_counts, [f"IMG_{i}.jpg" for i in range(100)])
    cfg = TrainConfig(components=16, hidden=8, epochs=40, batch_images=8, lr=2e-2, whitening_cells=3000)
    cv, head, _ = run_fits(dev, cfg, folds=2, final=True, jobs=1)
    baseline = np.abs(shb_counts - shb_counts.mean()).mean()
    assert cv["shb"]["mae"] < 0.6 * baseline, (cv["shb"], baseline)
    assert len(cv["mall_predictions"]) == 20 and len(cv["folds"]) == 2
    pred = head.density(shb.feat8[:3], shb.feat16[:3]).sum(axis=(1, 2, 3))
    assert np.abs(pred - shb_counts[:3]).max() < 2.0
    write_report(tmp_path / "r.md", {"config": cfg.as_dict(), "cv": cv, "backbone": "b@1", "long_side": 1024,
                                      "mall_gap": 8, "mall_train_every": 3, "final_seconds": 1.0,
                                      "head": {"file": "x.onnx", "size": 1, "sha256": "0" * 64}})
    text = (tmp_path / "r.md").read_text()
    assert f"**{cv['shb']['mae']:.2f}**" in text and "2 folds" in text
    assert "`guanjia models train-crowd --cv 2 --epochs 40 --hidden 8 --components 16`" in text


def test_absolute_count_loss_also_learns_and_an_unknown_loss_is_refused():
    import pytest

    from detectors.training.fit import Part, fit_head, predict_counts

    rng = np.random.default_rng(1)
    bank, counts = _bank(rng, 60)
    parts = [Part(bank, np.arange(40), counts[:40])]
    cfg = TrainConfig(components=16, hidden=8, epochs=40, batch_images=8, lr=2e-2, whitening_cells=3000,
                      loss="absolute", huber_delta=2.0)
    head = fit_head(parts, cfg)
    pred = predict_counts(head, Part(bank, np.arange(40, 60), counts[40:]))
    baseline = np.abs(counts[40:] - counts[:40].mean()).mean()
    assert np.abs(pred - counts[40:]).mean() < 0.6 * baseline
    with pytest.raises(ValueError, match="loss must be"):
        fit_head(parts, TrainConfig(components=16, hidden=8, epochs=1, whitening_cells=3000, loss="squared"))
