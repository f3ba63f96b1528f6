"""``guanjia eval``: accuracy of the crowd estimators and fire scorers on labelled images or video."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np

from detectors.plugins import CROWD_ESTIMATORS, FIRE_SCORERS

SWEEP = [round(t, 2) for t in np.arange(0.1, 0.951, 0.05)]


@click.group(name="eval")
def eval_() -> None:
    """Measure detector accuracy against ground truth (figures go in docs/accuracy.md).

    \b
    Example:
      guanjia eval crowd --images ../shared/data/crowd/shanghaitech_B_train/images \\
          --gt ../shared/data/crowd/shanghaitech_B_train/gt_counts.json --limit 50
      guanjia eval fire --images ../shared/data/fire/cair_dev/images --labels ../shared/data/fire/cair_dev/labels.json
    """


def _tiles(_ctx, _param, value: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in value.lower().split("x"))
        if cols < 1 or rows < 1:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r} is not COLSxROWS, e.g. 2x2") from None
    return cols, rows


def _load(kind: str, build):
    from detectors.plugins import PluginError
    from detectors.registry import ModelError

    try:
        return build()
    except (ModelError, PluginError) as exc:
        raise click.ClickException(f"{kind}: {exc}") from None


def _runtime(max_batch: int):
    from detectors.runtime import Runtime
    from detectors.settings import RuntimeSettings

    return Runtime(RuntimeSettings(max_batch=max_batch))


@eval_.command()
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder of images named as in --gt.")
@click.option("--video", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Video whose frame indexes are the --gt keys.")
@click.option("--gt", "gt_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON {"name": count} or {"counts_by_frame_index": {"0": count}}.')
@click.option("--estimator", type=click.Choice(sorted(CROWD_ESTIMATORS)), default="boxes", show_default=True)
@click.option("--model", default=None, help="Registry model (default: the CrowdSettings default).")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="Person score threshold (boxes).")
@click.option("--tiles", default="1x1", callback=_tiles, show_default=True, help="Overlapping tiles COLSxROWS merged by NMS.")
@click.option("--limit", type=int, default=None, help="Evaluate only N labelled items, spread evenly over the set (quick runs).")
@click.option("--batch", "max_batch", type=int, default=8, show_default=True, help="Images per model call.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write per-item name,truth,predicted,error.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def crowd(images, video, gt_path, estimator, model, threshold, tiles, limit, max_batch, csv_path, as_json) -> None:
    """Counting error (n, MAE, RMSE, bias) of a crowd estimator on labelled images or a labelled video."""
    from detectors.evaluation import count_errors, load_counts, natural_key, spread
    from detectors.plugins import build_crowd_estimator
    from detectors.registry import ModelRegistry
    from detectors.settings import CrowdSettings

    if bool(images) == bool(video):
        raise click.UsageError("give exactly one of --images or --video")
    gt = load_counts(gt_path)
    names = spread(sorted(gt, key=natural_key), limit)
    settings = CrowdSettings(score_threshold=threshold, tiles=tiles, **({"model": model} if model else {}))
    runtime = _runtime(max_batch)
    est = _load("crowd estimator", lambda: build_crowd_estimator(estimator, ModelRegistry.load(), settings, runtime))
    items = _image_batches(images, names, max_batch) if images else _video_batches(video, names, max_batch)
    truth, predicted, used = [], [], []
    start = time.perf_counter()
    for batch_names, batch_images in items:
        for name, estimate in zip(batch_names, est.estimate(batch_images)):
            count = float(estimate.density.sum()) if estimate.density is not None else float(len(estimate.boxes))
            used.append(name)
            truth.append(gt[name])
            predicted.append(count)
    elapsed = time.perf_counter() - start
    if not used:
        raise click.ClickException("no labelled item was found")
    errors = count_errors(truth, predicted)
    if csv_path:
        with csv_path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["name", "truth", "predicted", "error"])
            for n, t, p in zip(used, truth, predicted):
                writer.writerow([n, t, round(p, 3), round(p - t, 3)])
    result = {"estimator": estimator, "model": est.model_id, "threshold": threshold, "tiles": f"{tiles[0]}x{tiles[1]}",
              **asdict(errors), "images_per_s": len(used) / elapsed, "source": str(images or video)}
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{est.model_id} ({estimator}, threshold {threshold}, tiles {result['tiles']}) on {result['source']}")
    click.echo(f"n={errors.n}  MAE={errors.mae:.2f}  RMSE={errors.rmse:.2f}  bias={errors.bias:+.2f}  "
               f"mean truth={errors.mean_truth:.1f}  mean predicted={errors.mean_predicted:.1f}  ({result['images_per_s']:.1f} images/s)")


@eval_.command()
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--labels", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON {"name": "fire" | "no_fire"}.')
@click.option("--scorer", type=click.Choice(sorted(FIRE_SCORERS)), default="classifier", show_default=True)
@click.option("--model", default=None, help="Registry model (default: the FireSettings default).")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="P(fire) at or above which an image counts as fire.")
@click.option("--limit", type=int, default=None, help="Evaluate only N labelled images, spread evenly over the set.")
@click.option("--batch", "max_batch", type=int, default=8, show_default=True)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write per-image name,label,score.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def fire(images, labels, scorer, model, threshold, limit, max_batch, csv_path, as_json) -> None:
    """Precision, recall, F1 and false-positive rate of a fire scorer, with a threshold sweep."""
    from detectors.evaluation import binary_scores, load_fire_labels, natural_key, spread, sweep
    from detectors.plugins import build_fire_scorer
    from detectors.registry import ModelRegistry
    from detectors.settings import FireSettings

    truth = load_fire_labels(labels)
    names = spread(sorted(truth, key=natural_key), limit)
    settings = FireSettings(scorer=scorer, threshold=threshold, **({"model": model} if model else {}))
    runtime = _runtime(max_batch)
    sc = _load("fire scorer", lambda: build_fire_scorer(scorer, ModelRegistry.load(), settings, runtime))
    used, scores = [], []
    start = time.perf_counter()
    for batch_names, batch_images in _image_batches(images, names, max_batch):
        used.extend(batch_names)
        scores.extend(s for s, _ in sc.score(batch_images))
    elapsed = time.perf_counter() - start
    if not used:
        raise click.ClickException("no labelled image was found")
    y = [truth[n] for n in used]
    at = binary_scores(y, scores, threshold)
    curve = sweep(y, scores, SWEEP)
    best = max(curve, key=lambda s: s.f1)
    if csv_path:
        with csv_path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["name", "label", "p_fire"])
            for n, label, s in zip(used, y, scores):
                writer.writerow([n, "fire" if label else "no_fire", round(s, 4)])
    result = {"scorer": scorer, "model": sc.model_id, "n": len(used), "positives": int(sum(y)), **at.as_dict(),
              "best_f1_threshold": best.threshold, "best_f1": best.f1,
              "sweep": [s.as_dict() for s in curve], "images_per_s": len(used) / elapsed}
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{sc.model_id} ({scorer}) on {images}: n={len(used)} ({result['positives']} fire)")
    click.echo(f"threshold {threshold}: precision={at.precision:.3f} recall={at.recall:.3f} F1={at.f1:.3f} "
               f"FPR={at.fpr:.3f} (TP {at.tp} FP {at.fp} TN {at.tn} FN {at.fn})")
    click.echo("threshold  precision  recall  F1     FPR")
    for s in curve:
        click.echo(f"{s.threshold:9.2f}  {s.precision:9.3f}  {s.recall:6.3f}  {s.f1:5.3f}  {s.fpr:5.3f}")
    click.echo(f"best F1 {best.f1:.3f} at threshold {best.threshold}  ({result['images_per_s']:.1f} images/s)")


def _image_batches(folder: Path, names: list[str], size: int) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    import cv2

    batch_names, batch = [], []
    for name in names:
        image = cv2.imread(str(folder / name))
        if image is None:
            click.echo(f"skipped {name}: missing or unreadable in {folder}", err=True)
            continue
        batch_names.append(name)
        batch.append(image)
        if len(batch) == size:
            yield batch_names, batch
            batch_names, batch = [], []
    if batch:
        yield batch_names, batch


def _video_batches(path: Path, names: list[str], size: int) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    import av

    wanted = set(names)
    batch_names, batch = [], []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if str(index) not in wanted:
                continue
            batch_names.append(str(index))
            batch.append(frame.to_ndarray(format="bgr24"))
            wanted.discard(str(index))
            if len(batch) == size:
                yield batch_names, batch
                batch_names, batch = [], []
            if not wanted:
                break
    if batch:
        yield batch_names, batch
