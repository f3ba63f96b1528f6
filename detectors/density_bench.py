"""``guanjia bench density``: density-map throughput at 1024×768 side by side with YOLOX-Nano box counting.

Three calls take turns image by image so that load drift hits all alike: the density estimator's
full path (letterbox + backbone + head), the backbone cut to the features the head reads alone on a
prepared tensor (its ceiling), and the box estimator (YOLOX-Nano at 416, decode + NMS) as the baseline. ``--long-sides`` adds the
same full path with the image scaled to other long sides (speed only: a head is accurate at the
scale it was trained at, recorded in its metadata).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click
import numpy as np


def _images(count: int) -> tuple[list[np.ndarray], str]:
    import cv2

    from detectors.registry import REPO_ROOT

    folder = Path(os.environ.get("GUANJIA_SHARED_DIR", REPO_ROOT.parent / "shared")) / "data" / "crowd" / "shanghaitech_B_train" / "images"
    paths = sorted(folder.glob("*.jpg"))[:count]
    if paths:
        return [cv2.imread(str(p)) for p in paths], f"{folder} (1024x768)"
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8) for _ in range(count)], "random 1024x768"


def run_bench(rounds: int, threads: int, long_sides: tuple[int, ...] = ()) -> dict:
    import onnx
    import onnxruntime as ort

    from detectors.crowd import BoxCrowdEstimator
    from detectors.density import (
        INPUT_NAME,
        DensityEstimator,
        cut_backbone,
        head_feature_inputs,
        letterbox,
    )
    from detectors.registry import ModelRegistry
    from detectors.runtime import Runtime, cpu_count
    from detectors.settings import CrowdSettings, RuntimeSettings

    registry = ModelRegistry.load()
    runtime = Runtime(RuntimeSettings(intra_op_threads=threads))
    density = DensityEstimator.from_registry(registry, CrowdSettings(estimator="density"), runtime)
    boxes = BoxCrowdEstimator.from_registry(registry, CrowdSettings(), runtime)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    head_inputs = head_feature_inputs(onnx.load(registry.locate("crowd_density")))
    backbone = ort.InferenceSession(cut_backbone(onnx.load(registry.locate("yolox_nano_coco_416")), head_inputs).SerializeToString(),
                                    options, providers=["CPUExecutionProvider"])
    images, source = _images(rounds)
    tensors = [letterbox(im, density.long_side)[0][None] for im in images]
    calls = {
        "density_full": lambda i: density.estimate([images[i]]),
        "backbone_only": lambda i: backbone.run(head_inputs, {INPUT_NAME: tensors[i]}),
        "boxes_yolox_416": lambda i: boxes.estimate([images[i]]),
    }
    head_bytes = registry.locate("crowd_density").read_bytes()
    for side in long_sides:
        scaled = DensityEstimator(density.model, head_bytes, long_side=side)
        calls[f"density_long_side_{side}"] = lambda i, est=scaled: est.estimate([images[i]])
    for fn in calls.values():
        fn(0)
    times: dict[str, list[float]] = {k: [] for k in calls}
    for i in range(len(images)):
        for name, fn in calls.items():
            t = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - t)
    fig = {k: {"images_per_s": len(v) / sum(v), "p50_ms": float(np.median(v) * 1000)} for k, v in times.items()}
    head_path = registry.locate("crowd_density")
    return {"device": f"CPU ({cpu_count()} cores)", "images": source, "rounds": len(images), "intra_op_threads": threads,
            "model_id": density.model_id, "long_side": density.long_side, "head_bytes": head_path.stat().st_size,
            "model_bytes": head_path.stat().st_size + registry.locate("yolox_nano_coco_416").stat().st_size,
            **fig,
            "density_over_backbone": fig["density_full"]["images_per_s"] / fig["backbone_only"]["images_per_s"],
            "density_over_boxes": fig["density_full"]["images_per_s"] / fig["boxes_yolox_416"]["images_per_s"],
            **{f"long_side_{side}_over_density": fig[f"density_long_side_{side}"]["images_per_s"] / fig["density_full"]["images_per_s"]
               for side in long_sides}}


@click.command("density")
@click.option("--rounds", type=int, default=30, show_default=True, help="Images timed (each call type once per image).")
@click.option("--threads", type=int, default=0, show_default=True, help="onnxruntime intra-op threads (0 = all cores).")
@click.option("--long-sides", default="", show_default=True,
              help="Comma-separated other long sides to time the full path at, e.g. 768,640 (speed only).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_density(rounds: int, threads: int, long_sides: str, as_json: bool) -> None:
    """Images/s of the density map at 1024×768 vs its backbone alone and vs YOLOX-Nano boxes at 416.

    \b
    Example:
      guanjia bench density --rounds 30 --json
      guanjia bench density --rounds 20 --long-sides 768,640
    """
    from detectors.registry import ModelError

    try:
        sides = tuple(int(v) for v in long_sides.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{long_sides!r} is not a comma-separated list of integers", param_hint="--long-sides") from None
    try:
        result = run_bench(rounds, threads, sides)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{result['model_id']} on {result['images']}, {result['device']}, {result['rounds']} images")
    for k in ("density_full", "backbone_only", "boxes_yolox_416", *(f"density_long_side_{v}" for v in sides)):
        click.echo(f"{k:24} {result[k]['images_per_s']:6.1f} images/s  p50 {result[k]['p50_ms']:6.1f} ms")
    click.echo(f"density / backbone-only = {result['density_over_backbone']:.2f}   density / boxes = {result['density_over_boxes']:.2f}   "
               f"model {result['model_bytes'] / 1e6:.2f} MB (head {result['head_bytes']} B, long side {result['long_side']})")
    for v in sides:
        click.echo(f"long side {v} / {result['long_side']} = {result[f'long_side_{v}_over_density']:.2f}")
