"""``guanjia bench detect``: detector throughput against the bare-inference ceiling, per model and batch size.

For each model and batch size it times (a) the full path a worker runs — preprocess + inference +
postprocess (``estimate`` / ``score``) on BGR frames —, (b) the same path with float input (the
normalisation in numpy) and (c) the ceiling: the original model file, served the same way
(``OnnxModel.run``), on float tensors prepared beforehand. It also times both ways of serving a batch-1
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


def _time(fns: list[Callable[[], object]], rounds: int, warmup: int = 2) -> list[tuple[list[float], float]]:
    """(wall seconds per call, process CPU seconds in all) of each function, taking turns so load drift hits all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: list[tuple[list[float], float]] = [([], 0.0) for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            c, t = time.process_time(), time.perf_counter()
            fn()
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            out[i][0].append(wall)
            out[i] = (out[i][0], out[i][1] + cpu)
    return out


def _figures(timed: tuple[list[float], float], batch: int) -> dict[str, float]:
    arr, cpu = np.asarray(timed[0]), timed[1]
    return {"images_per_s": batch * len(arr) / arr.sum(), "p50_ms": float(np.percentile(arr, 50) * 1000),
            "p99_ms": float(np.percentile(arr, 99) * 1000), "cpu_ms_per_image": cpu * 1000 / (batch * len(arr))}


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


def _gpu_name() -> str | None:
    """The first GPU's name from nvidia-smi, or None."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def run_bench(models: list[str], batches: list[int], rounds: int, batching: str,
              providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> dict:
    """All figures as one JSON-ready dict.

    Per model and batch: ``full`` = the worker's path (served as configured: constant shapes, uint8
    input with the normalisation folded into the graph), ``float_path`` = the same path with
    ``uint8_input: false`` (numpy normalisation), ``ceiling`` = the ORIGINAL model file served the
    same way (parallel/dynamic) on float tensors prepared beforehand, ``served_graph`` = the served
    graph on its own prepared input (a rect letterbox canvas where the model allows it), ``square_path`` = the
    full path letterboxing into the declared square (``rect_letterbox: false``; the full path itself when the
    model has no rect canvas). ``ratio`` = full / ceiling images/s (the target);
    ``served_over_original`` × ``full_over_served`` splits it into graph speed-up and Python overhead;
    ``cpu_ratio`` = ceiling / full CPU time per image (steadier than wall time on a busy box).
    """
    import onnxruntime as ort

    from detectors.preprocess import to_tensor
    from detectors.registry import ModelRegistry
    from detectors.runtime import OnnxModel, Runtime, cpu_count, resolve_providers
    from detectors.settings import RuntimeSettings

    registry = ModelRegistry.load()
    frames, source = _frames(max(batches))
    on_gpu = [p for p in resolve_providers(list(providers)) if p != "CPUExecutionProvider"]
    gpu = f"{_gpu_name() or 'GPU'} via {on_gpu[0]}" if on_gpu else (
        "none in this session" if set(providers) == {"CPUExecutionProvider"} else
        f"none: {', '.join(p for p in providers if p != 'CPUExecutionProvider')} not available, measured on CPU")
    result: dict = {"device": f"CPU ({cpu_count()} cores, {platform.processor() or platform.machine()})",
                    "gpu": gpu, "onnxruntime": ort.__version__, "frames": source,
                    "rounds": rounds, "models": {}}
    for name in models:
        settings = RuntimeSettings(batching=batching, max_batch=max(batches), providers=list(providers))
        call, model = _full_path(registry, Runtime(settings), name)
        float_call, _ = _full_path(registry, Runtime(settings.model_copy(update={"uint8_input": False})), name)
        square_call = (_full_path(registry, Runtime(settings.model_copy(update={"rect_letterbox": False})), name)[0]
                       if model.rect else call)  # no second session for a model served at its declared size
        raw = registry.locate(name).read_bytes()
        original = OnnxModel(model.spec, raw, settings, rewrite=False)  # the ceiling: the file as published
        per_batch = {}
        for b in batches:
            images = frames[:b]
            tensor, _ = to_tensor(images, model.spec.input)
            served_tensor, _ = model.prepare(images)
            fns = [lambda m=original, t=tensor: m.run(t), lambda c=call, i=images: c(i),
                   lambda c=float_call, i=images: c(i), lambda m=model, t=served_tensor: m.run(t)]
            if model.rect:
                fns.append(lambda c=square_call, i=images: c(i))
            timed = [_figures(t, b) for t in _time(fns, rounds)]
            ceiling, full, float_path, served = timed[:4]
            square = timed[4] if model.rect else full
            per_batch[str(b)] = {"full": full, "ceiling": ceiling, "float_path": float_path, "served_graph": served,
                                 "square_path": square,
                                 "ratio": full["images_per_s"] / ceiling["images_per_s"],
                                 "square_ratio": square["images_per_s"] / ceiling["images_per_s"],
                                 "float_ratio": float_path["images_per_s"] / ceiling["images_per_s"],
                                 "cpu_ratio": ceiling["cpu_ms_per_image"] / full["cpu_ms_per_image"],
                                 "served_over_original": served["images_per_s"] / ceiling["images_per_s"],
                                 "full_over_served": full["images_per_s"] / served["images_per_s"]}
        best = max(per_batch, key=lambda k: per_batch[k]["full"]["images_per_s"])
        best_float = max(per_batch, key=lambda k: per_batch[k]["float_path"]["images_per_s"])
        entry = {"model_id": model.model_id, "batch_mode": model.batch_mode, "providers": model.providers,
                 "uint8_input": model.uint8_input, "rect_letterbox": model.rect,
                 "ceiling_input": [int(d) for d in to_tensor(frames[:1], model.spec.input)[0].shape[2:]],
                 "served_input": [int(d) for d in model.prepare(frames[:1])[0].shape[2:]], "batches": per_batch, "best_batch": int(best),
                 "best_images_per_s": per_batch[best]["full"]["images_per_s"],
                 "ratio_at_best": per_batch[best]["ratio"], "cpu_ratio_at_best": per_batch[best]["cpu_ratio"],
                 "square_ratio_at_best": max(row["square_ratio"] for row in per_batch.values()),
                 "float_path_ratio_at_best": per_batch[best_float]["float_ratio"],
                 "served_over_original_at_best": per_batch[best]["served_over_original"],
                 "full_over_served_at_best": per_batch[best]["full_over_served"]}
        if len(batches) > 0:
            b = max(batches)
            tensor, _ = to_tensor(frames[:b], model.spec.input)
            served = {mode: OnnxModel(model.spec, raw, RuntimeSettings(batching=mode, max_batch=b, providers=list(providers)))
                      for mode in ("parallel", "dynamic")}
            # each mode in its own block: a dynamic session's threads spin after a run and would slow
            # the parallel run that follows if the two took turns
            modes = {mode: _figures(_time([lambda m=m, t=tensor: m.run(t)], rounds)[0], b)["images_per_s"]
                     for mode, m in served.items()}
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
@click.option("--providers", default="CPUExecutionProvider", show_default=True,
              help="Comma-separated onnxruntime execution providers in order of preference, e.g. "
                   "CUDAExecutionProvider,CPUExecutionProvider on a GPU machine (with onnxruntime-gpu).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_detect(models: str, batches: str, rounds: int, batching: str, providers: str, as_json: bool) -> None:
    """Images/s through preprocess + infer + postprocess vs bare inference on prepared tensors.

    \b
    Example:
      guanjia bench detect --batches 1,8 --json
      guanjia bench detect --providers CUDAExecutionProvider --batches 1,8,32   # GPU machine
    """
    from detectors.registry import ModelError

    try:
        result = run_bench([m.strip() for m in models.split(",") if m.strip()],
                           [int(b) for b in batches.split(",")], rounds, batching,
                           tuple(p.strip() for p in providers.split(",") if p.strip()))
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{result['device']}, onnxruntime {result['onnxruntime']}, GPU: {result['gpu']}; frames: {result['frames']}")
    for entry in result["models"].values():
        form = "uint8 input, normalisation in the graph" if entry["uint8_input"] else "float input"
        (ch, cw), (sh, sw) = entry["ceiling_input"], entry["served_input"]
        canvas = f"served at {sw}x{sh}, ceiling at {cw}x{ch}"
        click.echo(f"\n{entry['model_id']}  ({entry['batch_mode']} batches on {entry['providers'][0]}, {form}, {canvas})")
        click.echo("batch  full img/s  ceiling img/s  ratio  cpu ratio  float-path ratio  square-path ratio  "
                   "full p50 ms  full p99 ms")
        for b, row in entry["batches"].items():
            click.echo(f"{b:>5}  {row['full']['images_per_s']:10.1f}  {row['ceiling']['images_per_s']:13.1f}  "
                       f"{row['ratio']:5.2f}  {row['cpu_ratio']:9.2f}  {row['float_ratio']:16.2f}  "
                       f"{row['square_ratio']:17.2f}  {row['full']['p50_ms']:11.1f}  {row['full']['p99_ms']:11.1f}")
        click.echo(f"best batch {entry['best_batch']}: {entry['best_images_per_s']:.1f} img/s, "
                   f"{entry['ratio_at_best']:.2f} of the ceiling (CPU time {entry['cpu_ratio_at_best']:.2f}) = "
                   f"served graph {entry['served_over_original_at_best']:.2f} x full path "
                   f"{entry['full_over_served_at_best']:.2f} of it; float path at its best batch "
                   f"{entry['float_path_ratio_at_best']:.2f}")
        if "serving_images_per_s" in entry:
            s = entry["serving_images_per_s"]
            click.echo(f"serving batch {entry['serving_batch']}: parallel {s['parallel']:.1f} img/s vs dynamic "
                       f"{s['dynamic']:.1f} img/s (x{entry['parallel_over_dynamic']:.2f})")
