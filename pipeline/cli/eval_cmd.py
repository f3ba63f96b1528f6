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


def _checked(build):
    """``build()``, with a bad ground-truth file or setting turned into a one-line error that names it."""
    from pydantic import ValidationError

    from pipeline.config.errors import format_key_path

    try:
        return build()
    except ValidationError as exc:
        raise click.ClickException("; ".join(f"{format_key_path(e['loc']) or 'settings'}: {e['msg']}"
                                             for e in exc.errors())) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _runtime(max_batch: int, rect_letterbox: bool = True):
    from detectors.runtime import Runtime
    from detectors.settings import RuntimeSettings

    return Runtime(RuntimeSettings(max_batch=max_batch, rect_letterbox=rect_letterbox))


@eval_.command()
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder of images named as in --gt.")
@click.option("--video", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Video whose frame indexes are the --gt keys.")
@click.option("--gt", "gt_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON {"name": count} or {"counts_by_frame_index": {"0": count}}.')
@click.option("--estimator", type=click.Choice(sorted(CROWD_ESTIMATORS)), default="boxes", show_default=True)
@click.option("--model", default=None, help="Registry model (default: the CrowdSettings default).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Person score threshold (boxes).")
@click.option("--tiles", default="1x1", callback=_tiles, show_default=True, help="Overlapping tiles COLSxROWS merged by NMS.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate only N labelled items, spread evenly over the set (quick runs).")
@click.option("--batch", "max_batch", type=click.IntRange(min=1), default=8, show_default=True, help="Images per model call.")
@click.option("--square", is_flag=True, help="Letterbox into the model's full square input (runtime rect_letterbox: false).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write per-item name,truth,predicted,error.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def crowd(images, video, gt_path, estimator, model, threshold, tiles, limit, max_batch, square, csv_path, as_json) -> None:
    """Counting error (n, MAE, RMSE, bias) of a crowd estimator on labelled images or a labelled video.

    \b
    Example:
      guanjia eval crowd --video ../shared/data/crowd/mall_train/mall_train_2fps.mp4 --gt ../shared/data/crowd/mall_train/gt_counts.json --limit 50
    """
    from detectors.evaluation import count_errors, load_counts, natural_key, spread
    from detectors.plugins import build_crowd_estimator
    from detectors.registry import ModelRegistry
    from detectors.settings import CrowdSettings

    if bool(images) == bool(video):
        raise click.UsageError("give exactly one of --images or --video")
    gt = _checked(lambda: load_counts(gt_path))
    names = spread(sorted(gt, key=natural_key), limit)
    settings = _checked(lambda: CrowdSettings(score_threshold=threshold, tiles=tiles, **({"model": model} if model else {})))
    runtime = _runtime(max_batch, rect_letterbox=not square)
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
        _write_csv(csv_path, ["name", "truth", "predicted", "error"],
                   ([n, t, round(p, 3), round(p - t, 3)] for n, t, p in zip(used, truth, predicted)))
    result = {"estimator": estimator, "model": est.model_id, "threshold": threshold, "tiles": f"{tiles[0]}x{tiles[1]}",
              **asdict(errors), "images_per_s": len(used) / elapsed, "source": str(images or video)}
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{est.model_id} ({estimator}, threshold {threshold}, tiles {result['tiles']}) on {result['source']}")
    click.echo(f"n={errors.n}  MAE={errors.mae:.2f}  RMSE={errors.rmse:.2f}  bias={errors.bias:+.2f}  "
               f"mean truth={errors.mean_truth:.1f}  mean predicted={errors.mean_predicted:.1f}  ({result['images_per_s']:.1f} images/s)")


@eval_.command()
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder of images named as in --labels.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON {"name": "fire" | "no_fire"} (with --images).')
@click.option("--video", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A video whose frames all have --label.")
@click.option("--label", type=click.Choice(["fire", "no_fire"]), help="Label of every frame of --video.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True, help="Video: score every Nth frame (the analysed frames).")
@click.option("--scorer", type=click.Choice(sorted(FIRE_SCORERS)), default="classifier", show_default=True)
@click.option("--model", default=None, help="Registry model (default: the FireSettings default).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="P(fire) at or above which an image counts as fire.")
@click.option("--confirm-k", type=click.IntRange(min=1), default=3, show_default=True, help="Video: frames at or above threshold that confirm ...")
@click.option("--confirm-n", type=click.IntRange(min=1), default=5, show_default=True, help="... within the last this many analysed frames.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate only N labelled images, spread evenly over the set.")
@click.option("--batch", "max_batch", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write per-image name,label,score.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def fire(images, labels, video, label, every, scorer, model, threshold, confirm_k, confirm_n, limit, max_batch,
         csv_path, as_json) -> None:
    """Precision, recall, F1 and false-positive rate of a fire scorer, with a threshold sweep.

    With --video and --label it scores the analysed frames of a clip whose frames all share one label
    and adds the k-of-n confirmation a camera would see (frames confirmed, first confirmed frame).

    \b
    Example:
      guanjia eval fire --images ../shared/data/fire/cair_dev --labels ../shared/data/fire/cair_dev/labels.json
    """
    from detectors.evaluation import binary_scores, load_fire_labels, natural_key, spread, sweep
    from detectors.fire import FireConfirmer
    from detectors.plugins import build_fire_scorer
    from detectors.registry import ModelRegistry
    from detectors.settings import FireSettings

    if video:
        if images or labels or not label:
            raise click.UsageError("--video needs --label and no --images/--labels")
        truth = None
        items = _video_batches(video, None, max_batch, every)
    else:
        if not (images and labels):
            raise click.UsageError("give --images with --labels, or --video with --label")
        truth = _checked(lambda: load_fire_labels(labels))
        items = _image_batches(images, spread(sorted(truth, key=natural_key), limit), max_batch)
    settings = _checked(lambda: FireSettings(scorer=scorer, threshold=threshold, confirm_k=confirm_k, confirm_n=confirm_n,
                                             **({"model": model} if model else {})))
    runtime = _runtime(max_batch)
    sc = _load("fire scorer", lambda: build_fire_scorer(scorer, ModelRegistry.load(), settings, runtime))
    used, scores = [], []
    start = time.perf_counter()
    for batch_names, batch_images in items:
        used.extend(batch_names)
        scores.extend(s for s, _ in sc.score(batch_images))
    elapsed = time.perf_counter() - start
    if not used:
        raise click.ClickException("no labelled image was found")
    y = [truth[n] for n in used] if truth is not None else [label == "fire"] * len(used)
    at = binary_scores(y, scores, threshold)
    curve = sweep(y, scores, SWEEP)
    best = max(curve, key=lambda s: s.f1)
    if csv_path:
        _write_csv(csv_path, ["name", "label", "p_fire"],
                   ([n, "fire" if fire_ else "no_fire", round(s, 4)] for n, fire_, s in zip(used, y, scores)))
    result = {"scorer": scorer, "model": sc.model_id, "n": len(used), "positives": int(sum(y)), **at.as_dict(),
              "best_f1_threshold": best.threshold, "best_f1": best.f1,
              "sweep": [s.as_dict() for s in curve], "images_per_s": len(used) / elapsed,
              "source": str(video or images)}
    if video:
        confirmer = FireConfirmer(settings)
        confirmed = [confirmer.update(s) for s in scores]
        first = next((used[i] for i, c in enumerate(confirmed) if c), None)
        result |= {"label": label, "every": every, "confirm": f"{confirm_k} of {confirm_n}",
                   "confirmed_frames": int(sum(confirmed)), "confirmed_fraction": sum(confirmed) / len(used),
                   "first_confirmed_frame": None if first is None else int(first)}
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{sc.model_id} ({scorer}) on {result['source']}: n={len(used)} ({result['positives']} fire)")
    click.echo(f"threshold {threshold}: precision={at.precision:.3f} recall={at.recall:.3f} F1={at.f1:.3f} "
               f"FPR={at.fpr:.3f} (TP {at.tp} FP {at.fp} TN {at.tn} FN {at.fn})")
    if video:
        click.echo(f"confirmed ({result['confirm']}) on {result['confirmed_frames']} of {len(used)} analysed frames; "
                   f"first confirmed at frame {result['first_confirmed_frame']}")
    click.echo("threshold  precision  recall  F1     FPR")
    for s in curve:
        click.echo(f"{s.threshold:9.2f}  {s.precision:9.3f}  {s.recall:6.3f}  {s.f1:5.3f}  {s.fpr:5.3f}")
    click.echo(f"best F1 {best.f1:.3f} at threshold {best.threshold}  ({result['images_per_s']:.1f} images/s)")


def _write_csv(path: Path, header: list[str], rows) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


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


def _video_batches(path: Path, names: list[str] | None, size: int, every: int = 1) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    """Decoded BGR frames in batches, named by frame index: the indexes in ``names``, or every ``every``-th frame."""
    import av

    wanted = set(names) if names is not None else None
    batch_names, batch = [], []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            name = str(index)
            if (name not in wanted) if wanted is not None else (index % every):
                continue
            batch_names.append(name)
            batch.append(frame.to_ndarray(format="bgr24"))
            if len(batch) == size:
                yield batch_names, batch
                batch_names, batch = [], []
            if wanted is not None:
                wanted.discard(name)
                if not wanted:
                    break
    if batch:
        yield batch_names, batch
