"""``guanjia bench detect``: detector throughput against the bare-inference ceiling, per model and batch size.

For each model and batch size it times (a) the full path a worker runs — preprocess + inference +
postprocess (``estimate`` / ``score``) on BGR frames — and (b) the ceiling: the same model serving
(``OnnxModel.run``) on tensors prepared beforehand. It also times both ways of serving a batch-1
export (``parallel`` single-image runs vs one ``dynamic``-batch run) so the default can be justified.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

DEFAULT_MODELS = "yolox_nano_coco_416,person_detector_light_192,shufflenetv2_onfire_224"


def _frames(count: int) -> tuple[list[np.ndarray], str]:
    """Real 768×576 street frames from ../shared/testdata/vtest, repeated; random frames when absent."""
    import os

    import cv2

    from detectors.registry import REPO_ROOT

    folder = Path(os.environ.get("GUANJIA_SHARED_DIR", REPO_ROOT.parent / "shared")) / "testdata" / "vtest"
    images = [cv2.imread(str(p)) for p in sorted(folder.glob("*.jpg"))]
    if images:
        return [images[i % len(images)] for i in range(count)], f"{folder} (768x576)"
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (576, 768, 3), dtype=np.uint8) for _ in range(count)], "random 768x576"


def _time(fns: list[Callable[[], object]], rounds: int, warmup: int = 2) -> list[list[float]]:
    """Seconds per call of each function, the functions taking turns so that load drift hits all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, times in zip(fns, out):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return out


def _figures(times: list[float], batch: int) -> dict[str, float]:
    arr = np.asarray(times)
    return {"images_per_s": batch * len(arr) / arr.sum(), "p50_ms": float(np.percentile(arr, 50) * 1000),
            "p99_ms": float(np.percentile(arr, 99) * 1000)}


def _full_path(registry, runtime, name: str) -> tuple[Callable[[list[np.ndarray]], object], object]:
    """The worker's call for this model, and the OnnxModel behind it."""
    from detectors.crowd import BoxCrowdEstimator
    from detectors.fire import OnFireScorer
    from detectors.settings import CrowdSettings, FireSettings

    spec = registry.spec(name)
    if spec.task == "person_boxes":
        est = BoxCrowdEstimator.from_registry(registry, CrowdSettings(model=name), runtime)
        return est.estimate, est.model
    scorer = OnFireScorer.from_registry(registry, FireSettings(model=name), runtime)
    return scorer.score, scorer.model


def run_bench(models: list[str], batches: list[int], rounds: int, batching: str) -> dict:
    """All figures as one JSON-ready dict."""
    import onnxruntime as ort

    from detectors.preprocess import to_tensor
    from detectors.registry import ModelRegistry
    from detectors.runtime import OnnxModel, Runtime, cpu_count
    from detectors.settings import RuntimeSettings

    registry = ModelRegistry.load()
    frames, source = _frames(max(batches))
    result: dict = {"device": f"CPU ({cpu_count()} cores, {platform.processor() or platform.machine()})",
                    "gpu": "none in this session", "onnxruntime": ort.__version__, "frames": source,
                    "rounds": rounds, "models": {}}
    for name in models:
        runtime = Runtime(RuntimeSettings(batching=batching, max_batch=max(batches)))
        call, model = _full_path(registry, runtime, name)
        per_batch = {}
        for b in batches:
            images = frames[:b]
            tensor, _ = to_tensor(images, model.spec.input)
            ceiling_t, full_t = _time([lambda m=model, t=tensor: m.run(t), lambda c=call, i=images: c(i)], rounds)
            ceiling, full = _figures(ceiling_t, b), _figures(full_t, b)
            per_batch[str(b)] = {"full": full, "ceiling": ceiling,
                                 "ratio": full["images_per_s"] / ceiling["images_per_s"]}
        best = max(per_batch, key=lambda k: per_batch[k]["full"]["images_per_s"])
        entry = {"model_id": model.model_id, "batch_mode": model.batch_mode, "providers": model.providers,
                 "batches": per_batch, "best_batch": int(best),
                 "best_images_per_s": per_batch[best]["full"]["images_per_s"],
                 "ratio_at_best": per_batch[best]["ratio"]}
        if len(batches) > 0:
            b = max(batches)
            tensor, _ = to_tensor(frames[:b], model.spec.input)
            raw = registry.locate(name).read_bytes()
            served = {mode: OnnxModel(model.spec, raw, RuntimeSettings(batching=mode, max_batch=b))
                      for mode in ("parallel", "dynamic")}
            times = _time([lambda m=m, t=tensor: m.run(t) for m in served.values()], rounds)
            modes = {mode: _figures(t, b)["images_per_s"] for mode, t in zip(served, times)}
            entry["serving_batch"] = b
            entry["serving_images_per_s"] = modes
            entry["parallel_over_dynamic"] = modes["parallel"] / modes["dynamic"]
        result["models"][name] = entry
    return result


@click.command("detect")
@click.option("--models", default=DEFAULT_MODELS, show_default=True, help="Comma-separated registry models.")
@click.option("--batches", default="1,4,8", show_default=True, help="Comma-separated batch sizes.")
@click.option("--rounds", type=int, default=10, show_default=True, help="Timed calls per batch size.")
@click.option("--batching", type=click.Choice(["auto", "dynamic", "parallel"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_detect(models: str, batches: str, rounds: int, batching: str, as_json: bool) -> None:
    """Images/s through preprocess + infer + postprocess vs bare inference on prepared tensors.

    \b
    Example:
      guanjia bench detect --batches 1,8 --json
    """
    from detectors.registry import ModelError

    try:
        result = run_bench([m.strip() for m in models.split(",") if m.strip()],
                           [int(b) for b in batches.split(",")], rounds, batching)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{result['device']}, onnxruntime {result['onnxruntime']}, GPU: {result['gpu']}; frames: {result['frames']}")
    for entry in result["models"].values():
        click.echo(f"\n{entry['model_id']}  ({entry['batch_mode']} batches on {entry['providers'][0]})")
        click.echo("batch  full img/s  ceiling img/s  ratio  full p50 ms  full p99 ms")
        for b, row in entry["batches"].items():
            click.echo(f"{b:>5}  {row['full']['images_per_s']:10.1f}  {row['ceiling']['images_per_s']:13.1f}  "
                       f"{row['ratio']:5.2f}  {row['full']['p50_ms']:11.1f}  {row['full']['p99_ms']:11.1f}")
        click.echo(f"best batch {entry['best_batch']}: {entry['best_images_per_s']:.1f} img/s, "
                   f"{entry['ratio_at_best']:.2f} of the ceiling")
        if "serving_images_per_s" in entry:
            s = entry["serving_images_per_s"]
            click.echo(f"serving batch {entry['serving_batch']}: parallel {s['parallel']:.1f} img/s vs dynamic "
                       f"{s['dynamic']:.1f} img/s (x{entry['parallel_over_dynamic']:.2f})")
