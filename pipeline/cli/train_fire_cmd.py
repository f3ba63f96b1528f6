"""``guanjia models train-fire``: cross-validate and train the fire head on CAIR dev (numpy only, seconds)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

REPO_ROOT = Path(__file__).resolve().parents[2]
SWEEP = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)


def _default_cair() -> Path:
    return Path(os.environ.get("GUANJIA_SHARED_DIR", REPO_ROOT.parent / "shared")) / "data" / "fire" / "cair_dev"


@click.command("train-fire")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of labelled images (default: ../shared/data/fire/cair_dev/images).")
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help='JSON {"name": "fire" | "no_fire"} (default: cair_dev/labels.json).')
@click.option("--folds", type=click.IntRange(2, 20), default=5, show_default=True, help="Stratified folds.")
@click.option("--repeats", type=click.IntRange(1, 50), default=5, show_default=True, help="CV repeats, seeds seed..seed+repeats-1.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--l2", type=float, default=0.3, show_default=True, help="L2 penalty on the standardised weights.")
@click.option("--blend", type=click.FloatRange(0, 1), default=0.8, show_default=True,
              help="Weight of the head's logit against OnFire's (1: head alone).")
@click.option("--offset", type=float, default=1.5, show_default=True,
              help="Added to the blended fire logit (0 with --blend 1: the head alone).")
@click.option("--select", "select_", is_flag=True,
              help="Pick --blend/--offset on a grid: best out-of-fold F1 at FPR <= 0.05 that keeps the does-not-break checks.")
@click.option("--nested", is_flag=True, help="Also measure that pick by nested CV (minutes).")
@click.option("--views", default="O", show_default=True,
              help="Test-time views the scorer averages, comma-separated: O (as is), F (flipped), tl/tr/bl/br/c (corners "
                   "and centre at 0.8 scale), Ftl/Ftr/Fbl/Fbr/Fc (the same of the flipped input); all: every one.")
@click.option("--fit", "fit_on", type=click.Choice(["mean", "copies", "first"]), default="mean", show_default=True,
              help="Fit the head on the views' mean, on one training copy per view (in its image's fold), or on the "
                   "first view only.")
@click.option("--pool", type=click.Choice(["mean", "max"]), default="mean", show_default=True,
              help="Pool the views' features by mean (exported) or max (CV only; OnFire's logit still averaged).")
@click.option("--nested-threshold", "nested_thr", is_flag=True,
              help="Also measure --blend/--offset with the threshold picked in-fold (best F1 at FPR <= 0.05; no checks).")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="P(fire) at or above which an image counts as fire.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write fire_head.onnx and fire_figures.json here (e.g. models/trained); default: CV only.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the figures.")
def train_fire(images, labels, folds, repeats, seed, l2, blend, offset, select_, nested, views, fit_on, pool,
               nested_thr, threshold, out, as_json) -> None:
    """Print k-fold figures of the fire head next to OnFire alone, then (with --out) train it on all images and export it.

    Every image is scored only by heads trained on the other folds.

    \b
    Example:
      guanjia models train-fire                      # 5 folds x 5 repeats, figures only
      guanjia models train-fire --out models/trained # and write the head
      guanjia models train-fire --select --nested    # pick blend/offset under the checks, measure the pick
      guanjia models train-fire --views O,F --fit copies --select --nested   # flip TTA, flipped training copies
    """
    import numpy as np

    from detectors.evaluation import binary_scores, load_fire_labels, natural_key
    from detectors.fire_tuned import BACKBONE_MODEL, VIEWS, build_head
    from detectors.registry import ModelError, ModelRegistry, sha256_file
    from detectors.training.data import iter_images
    from detectors.training.fire_head import (
        FeatureExtractor,
        cross_validate,
        fit_rows,
        load_checks,
        nested_selection,
        nested_threshold,
        out_of_fold_logits,
        pool_views,
        select_blend,
    )

    view_list = VIEWS if views == "all" else tuple(v.strip() for v in views.split(",") if v.strip())
    if not view_list or any(v not in VIEWS for v in view_list):
        raise click.ClickException(f"--views {views!r}: expected a comma-separated subset of {', '.join(VIEWS)} (or all)")
    if pool == "max" and out is not None:
        raise click.ClickException("--pool max is for cross-validation only: the exported head averages the views")
    cair = _default_cair()
    images = images or cair / "images"
    labels = labels or cair / "labels.json"
    for path in (images, labels):
        if not path.exists():
            raise click.ClickException(f"{path} is absent: the labelled fire images are needed")
    try:
        registry = ModelRegistry.load()
        backbone = registry.locate(BACKBONE_MODEL)
        truth = load_fire_labels(labels)
        names = sorted(truth, key=natural_key)
        extractor = FeatureExtractor(backbone.read_bytes(), registry.spec(BACKBONE_MODEL).input, views=view_list,
                                     pool=pool)
        per_view = extractor.view_features(iter_images(images, names))
    except (ModelError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    x = pool_views(per_view, pool)  # what the scorer's head reads
    rows = {"mean": None, "copies": per_view, "first": per_view[0]}[fit_on]  # what the head is fitted on
    y = np.array([truth[n] for n in names])
    checks, full_head = None, None  # full_head: the head fitted on every image, fitted at most once
    if select_ or nested:
        try:
            checks = load_checks(cair.parents[2], extractor)
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"does-not-break checks: {exc}") from None
    if select_:
        head_logits = np.concatenate([out_of_fold_logits(x, y, folds=folds, seed=seed + r, l2=l2, train_rows=rows)
                                      for r in range(repeats)])
        full_head = fit_rows(x if rows is None else rows, y, np.ones(len(y), bool), l2)
        try:
            blend, offset = select_blend(head_logits, np.tile(x[:, -1].astype(np.float64), repeats), np.tile(y, repeats),
                                         full_head.logit(checks.features), checks, threshold)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    fold_results, oof = cross_validate(x, y, folds=folds, repeats=repeats, seed=seed, l2=l2, threshold=threshold,
                                       blend=blend, offset=offset, train_rows=rows)
    baseline_p = 1.0 / (1.0 + np.exp(x[:, -1].astype(np.float64)))

    def pooled(scores) -> dict:
        """Per-repeat figures over all images (each scored out of fold), averaged over repeats."""
        runs = [binary_scores(y.tolist(), s.tolist(), t) for s, t in scores]
        keys = ("precision", "recall", "f1", "fpr")
        return {k: float(np.mean([getattr(r, k) for r in runs])) for k in keys} | {
            "tp": float(np.mean([r.tp for r in runs])), "fp": float(np.mean([r.fp for r in runs]))}

    result = {
        "backbone": registry.model_id(BACKBONE_MODEL), "n": len(y), "positives": int(y.sum()),
        "folds": folds, "repeats": repeats, "seed": seed, "l2": l2, "blend": blend, "offset": offset, "threshold": threshold,
        "views": list(view_list), "fit": fit_on, "pool": pool,
        "fold_figures": [{"repeat": f.repeat, "fold": f.fold, "head": f.head.as_dict(), "baseline": f.baseline.as_dict()}
                         for f in fold_results],
        "cv": {str(t): pooled([(p, t) for p in oof]) for t in SWEEP},
        "baseline": {str(t): pooled([(baseline_p, t)]) for t in SWEEP},
        "cv_fold_f1_mean": float(np.mean([f.head.f1 for f in fold_results])),
        "cv_fold_f1_std": float(np.std([f.head.f1 for f in fold_results])),
        "selected": bool(select_),
    }
    if nested:
        nested_p, picks = nested_selection(x, y, checks, folds=folds, repeats=repeats, seed=seed, l2=l2,
                                           threshold=threshold, train_rows=rows)
        result["nested"] = pooled([(p, threshold) for p in nested_p]) | {
            "picks": picks, "folds_without_pick": sum(p is None for p in picks)}
    if nested_thr:
        thr_p, shifts = nested_threshold(x, y, folds=folds, repeats=repeats, seed=seed, l2=l2, blend=blend,
                                         offset=offset, train_rows=rows)
        result["nested_threshold"] = pooled([(p, 0.5) for p in thr_p]) | {"shifts": shifts}
    if out is not None:
        head = full_head if full_head is not None else fit_rows(x if rows is None else rows, y, np.ones(len(y), bool), l2)
        meta = {"trained_on": f"{labels.parent.name}/{labels.name} ({len(y)} images, {int(y.sum())} fire)", "l2": l2, "threshold": threshold,
                "features": "mean+max of OnFire conv5 and stage4 maps, OnFire nofire_logit",
                "licence": "Apache-2.0 (project-trained head)"}
        out.mkdir(parents=True, exist_ok=True)
        path = out / "fire_head.onnx"
        if fit_on != "mean":
            meta["fit"] = fit_on
        path.write_bytes(build_head(head.weights, head.bias, blend, meta, offset=offset, views=view_list).SerializeToString())
        result["head"] = {"file": str(path), "size": path.stat().st_size, "sha256": sha256_file(path)}
        (out / "fire_figures.json").write_text(json.dumps(result, indent=1) + "\n")
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{result['n']} images ({result['positives']} fire), {folds} folds x {repeats} repeats, l2={l2}, "
               f"blend {blend}, offset {offset}, threshold {threshold}, views {','.join(view_list)} (fit: {fit_on})")
    click.echo("repeat fold   head: P     R     F1    FPR  | OnFire: P     R     F1    FPR")
    for f in fold_results:
        h, b = f.head, f.baseline
        click.echo(f"{f.repeat:6d} {f.fold:4d}  {h.precision:10.3f} {h.recall:5.3f} {h.f1:5.3f} {h.fpr:5.3f}"
                   f" | {b.precision:11.3f} {b.recall:5.3f} {b.f1:5.3f} {b.fpr:5.3f}")
    click.echo(f"fold F1 {result['cv_fold_f1_mean']:.3f} ± {result['cv_fold_f1_std']:.3f}")
    click.echo("threshold | head out-of-fold: P     R     F1    FPR   | OnFire: P     R     F1    FPR")
    for t in SWEEP:
        h, b = result["cv"][str(t)], result["baseline"][str(t)]
        click.echo(f"{t:9.2f} | {h['precision']:22.3f} {h['recall']:5.3f} {h['f1']:5.3f} {h['fpr']:5.3f} "
                   f"| {b['precision']:9.3f} {b['recall']:5.3f} {b['f1']:5.3f} {b['fpr']:5.3f}")
    if "nested" in result:
        n = result["nested"]
        click.echo(f"nested (pick made without the scored fold): P {n['precision']:.3f} R {n['recall']:.3f} "
                   f"F1 {n['f1']:.3f} FPR {n['fpr']:.3f}; picks (blend, offset): {n['picks']}"
                   + (f"; {n['folds_without_pick']} outer folds kept no check (scored by OnFire alone)"
                      if n["folds_without_pick"] else ""))
    if "nested_threshold" in result:
        n = result["nested_threshold"]
        click.echo(f"nested, threshold picked in-fold (blend {blend}, offset {offset}, no checks): P {n['precision']:.3f} "
                   f"R {n['recall']:.3f} F1 {n['f1']:.3f} FPR {n['fpr']:.3f}; logit shifts "
                   f"{min(n['shifts'])}..{max(n['shifts'])}")
    if "head" in result:
        h = result["head"]
        click.echo(f"head written: {h['file']} ({h['size']} bytes, sha256 {h['sha256']}); "
                   "update sha256/size of fire_head in models/models.yaml if it changed")
