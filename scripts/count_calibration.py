"""A monotone count calibration of the density head's output, scored by nested CV (docs/accuracy.md, eleventh round).

Reads the held-out predictions that ``scripts/crowd_finetune.py evaluate`` stored (every image predicted by the
fold fit that never saw it) and asks whether ``g(p) = s1·min(p, k1) + s2·clip(p − k1, 0, k2 − k1) + s3·max(p − k2, 0)``
of the predicted count p, fitted on the other folds' held-out predictions by least absolute deviation, lowers the
error on each fold. ShanghaiTech-B and Mall count equally in the fit (the mean of the two sets' mean absolute errors).

    .venv/bin/python scripts/count_calibration.py --report finetune_cv.json --config D1
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.training import data
from detectors.training.fit import TrainConfig, errors
from detectors.training.train import mall_blocks, shb_folds
from scripts.script_args import SHARED_HELP, command_parser, parse_with_shared

FOLDS = 5
KNOTS = (100.0, 250.0)


def basis(pred: np.ndarray, knots: tuple[float, float] = KNOTS) -> np.ndarray:
    """(n, 3) hinge features of the predicted counts: the parts below, between and above the knots."""
    low, high = knots
    return np.stack([np.minimum(pred, low), np.clip(pred - low, 0, high - low), np.maximum(pred - high, 0)], axis=1)


def fit_lad(x: np.ndarray, y: np.ndarray, weights: np.ndarray, iterations: int = 200) -> np.ndarray:
    """Slopes minimising the weighted sum of absolute errors |x·s − y|, by iteratively reweighted least squares."""
    slopes = np.linalg.lstsq(x * np.sqrt(weights)[:, None], y * np.sqrt(weights), rcond=None)[0]
    for _ in range(iterations):
        w = weights / np.maximum(np.abs(x @ slopes - y), 1e-3)
        updated = np.linalg.solve((x * w[:, None]).T @ x, (x * w[:, None]).T @ y)
        if np.abs(updated - slopes).max() < 1e-9:
            return updated
        slopes = updated
    return slopes


def set_weights(n_shb: int, n_mall: int) -> np.ndarray:
    """Per-sample weights that make each set's mean absolute error count equally."""
    return np.concatenate([np.full(n_shb, 0.5 / n_shb), np.full(n_mall, 0.5 / n_mall)])


def main() -> None:
    parser, sub = command_parser(__doc__.splitlines()[0])
    p = sub.add_parser("nested")
    p.add_argument("--shared", help=SHARED_HELP)
    p.add_argument("--report", required=True, help="scripts/crowd_finetune.py evaluate's output")
    p.add_argument("--config", default="D1")
    p.add_argument("--out", help="write the figures as JSON here")
    args = parse_with_shared(parser)

    crowd = Path(args.shared) / "data" / "crowd"
    shb, _ = data.shanghaitech(crowd / "shanghaitech_B_train")
    mall, _ = data.mall(crowd / "mall_train")
    stored = json.loads(Path(args.report).read_text())[args.config]
    shb_pred = np.array([stored["shb_predictions"][key] for key in shb.keys], float)
    mall_pred = np.array(stored["mall_predictions"], float)
    shb_fold, mall_fold = np.full(len(shb_pred), -1), np.full(len(mall_pred), -1)
    for k, (s, m) in enumerate(zip(shb_folds(len(shb_pred), FOLDS, TrainConfig.seed), mall_blocks(len(mall_pred), FOLDS))):
        shb_fold[s], mall_fold[m] = k, k

    shb_cal, mall_cal = shb_pred.copy(), mall_pred.copy()
    slopes_per_fold = []
    for k in range(FOLDS):
        s_fit, m_fit = shb_fold != k, mall_fold != k
        x = basis(np.concatenate([shb_pred[s_fit], mall_pred[m_fit]]))
        y = np.concatenate([shb.counts[s_fit], mall.counts[m_fit]])
        slopes = fit_lad(x, y, set_weights(int(s_fit.sum()), int(m_fit.sum())))
        slopes_per_fold.append(slopes.round(4).tolist())
        shb_cal[shb_fold == k] = basis(shb_pred[shb_fold == k]) @ slopes
        mall_cal[mall_fold == k] = basis(mall_pred[mall_fold == k]) @ slopes
        print(f"fold {k + 1}: slopes {slopes.round(4).tolist()}  SHB {errors(shb_cal[shb_fold == k], shb.counts[shb_fold == k])['mae']:.3f}"
              f"  Mall {errors(mall_cal[mall_fold == k], mall.counts[mall_fold == k])['mae']:.3f}")
    everything = fit_lad(basis(np.concatenate([shb_pred, mall_pred])), np.concatenate([shb.counts, mall.counts]),
                         set_weights(len(shb_pred), len(mall_pred)))
    figures = {
        "knots": KNOTS,
        "held_out": {"shb": errors(shb_pred, shb.counts), "mall": errors(mall_pred, mall.counts)},
        "nested": {"shb": errors(shb_cal, shb.counts), "mall": errors(mall_cal, mall.counts)},
        "slopes_per_fold": slopes_per_fold,
        "slopes_all": everything.round(4).tolist(),
    }
    for name in ("held_out", "nested"):
        f = figures[name]
        print(f"{name:9s} SHB MAE {f['shb']['mae']:.4f} (RMSE {f['shb']['rmse']:.3f}, bias {f['shb']['bias']:+.3f})"
              f"  Mall MAE {f['mall']['mae']:.4f} (RMSE {f['mall']['rmse']:.3f}, bias {f['mall']['bias']:+.3f})")
    print("slopes fitted on all held-out predictions:", figures["slopes_all"])
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
