"""``guanjia models train-crowd``: train the crowd-density head on ../shared/data/crowd, with cross-validation."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click

REPO_ROOT = Path(__file__).resolve().parents[2]


@click.command("train-crowd")
@click.option("--shared-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder with data/crowd (default: GUANJIA_SHARED_DIR or ../shared).")
@click.option("--cv", "folds", type=int, default=5, show_default=True, help="Cross-validation folds (0: skip, train the final head only).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the head ONNX, figures JSON and report are written (default: GUANJIA_CACHE_DIR/trained, i.e. "
                   ".cache/trained; the shipped head in models/trained is fine-tuned on a GPU, docs/crowd_density.md).")
@click.option("--epochs", type=int, default=None, help="Override the training epochs.")
@click.option("--seed", type=int, default=None, help="Override the seed (folds, initialisation, batches).")
@click.option("--long-side", type=int, default=1024, show_default=True, help="Images are scaled to this long side.")
@click.option("--hidden", type=int, default=None, help="Override the head's hidden units.")
@click.option("--components", type=int, default=None, help="Override the whitening's principal components.")
@click.option("--loss", type=click.Choice(["relative", "absolute"]), default=None,
              help="Override the count loss: Huber of the error / sqrt(count+1), or of the raw error.")
@click.option("--huber-delta", type=float, default=None, help="Override the Huber threshold.")
@click.option("--heads", type=click.IntRange(min=0), default=None, help="Override the per-cell MLPs in the ensemble (maps averaged).")
@click.option("--spatial-heads", type=click.IntRange(min=0), default=None,
              help="Override the MLPs whose output layer is a 3x3 convolution over the hidden cell map.")
@click.option("--aug-scales", default=None, metavar="S,S,…",
              help="Override the augmentation scales, e.g. 0.5,0.625,0.8 ('' for none); each new scale extracts features once.")
@click.option("--mall-every", type=click.IntRange(min=1), default=None,
              help="Override the Mall frame step: train on one frame in this many (1: every frame).")
@click.option("--jobs", type=int, default=1, show_default=True, help="Fits run at once (forked processes).")
@click.option("--no-final", is_flag=True, help="Only print the cross-validated figures; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the figures.")
def train_crowd(shared_dir, folds, out, epochs, seed, long_side, hidden, components, loss, huber_delta, heads, spatial_heads,
                aug_scales, mall_every, jobs, no_final, as_json) -> None:
    """Extract frozen YOLOX-Nano features once (cached in .cache/), report k-fold figures, train and export the head.

    This is the frozen-backbone head, trained on this CPU. The shipped head starts from such fits and is then
    fine-tuned with the backbone on a GPU (scripts/crowd_finetune.py; docs/crowd_density.md).

    \b
    Example:
      guanjia models train-crowd --cv 5
      guanjia models train-crowd --cv 5 --no-final --heads 0 --spatial-heads 1     # fourth-round row F1b
    """
    from dataclasses import replace

    import onnx

    from detectors.density import BACKBONE_MODEL, HEAD_MODEL
    from detectors.registry import ModelError, ModelRegistry, cache_dir, sha256_file
    from detectors.training.export import head_to_onnx
    from detectors.training.fit import TrainConfig
    from detectors.training.report import write_report
    from detectors.training.train import MALL_GAP, load_dev_data, run_fits

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    shared = Path(shared_dir or os.environ.get("GUANJIA_SHARED_DIR", REPO_ROOT.parent / "shared"))
    if not (shared / "data" / "crowd").is_dir():
        raise click.ClickException(f"{shared / 'data' / 'crowd'} is absent: the crowd training data is needed")
    try:
        registry = ModelRegistry.load()
        backbone_path = registry.locate(BACKBONE_MODEL)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
    cfg = TrainConfig()
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    overrides = {"hidden": hidden, "components": components, "loss": loss, "huber_delta": huber_delta, "heads": heads,
                 "spatial_heads": spatial_heads, "aug_scales": _scales(aug_scales), "mall_every": mall_every}
    try:
        cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    dev = load_dev_data(shared, backbone_path.read_bytes(), long_side, cache_dir(), aug_scales=cfg.aug_scales)
    result: dict = {"config": cfg.as_dict(), "backbone": registry.model_id(BACKBONE_MODEL), "long_side": long_side,
                    "mall_gap": MALL_GAP, "mall_train_every": cfg.mall_every}
    cv, head, result["final_seconds"] = run_fits(dev, cfg, folds, final=not no_final, jobs=jobs)
    if cv:
        result["cv"] = cv
    if head is not None:
        out = out or cache_dir() / "trained"
        out.mkdir(parents=True, exist_ok=True)
        meta = {"backbone": BACKBONE_MODEL, "stride": 16, "long_side": long_side, "seed": cfg.seed, "epochs": cfg.epochs,
                "trained_on": "ShanghaiTech-B train (+mirrors), Mall train clip", "licence": "Apache-2.0 (project-trained head)"}
        path = out / f"{HEAD_MODEL}_head.onnx"
        onnx.save(head_to_onnx(head, meta), path)
        result["head"] = {"file": str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path),
                          "size": path.stat().st_size, "sha256": sha256_file(path)}
        (out / f"{HEAD_MODEL}_figures.json").write_text(json.dumps(result, indent=1) + "\n")
        write_report(out / f"{HEAD_MODEL}_report.md", result)
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "cv"} | {"cv": _summary(result.get("cv"))}))
        return
    if "cv" in result:
        cv = result["cv"]
        for f in cv["folds"]:
            click.echo(f"fold {f['fold']}: SHB MAE {f['shb']['mae']:.2f} (n={f['shb']['images']})  "
                       f"Mall frames {f['mall_frames'][0]}-{f['mall_frames'][1]} MAE {f['mall']['mae']:.2f}")
        click.echo(f"cross-validated: SHB MAE {cv['shb']['mae']:.2f} RMSE {cv['shb']['rmse']:.2f}  |  "
                   f"Mall MAE {cv['mall']['mae']:.2f} RMSE {cv['mall']['rmse']:.2f}  |  "
                   f"SHB-only model on Mall MAE {cv['shb_only_on_mall']['mae']:.2f}")
    if "head" in result:
        h = result["head"]
        click.echo(f"head written: {h['file']} ({h['size']} bytes, sha256 {h['sha256']}); to serve it instead of the shipped "
                   "head, copy it to models/trained/ and set sha256/size of crowd_density in models/models.yaml")


def _summary(cv: dict | None) -> dict | None:
    if not cv:
        return None
    return {"shb": cv["shb"], "mall": cv["mall"], "shb_only_on_mall": cv["shb_only_on_mall"],
            "folds": [{k: f[k] for k in ("fold", "shb", "mall", "mall_frames")} for f in cv["folds"]]}


def _scales(text: str | None) -> tuple[float, ...] | None:
    """``--aug-scales`` as a tuple (None: keep the default); each scale in (0, 1]."""
    if text is None:
        return None
    try:
        scales = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint="--aug-scales") from None
    if any(not 0 < x <= 1 for x in scales):
        raise click.BadParameter(f"{text!r}: every scale must be in (0, 1]", param_hint="--aug-scales")
    return scales
