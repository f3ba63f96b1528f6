"""Cross-validated fine-tuning of the density network (backbone + head) on a GPU machine, and its evaluation here.

    python scripts/crowd_finetune.py heads --out HEADS             # start heads (train-crowd's fits), for "start" rows
    python scripts/crowd_finetune.py pack --out .devdata --heads HEADS   # training images for the GPU machine
    python scripts/crowd_finetune.py run --data .devdata --out OUT --configs A,B --budget-s 520
    python scripts/crowd_finetune.py evaluate --fits OUT           # held-out figures through the head file export writes
    python scripts/crowd_finetune.py export --fits OUT --config D1 --cv-report finetune_cv.json --out HEAD.onnx

``run`` starts one process per (config, fit): the five CV folds and the final fit. All processes first time a
few steps side by side; the driver then fixes one epoch count for all (at most ``--max-epochs``) so the
whole run ends inside the budget, and records it. ``evaluate`` rebuilds each fold's merged ONNX graph
(registry backbone with the tuned initializers + exported head) and scores it on that fold's held-out
ShanghaiTech-B images and Mall block, decoded from the original files.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.training import data
from detectors.training.fit import TrainConfig
from detectors.training.train import mall_blocks, mall_train_frames, shb_folds, training_indices
from scripts.script_args import SHARED_HELP, command_parser, parse_with_shared

log = logging.getLogger("crowd_finetune")
FOLDS = 5
FITS = [f"fold{k}" for k in range(FOLDS)] + ["final"]
CONFIGS = {  # rows declared in docs/accuracy.md (sixth and eighth rounds) before their runs
    "H1": {},
    "H2": {"lr_backbone": 5e-4},
    # added after H1 and H2 had figures, before H3 ran: start from the fold's own G1 head (train-crowd's
    # numpy fit on that fold's training images), fine-tune gently, in fp32 so the head sees its features
    "H3": {"lr_backbone": 5e-5, "lr_head": 3e-4, "warmup_epochs": 1, "precision": "fp32", "start": "g1"},
    # eighth round: H3 with the head's whitened inputs held near the frozen backbone's
    "D1": {"lr_backbone": 5e-5, "lr_head": 3e-4, "warmup_epochs": 1, "precision": "fp32", "start": "g1", "distill": 5.0},
}
BACKBONE_FILE = "yolox_nano_coco_416.onnx"
LONG_SIDE = 1024  # the served long side, train-crowd's default
START_HEADS = {"g1": {"heads": 3, "spatial_heads": 1}}  # train-crowd recipes whose fits a row may start from


def heads(args) -> None:
    """Fit the start heads of every fit (five folds, final) with train-crowd's own code, as ``<name>_<fit>.pkl``."""
    import pickle

    from detectors.density import BACKBONE_MODEL
    from detectors.registry import ModelRegistry, cache_dir
    from detectors.training.train import fit_named, load_dev_data

    cfg = TrainConfig(**START_HEADS[args.name])
    registry = ModelRegistry.load()
    dev = load_dev_data(Path(args.shared), registry.locate(BACKBONE_MODEL).read_bytes(), LONG_SIDE, cache_dir(),
                        cfg.stride32, cfg.aug_scales, cfg.blank_frames)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for fit, (head, seconds) in fit_named(dev, cfg, FITS, FOLDS, args.jobs).items():
        (out / f"{args.name}_{fit}.pkl").write_bytes(pickle.dumps(head))
        print(f"{args.name}_{fit}: {seconds:.0f} s", flush=True)


def pack(args) -> None:
    crowd = Path(args.shared) / "data" / "crowd"
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "shb").mkdir(parents=True)
    shutil.copytree(crowd / "shanghaitech_B_train" / "images", out / "shb" / "images")
    shutil.copy(crowd / "shanghaitech_B_train" / "gt_counts.json", out / "shb")
    mall, video = data.mall(crowd / "mall_train")
    keep = set(mall_train_frames(len(mall), None, args.mall_every).tolist())
    frames = out / "mall" / "frames"
    frames.mkdir(parents=True)
    for i, image in enumerate(data.iter_video(video, mall.keys)):
        if i in keep:
            cv2.imwrite(str(frames / f"{i}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    shutil.copy(crowd / "mall_train" / "gt_counts.json", out / "mall")
    shutil.copy(Path(args.shared) / "models" / BACKBONE_FILE, out / "mall")
    if args.heads:  # start heads (pickled DensityHead per fit, from train-crowd's fits) for configs that name them
        shutil.copytree(args.heads, out / "mall" / "heads")
    print(f"packed {len(keep)} Mall frames; sizes: shb {_size(out / 'shb'):.1f} MB, mall {_size(out / 'mall'):.1f} MB")


def _size(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def fit_split(name: str, n_shb: int, n_mall: int, mall_every: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(SHB train, Mall train, SHB held out, Mall held out) indices of a fit, as ``train-crowd --cv`` splits."""
    shb_train, mall_train = training_indices(name, n_shb, n_mall, FOLDS, seed, mall_every)
    if name == "final":
        return shb_train, mall_train, np.array([], int), np.array([], int)
    k = int(name.removeprefix("fold"))
    return shb_train, mall_train, shb_folds(n_shb, FOLDS, seed)[k], mall_blocks(n_mall, FOLDS)[k]


def worker(args) -> None:
    import onnx
    import torch

    from detectors.training.export import head_to_onnx
    from detectors.training.finetune import FinetuneConfig, build, predict, train

    torch.set_num_threads(2)
    overrides = dict(CONFIGS[args.config])
    start_heads = overrides.pop("start", None)
    if args.smoke:  # tiny images: checks the whole path on a CPU in a minute
        overrides.update(long_side=128, norm_images=8)
    cfg = FinetuneConfig(**overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    root, run = Path(args.data), Path(args.run)
    shb, images = data.shanghaitech(root / "shb")
    shb_images = [_small(im, args.smoke) for im in data.iter_images(images, shb.keys)]
    mall_gt = json.loads((root / "mall" / "gt_counts.json").read_text())["counts_by_frame_index"]
    n_mall = len(mall_gt)
    frames = {int(p.stem): p for p in (root / "mall" / "frames").glob("*.jpg")}
    shb_train, mall_train, shb_held, mall_held = fit_split(args.fit, len(shb), n_mall, cfg.mall_every, cfg.seed)
    blanks = [_small(im, args.smoke) for im in data.blank_frames(cfg.blank_frames)]
    train_images = [shb_images[i] for i in shb_train] + [_small(cv2.imread(str(frames[i])), args.smoke) for i in mall_train] + blanks
    counts = np.concatenate([shb.counts[shb_train], [mall_gt[str(i)] for i in mall_train], np.zeros(len(blanks))])
    backbone = onnx.load(str(root / "mall" / BACKBONE_FILE))
    start = None
    if start_heads:
        import pickle

        start = pickle.loads((root / "mall" / "heads" / f"{start_heads}_{args.fit}.pkl").read_bytes())
    net, scaled = build(backbone, train_images, counts.astype(np.float64), cfg, device, start)
    initial = {k: v.detach().clone() for k, v in net.state_dict().items()}
    tag = f"{args.config}_{args.fit}"
    t0 = time.perf_counter()
    train(net, scaled, counts, cfg, device, epochs=100, max_steps=4)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    train(net, scaled, counts, cfg, device, epochs=100, max_steps=12)
    if device.type == "cuda":
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - t1) / 12
    (run / f"{tag}.rate").write_text(json.dumps({"step_s": step_s, "steps_per_epoch": -(-len(counts) // cfg.batch_images),
                                                 "warmup_s": t1 - t0}))
    epochs_file = run / "epochs.json"
    while not epochs_file.exists():
        time.sleep(0.2)
    epochs = json.loads(epochs_file.read_text())["epochs"]
    net.load_state_dict(initial)
    history = train(net, scaled, counts, cfg, device, epochs=epochs)
    shb_pred = predict(net, [shb_images[i] for i in shb_held], cfg, device)
    mall_seen = [i for i in mall_held if i in frames]
    mall_pred = predict(net, [_small(cv2.imread(str(frames[i])), args.smoke) for i in mall_seen], cfg, device)
    head = head_to_onnx(net.density_head(), {"backbone": BACKBONE_FILE.removesuffix(".onnx"), "config": json.dumps(cfg.as_dict()),
                                              "fit": args.fit, "epochs": str(epochs)})
    arrays = {f"backbone/{k}": v for k, v in net.backbone.initializer_arrays().items()}
    arrays["head_onnx"] = np.frombuffer(head.SerializeToString(), np.uint8)
    np.savez(run / f"{tag}.npz", **arrays)
    summary = {"config": args.config, "fit": args.fit, "epochs": epochs, "history": history,
               "device_shb_mae": float(np.abs(shb_pred - shb.counts[shb_held]).mean()) if len(shb_held) else None,
               "device_mall_mae_every_nth": float(np.abs(mall_pred - np.array([mall_gt[str(i)] for i in mall_seen])).mean())
               if mall_seen else None}
    (run / f"{tag}.json").write_text(json.dumps(summary))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}), flush=True)


def _small(image: np.ndarray, smoke: bool) -> np.ndarray:
    return cv2.resize(image, (image.shape[1] // 8, image.shape[0] // 8), interpolation=cv2.INTER_AREA) if smoke else image


def run_all(args) -> None:
    start = time.time()
    run = Path(args.work)  # per-fit files stay outside --out, which holds only what comes back
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    jobs = [(c, f) for c in args.configs.split(",") for f in FITS]
    procs = [subprocess.Popen([sys.executable, __file__, "fit", "--data", args.data, "--run", str(run), "--config", c,
                               "--fit", f] + (["--smoke"] if args.smoke else [])) for c, f in jobs]
    rates = {}
    while len(rates) < len(jobs):
        for c, f in jobs:
            p = run / f"{c}_{f}.rate"
            if f"{c}_{f}" not in rates and p.exists():
                rates[f"{c}_{f}"] = json.loads(p.read_text())
        if any(p.poll() not in (None, 0) for p in procs):
            raise SystemExit("a fit process failed before its timing probe")
        time.sleep(0.5)
    step_s = max(r["step_s"] for r in rates.values())
    per_epoch = max(r["steps_per_epoch"] for r in rates.values())
    left = args.budget_s - (time.time() - start) - args.margin_s
    epochs = int(max(args.min_epochs, min(args.max_epochs, left / (step_s * per_epoch))))
    plan = {"epochs": epochs, "step_s": step_s, "steps_per_epoch": per_epoch, "seconds_left": left, "rates": rates}
    (run / "epochs.json").write_text(json.dumps(plan))
    print("plan:", json.dumps({k: v for k, v in plan.items() if k != "rates"}), flush=True)
    codes = [p.wait() for p in procs]
    print("exit codes:", codes, f"{time.time() - start:.0f} s", flush=True)
    out = Path(args.out)
    summaries = {f"{c}_{f}": json.loads((run / f"{c}_{f}.json").read_text()) for c, f in jobs if (run / f"{c}_{f}.json").exists()}
    (out / "summary.json").write_text(json.dumps({"plan": plan, "fits": summaries, "seconds": time.time() - start}))
    for c in args.configs.split(","):  # three fits per file keeps each under the 16 MiB transfer limit
        for part, fits in enumerate((FITS[:3], FITS[3:])):
            bundle = {f"{f}/{k}": v for f in fits if (run / f"{c}_{f}.npz").exists()
                      for k, v in np.load(run / f"{c}_{f}.npz").items()}
            if bundle:
                np.savez_compressed(out / f"{c}_{part}.npz", **bundle)


def load_fits(folder: Path, config: str) -> dict[str, dict[str, np.ndarray]]:
    fits: dict[str, dict[str, np.ndarray]] = {}
    for path in sorted(folder.glob(f"{config}_*.npz")):
        for key, value in np.load(path).items():
            fit, rest = key.split("/", 1)
            fits.setdefault(fit, {})[rest] = value
    return fits


def head_with_delta(backbone, fit: dict[str, np.ndarray], delta_dtype: str = "float32"):
    """A fit's exported head carrying its backbone changes (tuned − registry weights, stored as ``delta_dtype``)
    as ``backbone_delta/`` initializers: the file ``export`` writes and the loader applies."""
    import onnx
    from onnx import numpy_helper

    from detectors.training.export import add_backbone_delta

    original = {i.name: numpy_helper.to_array(i) for i in backbone.graph.initializer}
    head = onnx.load_from_string(fit["head_onnx"].tobytes())
    delta = {key.removeprefix("backbone/"): tuned - original[key.removeprefix("backbone/")]
             for key, tuned in fit.items() if key.startswith("backbone/")}
    add_backbone_delta(head.graph, delta, np.dtype(delta_dtype))
    onnx.checker.check_model(head)
    return head, delta, original


def merged_model(backbone_bytes: bytes, fit: dict[str, np.ndarray], delta_dtype: str = "float32"):
    """The graph the product would serve for this fit: registry backbone + its head file, through the loader's path."""
    import onnx

    from detectors.density import merge_backbone_and_head

    backbone = onnx.load_from_string(backbone_bytes)
    return merge_backbone_and_head(backbone, head_with_delta(backbone, fit, delta_dtype)[0])


def evaluate(args) -> None:
    from detectors.density import letterbox
    from detectors.runtime import ort_session
    from detectors.training.fit import errors

    crowd = Path(args.shared) / "data" / "crowd"
    shb, images = data.shanghaitech(crowd / "shanghaitech_B_train")
    mall, video = data.mall(crowd / "mall_train")
    backbone_bytes = (Path(args.shared) / "models" / BACKBONE_FILE).read_bytes()
    shb_images = list(data.iter_images(images, shb.keys))
    mall_images = list(data.iter_video(video, mall.keys))
    report = {}
    for config in args.configs.split(","):
        fits = load_fits(Path(args.fits), config)
        if not all(f"fold{k}" in fits for k in range(FOLDS)):
            print(f"{config}: folds missing, have {sorted(fits)}")
            continue
        shb_pred, mall_pred = np.zeros(len(shb)), np.zeros(len(mall))
        per_fold = []
        for k in range(FOLDS):
            session = ort_session(merged_model(backbone_bytes, fits[f"fold{k}"], args.delta_dtype).SerializeToString())
            _, _, shb_held, mall_held = fit_split(f"fold{k}", len(shb), len(mall), TrainConfig.mall_every, TrainConfig.seed)

            def count(image, session=session):
                return float(session.run(None, {"images": letterbox(image, 1024)[0][None]})[0].sum())

            shb_pred[shb_held] = [count(shb_images[i]) for i in shb_held]
            mall_pred[mall_held] = [count(mall_images[i]) for i in mall_held]
            per_fold.append({"fold": k + 1, "shb": errors(shb_pred[shb_held], shb.counts[shb_held]),
                             "mall": errors(mall_pred[mall_held], mall.counts[mall_held])})
            print(config, k, round(per_fold[-1]["shb"]["mae"], 2), round(per_fold[-1]["mall"]["mae"], 2), flush=True)
        report[config] = {"shb": errors(shb_pred, shb.counts), "mall": errors(mall_pred, mall.counts), "folds": per_fold,
                          "shb_predictions": {k: round(float(p), 2) for k, p in zip(shb.keys, shb_pred)},
                          "mall_predictions": [round(float(p), 2) for p in mall_pred]}
        print(config, "SHB", round(report[config]["shb"]["mae"], 2), "Mall", round(report[config]["mall"]["mae"], 2), flush=True)
    Path(args.report).write_text(json.dumps(report, indent=1))


def export(args) -> None:
    """The final fit's head with its backbone changes carried as ``backbone_delta/`` initializers (the shipped file);
    with ``--cv-report`` (``evaluate``'s output) also the training report and figures beside it."""
    import hashlib

    import onnx

    fits = load_fits(Path(args.fits), args.config)
    backbone = onnx.load(str(Path(args.shared) / "models" / BACKBONE_FILE))
    head, delta, original = head_with_delta(backbone, fits["final"], args.delta_dtype)
    out = Path(args.out)
    out.write_bytes(head.SerializeToString())
    print(f"{out}: head + {len(delta)} backbone deltas ({args.delta_dtype}), {out.stat().st_size} bytes")
    if not args.cv_report:
        return
    cv = json.loads(Path(args.cv_report).read_text())[args.config]
    meta = {p.key: p.value for p in head.metadata_props}
    summary = json.loads((Path(args.fits) / "summary.json").read_text())
    figures = {"config": args.config, "overrides": CONFIGS[args.config], "finetune": json.loads(meta["config"]),
               "epochs": int(meta["epochs"]), "delta_dtype": args.delta_dtype, "backbone_sha256": hashlib.sha256(backbone.SerializeToString()).hexdigest(),
               "head": {"file": out.name, "size": out.stat().st_size, "sha256": hashlib.sha256(out.read_bytes()).hexdigest()},
               "delta_tensors": len(delta), "delta_relative_norm": _relative_change(delta, original),
               "history": {name: f.get("history") for name, f in summary["fits"].items()}, "cv": cv}
    (out.parent / "crowd_density_figures.json").write_text(json.dumps(figures, indent=1))
    (out.parent / "crowd_density_report.md").write_text(finetune_report(figures))
    print(f"wrote {out.parent / 'crowd_density_report.md'} and crowd_density_figures.json")


def _relative_change(delta: dict[str, np.ndarray], original: dict[str, np.ndarray]) -> dict[str, float]:
    ratios = [float(np.linalg.norm(d) / max(np.linalg.norm(original[k]), 1e-12)) for k, d in delta.items()]
    return {"median": float(np.median(ratios)), "max": float(np.max(ratios))}


def finetune_report(f: dict) -> str:
    """Markdown training report of a fine-tuned head: data, seed, epochs, the cross-validated figures."""
    cfg, cv, start = f["finetune"], f["cv"], CONFIGS[f["config"]].get("start")
    start_cfg = TrainConfig(**START_HEADS[start]) if start else None

    def row(name: str, e: dict) -> str:
        return (f"| {name} | {e['images']} | {e['mean_count']:.1f} | **{e['mae']:.2f}** | {e['rmse']:.2f} | {e['bias']:+.2f} | "
                f"{100 * e['mean_rel_err']:.1f}% |")

    lines = [
        "# Crowd density head: training report",
        "",
        f"Written by `scripts/crowd_finetune.py export --config {f['config']}` (do not edit by hand; rerun to refresh).",
        "",
        "## Model",
        ("- Backbone: `yolox_nano_coco_416` (COCO YOLOX-Nano, resolved through `models/models.yaml` and checked by sha256; "
        f"not committed), **fine-tuned**: the head file carries the project-trained change of {f['delta_tensors']} of its "
        f"weight tensors as `backbone_delta/<name>` initializers ({STORED_AS[f.get('delta_dtype', 'float32')]}), "
        "added to the registry's float32 weights at load time "
        f"(median change {100 * f['delta_relative_norm']['median']:.2f} % of a tensor's norm, largest "
        f"{100 * f['delta_relative_norm']['max']:.1f} %)."),
        ("- Input: long side scaled to 1024 px (top-left letterbox, pad 114, BGR, raw 0–255); features: the cls and reg "
        "branch tensors that feed YOLOX's stride-8, stride-16 and stride-32 predictions (128 channels each)."),
        "- Head (stride 16): space-to-depth of the stride-8 features (512) ‖ stride-16 features (128) ‖ their 5×5 mean (128) ‖ "
        "stride-32 features upsampled ×2 (128) → PCA whitening to 64 → "
        + (f"{start_cfg.heads + start_cfg.spatial_heads} ReLU MLPs ({start_cfg.hidden} hidden each, maps averaged in the "
           f"graph), {start_cfg.spatial_heads} of them with a 3×3 convolution over the map of hidden units as output layer"
           if start_cfg else "the MLP ensemble") + " → softplus = people per cell.",
        f"- Head file: `{f['head']['file']}`, {f['head']['size']} bytes, sha256 `{f['head']['sha256']}`.",
        "",
        "## Data and training",
        ("- ShanghaiTech Part B train (400 images, 1024×768), mirrored at random; the Mall train clip (800 frames, 640×480 "
        f"scaled to 1024), one frame in {cfg['mall_every']} used for training; {cfg['blank_frames']} flat frames with count 0."),
        *([(f"- Start: for each fit, the head `guanjia models train-crowd` fits on the same training images with "
           f"`--heads {start_cfg.heads} --spatial-heads {start_cfg.spatial_heads}` (frozen backbone, seed {start_cfg.seed}, "
           f"{start_cfg.epochs} epochs; `scripts/crowd_finetune.py heads`); its whitening stays fixed.")] if start_cfg else []),
        f"- Fine-tuning (`detectors/training/finetune.py`, torch, {cfg['precision']}): backbone and MLPs end to end on the "
        f"count loss, Huber (δ = {cfg['huber_delta']}) of (map sum − count)/√(count+1); AdamW, backbone lr "
        f"{cfg['lr_backbone']} (frozen for {cfg['warmup_epochs']} epoch, then ramped), head lr {cfg['lr_head']}, cosine "
        f"decay, {cfg['batch_images']} images per step at long side "
        f"{' / '.join(str(round(cfg['long_side'] * s)) for s in cfg['scales'])}, **{f['epochs']} epochs** (fixed by the "
        f"run's timing probe), seed {cfg['seed']}"
        + (f"; the loss adds {cfg['distill']} × the mean squared change of the whitened cell features against the frozen "
           "backbone's" if cfg.get("distill") else "") + ".",
        "- Run on a GPU machine (one NVIDIA H200), the five folds and the final fit side by side.",
        "",
        "## Cross-validated figures (5 folds)",
        "",
        (f"Fold k holds out ShanghaiTech-B fold k (seeded permutation, seed {TrainConfig.seed}) and Mall frames block k "
        "(consecutive time blocks; 8 frames either side kept out of training), as `train-crowd --cv 5`. Each fold's "
        "merged ONNX graph scores its held-out original files here (`scripts/crowd_finetune.py evaluate`)."),
        "",
        "| held-out set | images | mean count | MAE | RMSE | bias | mean rel. error |",
        "|---|---|---|---|---|---|---|",
        row("ShanghaiTech-B train, 5-fold CV", cv["shb"]),
        row("Mall train clip, 5 time blocks", cv["mall"]),
        "",
        "| fold | SHB MAE | Mall MAE |",
        "|---|---|---|",
        *[f"| {x['fold']} | {x['shb']['mae']:.2f} | {x['mall']['mae']:.2f} |" for x in cv["folds"]],
        "",
        ("Reproduce (GPU): `scripts/crowd_finetune.py heads`, `pack`, `run --configs "
        f"{f['config']}`, `evaluate`, `export` (see docs/accuracy.md, eighth round)."),
        "",
    ]
    return "\n".join(lines)


DELTA_DTYPES = ("float32", "float16", "int8")
STORED_AS = {"float32": "float32", "float16": "float16",
             "int8": "int8 steps with a float32 scale per output channel in `backbone_delta_scale/<name>`; biases float16"}
DELTA_HELP = ("how the backbone changes are stored in the head file (the served graph is float32 either way; "
              "float16 halves the file; int8, the shipped form, stores weight changes in steps of a scale per output "
              "channel)")


def main() -> None:
    parser, sub = command_parser(__doc__)
    p = sub.add_parser("pack")
    p.add_argument("--shared", help=SHARED_HELP)
    p.add_argument("--out", default=".devdata")
    p.add_argument("--mall-every", type=int, default=3)
    p.add_argument("--heads", help="folder of <name>_<fit>.pkl start heads")
    p = sub.add_parser("run")
    p.add_argument("--data", default=".devdata")
    p.add_argument("--out", required=True)
    p.add_argument("--work", default="/tmp/crowd_finetune_work")
    p.add_argument("--configs", default="H1")
    p.add_argument("--budget-s", type=float, default=520)
    p.add_argument("--margin-s", type=float, default=60)
    p.add_argument("--min-epochs", type=int, default=10)
    p.add_argument("--max-epochs", type=int, default=50)
    p.add_argument("--smoke", action="store_true")
    p = sub.add_parser("fit")
    for name in ("--data", "--run", "--config", "--fit"):
        p.add_argument(name, required=True)
    p.add_argument("--smoke", action="store_true")
    p = sub.add_parser("evaluate")
    p.add_argument("--shared", help=SHARED_HELP)
    p.add_argument("--fits", required=True)
    p.add_argument("--configs", default="H1")
    p.add_argument("--report", default="finetune_cv.json")
    p.add_argument("--delta-dtype", default="int8", choices=DELTA_DTYPES, help=DELTA_HELP)
    p = sub.add_parser("export")
    p.add_argument("--shared", help=SHARED_HELP)
    p.add_argument("--fits", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cv-report", help="evaluate's report: also write the training report and figures beside --out")
    p.add_argument("--delta-dtype", default="int8", choices=DELTA_DTYPES, help=DELTA_HELP)
    p = sub.add_parser("heads")
    p.add_argument("--shared", help=SHARED_HELP)
    p.add_argument("--name", default="g1", choices=sorted(START_HEADS))
    p.add_argument("--out", required=True)
    p.add_argument("--jobs", type=int, default=2)
    args = parse_with_shared(parser)
    {"pack": pack, "run": run_all, "fit": worker, "evaluate": evaluate, "export": export, "heads": heads}[args.command](args)


if __name__ == "__main__":
    main()
