"""The training report ``models/trained/crowd_density_report.md``, written from the run's own figures."""

from __future__ import annotations

from pathlib import Path

_LOSS = {"relative": "(map sum − count)/√(count+1)", "absolute": "map sum − count"}


def _row(name: str, e: dict) -> str:
    return (f"| {name} | {e['images']} | {e['mean_count']:.1f} | **{e['mae']:.2f}** | {e['rmse']:.2f} | "
            f"{e['bias']:+.2f} | {100 * e['mean_rel_err']:.1f}% |")


def reproduce_command(result: dict) -> str:
    """The ``guanjia models train-crowd`` command line that repeats this run (options that differ from the defaults)."""
    from detectors.training.fit import TrainConfig

    cfg, defaults = result["config"], TrainConfig().as_dict()
    folds = len(result["cv"]["folds"]) if result.get("cv") else 0
    parts = ["guanjia models train-crowd", f"--cv {folds}"]
    if result.get("long_side", 1024) != 1024:
        parts.append(f"--long-side {result['long_side']}")
    for key in ("epochs", "seed", "hidden", "components", "loss", "huber_delta"):
        if key in cfg and cfg[key] != defaults[key]:
            parts.append(f"--{key.replace('_', '-')} {cfg[key]}")
    return " ".join(parts)


def write_report(path: Path, result: dict) -> None:
    """Markdown with data, seed, epochs, folds and the cross-validated figures of ``result``."""
    cfg, cv, head = result["config"], result.get("cv"), result["head"]
    s32 = cfg.get("stride32", False)
    mlp = _ensemble(cfg.get("heads", 1), cfg.get("spatial_heads", 0), cfg["hidden"])
    lines = [
        "# Crowd density head: training report",
        "",
        "Written by `guanjia models train-crowd` (do not edit by hand; rerun to refresh).",
        "",
        "## Model",
        f"- Backbone: `{result['backbone']}` (COCO YOLOX-Nano, frozen, resolved through `models/models.yaml`; not committed).",
        (
            f"- Input: long side scaled to {result['long_side']} px (top-left letterbox, pad 114, BGR, raw 0–255); "
            "features: the cls and reg branch tensors that feed YOLOX's "
            f"{'stride-8, stride-16 and stride-32' if s32 else 'stride-8 and stride-16'} predictions (128 channels each)."
        ),
        (
            "- Head (stride 16): space-to-depth of the stride-8 features (512) ‖ stride-16 features (128) ‖ their 5×5 mean (128) "
            f"{'‖ stride-32 features upsampled ×2 (128) ' if s32 else ''}"
            f"→ PCA whitening to {cfg['components']} → {mlp} → softplus = people per cell."
        ),
        f"- Head file: `{head['file']}`, {head['size']} bytes, sha256 `{head['sha256']}`.",
        "",
        "## Data and training",
        (
            "- ShanghaiTech Part B train (400 images, 1024×768) and each image mirrored; the Mall train clip "
            f"(800 frames, 640×480 scaled to {result['long_side']}), one frame in {result['mall_train_every']} used for training."
        ),
        (
            "- Only image-level counts exist, so the loss is a Huber loss (δ = "
            f"{cfg['huber_delta']}) of {_LOSS[cfg.get('loss', 'relative')]}; Adam, learning rate {cfg['lr']} with cosine decay, "
            f"weight decay {cfg['weight_decay']}, {cfg['batch_images']} images per step, {cfg['epochs']} epochs, seed {cfg['seed']}."
        ),
        *([(f"- Scale augmentation: every training image also enters with its long side scaled by "
             f"{', '.join(f'{f:g}' for f in cfg['aug_scales'])} (features extracted at those sizes; a batch holds one scale); "
             f"the model is served at {result['long_side']} px only.")] if cfg.get("aug_scales") else []),
        *([f"- {cfg['blank_frames']} flat frames (grey levels 0–255) with count 0 join every fit: scenes with nobody in them."]
          if cfg.get("blank_frames") else []),
        "- The whitening (PCA) is fitted on the training images of each fit only (full scale).",
        f"- Final fit: {result['final_seconds']:.0f} s wall time on the shared 2-core machine, run in parallel with the CV fits (`--jobs`), after feature extraction (cached under `.cache/crowd_features/`).",
        "",
    ]
    if cv:
        lines += [
            f"## Cross-validated figures ({len(cv['folds'])} folds)",
            "",
            (
                f"Fold k holds out ShanghaiTech-B fold k (seeded permutation, seed {cfg['seed']}, dealt round-robin) and Mall frames "
                f"block k (consecutive time blocks; {result['mall_gap']} frames either side of the block are also kept out of training). "
                "No image is ever evaluated by a model trained on it."
            ),
            "",
            "| held-out set | images | mean count | MAE | RMSE | bias | mean rel. error |",
            "|---|---|---|---|---|---|---|",
            _row("ShanghaiTech-B train, 5-fold CV", cv["shb"]),
            _row("Mall train clip, 5 time blocks", cv["mall"]),
            _row("Mall clip, model trained on SHB only", cv["shb_only_on_mall"]),
            "",
            "| fold | SHB MAE | Mall frames | Mall MAE |",
            "|---|---|---|---|",
            *[f"| {f['fold']} | {f['shb']['mae']:.2f} | {f['mall_frames'][0]}–{f['mall_frames'][1]} | {f['mall']['mae']:.2f} |"
              for f in cv["folds"]],
            "",
        ]
    lines += [f"Reproduce: `{reproduce_command(result)}` (see docs/accuracy.md).", ""]
    path.write_text("\n".join(lines))


def _ensemble(heads: int, spatial_heads: int, hidden: int) -> str:
    """The MLPs of a head, in words."""
    total = heads + spatial_heads
    text = (f"ReLU MLP ({hidden} hidden)" if total == 1 else
            f"{total} ReLU MLPs ({hidden} hidden each; seeds differ, maps averaged in the graph)")
    if spatial_heads:
        conv = "a 3×3 convolution over the map of hidden units"
        which = (f"whose output layer is {conv}" if total == 1 else f"all with {conv} as output layer" if not heads else
                 f"{spatial_heads if spatial_heads > 1 else 'one'} of them with {conv} as output layer")
        text += f", {which} (each cell reads its neighbours)"
    return text
