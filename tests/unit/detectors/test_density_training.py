"""The head trainer on synthetic features: it learns counts it can see, CV never scores a training image."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from detectors.training.features import FeatureBank
from detectors.training.fit import TrainConfig
from detectors.training.report import write_report
from detectors.training.train import (
    DevData,
    mall_blocks,
    mall_train_frames,
    run_fits,
    shb_folds,
    training_indices,
)

PLAIN = {"stride32": False, "aug_scales": (), "heads": 1, "spatial_heads": 0}  # synthetic banks: stride-8/16 features, one scale; one MLP


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
    assert train.tolist()[:3] == [0, 3, 6]
    every = mall_train_frames(100, blocks[2], every=1)
    assert set(every.tolist()) == set(range(100)) - set(range(40 - 8, 59 + 8 + 1))
    shb_train, mall_train = training_indices("fold2", 23, 100, 5, seed=1)
    assert set(shb_train.tolist()) == set(range(23)) - set(folds[2].tolist())
    assert mall_train.tolist() == train.tolist()
    assert [len(a) for a in training_indices("shb_only", 23, 100, 5, seed=1)] == [23, 0]
    assert training_indices("final", 23, 100, 5, seed=1)[1].tolist() == list(range(0, 100, 3))


def test_training_learns_visible_counts_and_exports(tmp_path):
    rng = np.random.default_rng(0)
    shb, shb_counts = _bank(rng, 100)
    mall, mall_counts = _bank(rng, 20)
    dev = DevData(shb, shb, mall, shb_counts, mall_counts, [f"IMG_{i}.jpg" for i in range(100)])
    cfg = TrainConfig(components=16, hidden=8, epochs=40, batch_images=8, lr=2e-2, whitening_cells=3000, **PLAIN)
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
                      loss="absolute", huber_delta=2.0, **PLAIN)
    head = fit_head(parts, cfg)
    pred = predict_counts(head, Part(bank, np.arange(40, 60), counts[40:]))
    baseline = np.abs(counts[40:] - counts[:40].mean()).mean()
    assert np.abs(pred - counts[40:]).mean() < 0.6 * baseline
    with pytest.raises(ValueError, match="loss must be"):
        fit_head(parts, TrainConfig(components=16, hidden=8, epochs=1, whitening_cells=3000, loss="squared", **PLAIN))


def test_an_ensemble_keeps_member_zero_as_the_single_head_and_averages_the_members():
    from detectors.training.fit import Part, fit_head, predict_counts

    rng = np.random.default_rng(2)
    bank, counts = _bank(rng, 50)
    parts = [Part(bank, np.arange(40), counts[:40])]
    cfg = TrainConfig(components=16, hidden=8, epochs=5, batch_images=8, lr=2e-2, whitening_cells=3000, **PLAIN)
    single, pair = fit_head(parts, cfg), fit_head(parts, TrainConfig(**(cfg.as_dict() | {"heads": 2})))
    assert len(pair.mlps) == 2
    np.testing.assert_array_equal(single.mlps[0].w1, pair.mlps[0].w1)  # member 0 = the heads=1 recipe
    assert np.abs(pair.mlps[0].w1 - pair.mlps[1].w1).max() > 1e-3
    held = Part(bank, np.arange(40, 50), counts[40:])
    members = [predict_counts(type(pair)(pair.whitening, [m]), held) for m in pair.mlps]
    np.testing.assert_allclose(predict_counts(pair, held), np.mean(members, axis=0), rtol=1e-5)


def test_stride32_cells_learn_counts_that_only_the_stride32_features_show():
    from detectors.training.fit import Part, fit_head, predict_counts

    rng = np.random.default_rng(3)
    n = 60
    feat8 = rng.normal(0, 1, (n, 128, 8, 12)).astype(np.float16)
    feat16 = rng.normal(0, 1, (n, 128, 4, 6)).astype(np.float16)
    people = rng.integers(0, 3, (n, 2, 3))  # per stride-32 cell, spread over its 2×2 stride-16 cells
    feat32 = rng.normal(0, 0.3, (n, 128, 2, 3)).astype(np.float32)
    feat32[:, 0] += 3.0 * people
    bank, counts = FeatureBank(feat8, feat16, feat32.astype(np.float16)), people.sum(axis=(1, 2)).astype(np.float64)
    train, held = Part(bank, np.arange(45), counts[:45]), Part(bank, np.arange(45, n), counts[45:])
    cfg = TrainConfig(components=16, hidden=8, epochs=60, batch_images=8, lr=2e-2, whitening_cells=3000, stride32=True,
                      aug_scales=(), heads=1, spatial_heads=0)
    head = fit_head([train], cfg)
    blind = fit_head([train], TrainConfig(**(cfg.as_dict() | {"stride32": False})))
    assert head.stride32 and not blind.stride32
    mae, blind_mae = (np.abs(predict_counts(h, held) - counts[45:]).mean() for h in (head, blind))
    assert mae < 0.5 * blind_mae, (mae, blind_mae)


def test_scale_augmentation_teaches_the_head_the_denser_cells_of_smaller_images():
    from detectors.training.fit import Part, fit_head, predict_counts

    rng = np.random.default_rng(4)
    n = 80
    people = rng.random((n, 4, 6)) < rng.uniform(0.1, 0.7, (n, 1, 1))  # at most one person per cell at full scale

    def bank(cells: np.ndarray) -> FeatureBank:
        h, w = cells.shape[1:]
        feat16 = rng.normal(0, 0.5, (n, 128, h, w)).astype(np.float32)
        feat16[:, 0] += 2.0 * cells
        return FeatureBank(rng.normal(0, 0.5, (n, 128, 2 * h, 2 * w)).astype(np.float16), feat16.astype(np.float16))

    full, half = bank(people.astype(float)), bank(people.reshape(n, 2, 2, 3, 2).sum(axis=(2, 4)).astype(float))
    counts = people.sum(axis=(1, 2)).astype(np.float64)
    train = np.arange(60)
    cfg = TrainConfig(components=16, hidden=8, epochs=40, batch_images=8, lr=2e-2, whitening_cells=3000, **PLAIN)
    plain = fit_head([Part(full, train, counts[train])], cfg)
    augmented = fit_head([Part(full, train, counts[train])], TrainConfig(**(cfg.as_dict() | {"aug_scales": (0.5,)})),
                         [[Part(half, train, counts[train])]])
    held = Part(half, np.arange(60, n), counts[60:])
    plain_mae, aug_mae = (np.abs(predict_counts(h, held) - counts[60:]).mean() for h in (plain, augmented))
    assert aug_mae < 0.5 * plain_mae, (aug_mae, plain_mae)


def test_fits_refuse_data_loaded_for_other_scales_than_the_config():
    import pytest

    rng = np.random.default_rng(5)
    shb, counts = _bank(rng, 10)
    dev = DevData(shb, shb, shb, counts, counts, [f"IMG_{i}.jpg" for i in range(10)])
    with pytest.raises(ValueError, match="extra scales"):
        run_fits(dev, TrainConfig(aug_scales=(0.5,)), folds=2, final=False)


def test_blank_frames_join_every_fit_with_count_zero():
    from detectors.training import data
    from detectors.training.train import training_parts

    frames = list(data.blank_frames(3, 8, 12))
    assert [int(f[0, 0, 0]) for f in frames] == [0, 128, 255] and all(f.std() == 0 for f in frames)
    rng = np.random.default_rng(6)
    shb, counts = _bank(rng, 10)
    blank, _ = _bank(rng, 3)
    dev = DevData(shb, shb, shb, counts, counts, [f"IMG_{i}.jpg" for i in range(10)], blank=blank)
    parts = training_parts(dev, np.arange(5), np.array([], int))
    assert parts[-1].bank is blank and parts[-1].counts.tolist() == [0, 0, 0] and len(parts) == 3


def test_a_mixed_ensemble_is_the_members_of_the_two_single_kind_ensembles():
    import pytest

    from detectors.training.fit import Part, fit_head

    rng = np.random.default_rng(3)
    bank, counts = _bank(rng, 40)
    parts = [Part(bank, np.arange(40), counts)]
    cfg = TrainConfig(components=8, hidden=4, epochs=2, batch_images=8, lr=2e-2, whitening_cells=2000, **PLAIN)
    per_cell = fit_head(parts, cfg)
    spatial = fit_head(parts, replace(cfg, heads=0, spatial_heads=1))
    mixed = fit_head(parts, replace(cfg, heads=1, spatial_heads=1))
    assert [m.kernel for m in mixed.mlps] == [1, 3] and spatial.mlps[0].kernel == 3
    for got, want in ((mixed.mlps[0], per_cell.mlps[0]), (mixed.mlps[1], spatial.mlps[0])):
        for a, b in zip(got.params(), want.params()):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="at least one MLP"):
        replace(cfg, heads=0, spatial_heads=0)
    with pytest.raises(ValueError, match="mall_every"):
        replace(cfg, mall_every=0)


def test_a_spatial_head_counts_what_only_a_cell_and_its_neighbour_together_show():
    from detectors.training.fit import train_mlp

    rng = np.random.default_rng(7)
    n, h, w = 120, 6, 8
    a, b = rng.random((n, h, w)) < 0.4, rng.random((n, h, w)) < 0.5
    people = a & np.pad(b, ((0, 0), (0, 0), (0, 1)))[:, :, 1:]  # a person: 'a' in a cell and 'b' in the cell to its right
    z = rng.normal(0, 0.3, (n, h * w, 4)).astype(np.float32)
    z[..., 0] += 2.0 * a.reshape(n, -1)
    z[..., 1] += 2.0 * b.reshape(n, -1)
    counts = people.sum(axis=(1, 2)).astype(np.float64)
    fits = {}
    for kernel in (1, 3):
        cfg = TrainConfig(components=4, hidden=8, epochs=200, lr=2e-2, **PLAIN)
        mlp = train_mlp([(z, counts, (h, w))], cfg, np.random.default_rng(1), kernel)
        fits[kernel] = np.abs(mlp(z, (h, w)).sum(axis=1) - counts).mean()
    assert fits[3] < 0.5 * fits[1], fits  # the per-cell head cannot tell which 'a' cells have a 'b' beside them


def test_train_crowd_cli_parses_its_recipe_overrides():
    import click
    import pytest

    from pipeline.cli.train_cmd import _scales

    assert _scales(None) is None and _scales("") == () and _scales("0.5, 0.625,0.8") == (0.5, 0.625, 0.8)
    for bad in ("1.5", "0", "half"):
        with pytest.raises(click.BadParameter):
            _scales(bad)


def test_train_crowd_never_writes_over_the_shipped_head_unless_told():
    from pipeline.cli.train_cmd import train_crowd

    out = next(p for p in train_crowd.params if p.name == "out")
    assert out.default is None and ".cache/trained" in out.help
