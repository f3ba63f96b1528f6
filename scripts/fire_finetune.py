"""Cross-validated fine-tuning of the OnFire classifier on CAIR dev (a GPU machine), and its evaluation here.

    python scripts/fire_finetune.py pack --out .firedata                 # images as the scorer resizes them
    python scripts/fire_finetune.py run --data .firedata --out OUT --configs F1,F2 --workers 12
    python scripts/fire_finetune.py evaluate --results OUT/results.npz   # figures, checks through onnxruntime

``run`` fits every (config, repeat, fold) of train-fire's stratified 5-fold × 5-repeat split and a final fit
on all of CAIR dev, spread over worker processes that share the device. Each fold's model scores its
held-out images and the does-not-break check images; the final fit's weights come back. ``evaluate``
prints the out-of-fold figures (threshold 0.5, the tuned model alone, nothing picked on the folds), the
check failures of every fold's model, and re-scores the final models through onnxruntime on the
original files, as the product would run them.
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

from detectors.evaluation import binary_scores, load_fire_labels, natural_key
from detectors.training.data import iter_images
from detectors.training.fire_head import check_images, fold_masks
from scripts.script_args import SHARED_HELP, command_parser, parse_with_shared

log = logging.getLogger("fire_finetune")
FOLDS, REPEATS, SEED, SIZE = 5, 5, 0, 224
MODEL_FILE = "shufflenetv2_onfire_224.onnx"
CONFIGS = {  # rows declared in docs/accuracy.md (fire, fifth round) before the run
    "F1": {},
    "F2": {"lr": 3e-4},
    "F3": {"degrade": True},
    "F4": {"trainable": "last", "lr": 3e-4},
}


def resized(images) -> np.ndarray:
    """BGR images stretched to 224×224 as the scorer does (cv2 bilinear), stacked uint8 (N, 224, 224, 3)."""
    return np.stack([cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) for im in images])


def pack(args) -> None:
    shared = Path(args.shared)
    cair = shared / "data" / "fire" / "cair_dev"
    truth = load_fire_labels(cair / "labels.json")
    names = sorted(truth, key=natural_key)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    np.savez_compressed(out / "cair.npz", images=resized(iter_images(cair / "images", names)),
                        labels=np.array([truth[n] for n in names]), names=np.array(names))
    images, must, check_names = check_images(shared)
    np.savez_compressed(out / "checks.npz", images=resized(images), must=must, names=np.array(check_names))
    shutil.copy(shared / "models" / MODEL_FILE, out)
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    print(f"packed {len(names)} CAIR images and {len(must)} check images into {out} ({size:.1f} MiB)")


def jobs(configs: list[str], inner: bool = False) -> list[tuple[str, int, int, int]]:
    """(config, repeat, fold, inner fold) in config-major order. Fold -1 is the final fit on every image; inner
    fold -1 is the outer fit itself, else the inner fit of nested CV that holds out that part of the outer training
    images (split as train-fire's ``_outer_folds``)."""
    if inner:
        return [(c, r, f, k) for c in configs for r in range(REPEATS) for f in range(FOLDS) for k in range(FOLDS)]
    return [(c, r, f, -1) for c in configs for r in range(REPEATS) for f in range(FOLDS)] + [(c, 0, -1, -1) for c in configs]


def worker(args) -> None:
    import onnx
    import torch

    from detectors.training.fire_finetune import FireFinetuneConfig, fire_logits, train

    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = Path(args.data)
    cair, checks = np.load(data / "cair.npz"), np.load(data / "checks.npz")
    labels = cair["labels"].astype(bool)
    images = torch.from_numpy(cair["images"]).to(device)
    check_imgs = torch.from_numpy(checks["images"]).to(device)
    model = onnx.load(str(data / MODEL_FILE))
    work = Path(args.work)
    mine = jobs(args.configs.split(","), args.inner)[args.index::args.of]
    for config, repeat, fold, inner in mine:
        tag = f"{config}_r{repeat}_f{fold}" + (f"_i{inner}" if inner >= 0 else "")
        t0 = time.time()
        overrides = dict(CONFIGS[config])
        if args.epochs:
            overrides["epochs"] = args.epochs
        seed = SEED + 1000 * repeat + (fold + 1 if inner < 0 else 100 * (fold + 1) + inner + 1)
        cfg = FireFinetuneConfig(seed=seed, **overrides)
        fit, held = fold_masks(labels, FOLDS, SEED, repeat, fold, inner if inner >= 0 else None)
        graph = train(model, images[torch.as_tensor(np.flatnonzero(fit), device=device)], labels[fit].astype(np.float32),
                      cfg, device)
        result = {"held": np.flatnonzero(held), "held_logits": fire_logits(graph, images[torch.as_tensor(np.flatnonzero(held), device=device)])}
        if inner < 0:
            result["check_logits"] = fire_logits(graph, check_imgs)
        if fold < 0:
            result |= {f"init/{k}": v for k, v in graph.initializer_arrays().items()}
        np.savez(work / f"{tag}.npz", **result)
        print(json.dumps({"job": tag, "seconds": round(time.time() - t0, 1), "device": device}), flush=True)


def run_all(args) -> None:
    start = time.time()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = (["--epochs", str(args.epochs)] if args.epochs else []) + (["--inner"] if args.inner else [])
    procs = [subprocess.Popen([sys.executable, __file__, "worker", "--data", args.data, "--work", str(work), "--configs",
                               args.configs, "--index", str(i), "--of", str(args.workers), *extra])
             for i in range(args.workers)]
    deadline = start + args.budget_s
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        time.sleep(1)
    for p in procs:
        if p.poll() is None:
            p.kill()
    codes = [p.wait() for p in procs]
    configs = args.configs.split(",")
    n = len(np.load(Path(args.data) / "cair.npz")["labels"])
    bundle, done = {}, []
    for config in configs:
        oof = np.full((REPEATS, n), np.nan)
        inner_oof = np.full((REPEATS, FOLDS, n), np.nan)
        checks = {}
        for _, repeat, fold, inner in jobs([config], args.inner):
            path = work / (f"{config}_r{repeat}_f{fold}" + (f"_i{inner}" if inner >= 0 else "") + ".npz")
            if not path.exists():
                continue
            done.append(path.stem)
            part = np.load(path)
            if inner >= 0:
                inner_oof[repeat, fold, part["held"]] = part["held_logits"]
            elif fold >= 0:
                oof[repeat, part["held"]] = part["held_logits"]
                checks[f"r{repeat}_f{fold}"] = part["check_logits"]
            else:
                checks["final"] = part["check_logits"]
                bundle |= {f"{config}/{k}": v for k, v in part.items() if k.startswith("init/")}
        if args.inner:
            bundle[f"{config}/inner"] = inner_oof
            continue
        bundle[f"{config}/oof"] = oof
        for key, value in checks.items():
            bundle[f"{config}/checks/{key}"] = value
    np.savez_compressed(out / "results.npz", **bundle)
    summary = {"configs": {c: CONFIGS[c] for c in configs}, "epochs_override": args.epochs, "workers": args.workers,
               "exit_codes": codes, "inner": args.inner,
               "done": len(done), "of": len(jobs(configs, args.inner)), "seconds": round(time.time() - start, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)


def onnx_fire_logits(session, images) -> np.ndarray:
    """Fire logits of BGR images through an onnxruntime session of the OnFire graph, preprocessed as the scorer does
    (the registry's input spec: stretch to 224×224, RGB, ImageNet mean and std)."""
    from detectors.fire_tuned import BACKBONE_MODEL, LOGIT_OUTPUT
    from detectors.preprocess import to_tensor
    from detectors.registry import ModelRegistry

    x, _ = to_tensor(list(images), ModelRegistry.load().spec(BACKBONE_MODEL).input)
    return -session.run([LOGIT_OUTPUT], {"input": x})[0][:, 0]


def evaluate(args) -> None:
    import onnx

    from detectors.density import tuned_initializers

    shared = Path(args.shared)
    results = np.load(args.results)
    data = Path(args.data)
    cair, checks = np.load(data / "cair.npz"), np.load(data / "checks.npz")
    y = cair["labels"].astype(bool)
    must = checks["must"].astype(bool)
    configs = sorted({k.split("/")[0] for k in results.files})
    report = {}
    for config in configs:
        oof = results[f"{config}/oof"]
        complete = [r for r in range(REPEATS) if not np.isnan(oof[r]).any()]
        runs = [binary_scores(y.tolist(), (1 / (1 + np.exp(-oof[r]))).tolist(), 0.5) for r in complete]
        figures = {k: float(np.mean([getattr(s, k) for s in runs])) for k in ("precision", "recall", "f1", "fpr")} if runs else {}
        fold_fails = {}
        for key in results.files:
            if key.startswith(f"{config}/checks/"):
                logits = results[key]
                fails = int(((logits >= 0) != must).sum())
                fold_fails[key.rsplit("/", 1)[1]] = fails
        row = {"repeats_complete": len(complete), **figures, "check_failures": fold_fails}
        init = {k.split("/", 2)[2]: results[k] for k in results.files if k.startswith(f"{config}/init/")}
        if init:  # the final fit through onnxruntime on the original files, as the product runs it
            import onnxruntime as ort

            tuned = tuned_initializers(onnx.load(str(data / MODEL_FILE)), init)
            session = ort.InferenceSession(tuned.SerializeToString(), providers=["CPUExecutionProvider"])
            originals, _, names = check_images(shared)
            ort_checks = onnx_fire_logits(session, originals)
            row["final_ort_vs_device_max_abs"] = float(np.abs(ort_checks - results[f"{config}/checks/final"]).max())
            failed = [(names[i], round(float(1 / (1 + np.exp(-ort_checks[i]))), 3)) for i in np.flatnonzero((ort_checks >= 0) != must)]
            row["final_checks_failed"] = failed
            p = 1 / (1 + np.exp(-ort_checks))
            row["final_checks"] = {"fire_min": float(p[must].min()), "nonfire_max": float(p[~must].max()),
                                   "furg_pass": f"{int((p[must][-90:] >= 0.5).sum())}/90"}
        report[config] = row
        print(config, json.dumps({k: (f"{v:.2g}" if k.endswith("max_abs") else round(v, 3) if isinstance(v, float) else v)
                                  for k, v in row.items() if k != "check_failures"}))
        fails = list(fold_fails.values())
        print(f"   fold models failing any check: {sum(f > 0 for f in fails)} of {len(fails)}; failures per model "
              f"median {np.median(fails) if fails else 'n/a'}, max {max(fails) if fails else 'n/a'}")
    Path(args.report).write_text(json.dumps(report, indent=1))


def nested(args) -> None:
    """Sixth round: the tuned logit blended with OnFire's, (blend, offset) picked under the checks, scored nested."""
    import onnxruntime as ort

    from detectors.fire_tuned import blend_logits
    from detectors.training.fire_head import CheckSet, select_blend

    outer, inner_results = np.load(args.results), np.load(args.inner)
    data = Path(args.data)
    cair, checks = np.load(data / "cair.npz"), np.load(data / "checks.npz")
    y = cair["labels"].astype(bool)
    session = ort.InferenceSession(str(data / MODEL_FILE), providers=["CPUExecutionProvider"])
    nofire = -onnx_fire_logits(session, cair["images"]).astype(np.float64)
    check_set = CheckSet(-onnx_fire_logits(session, checks["images"]).astype(np.float64)[:, None],  # last column: OnFire
                         checks["must"].astype(bool), tuple(checks["names"]))
    report = {}
    for config in sorted({k.split("/")[0] for k in inner_results.files}):
        oof, inner = outer[f"{config}/oof"], inner_results[f"{config}/inner"]
        p = np.zeros_like(oof)
        picks = []
        for r in range(REPEATS):
            for f in range(FOLDS):
                train, test = fold_masks(y, FOLDS, SEED, r, f)
                try:
                    blend, offset = select_blend(inner[r, f, train], nofire[train], y[train],
                                                 outer[f"{config}/checks/r{r}_f{f}"], check_set, 0.5)
                    picks.append((float(blend), float(offset)))
                except ValueError:  # no setting keeps the checks: OnFire alone, as the scorer would fall back
                    blend, offset = 0.0, 0.0
                    picks.append(None)
                p[r, test] = 1 / (1 + np.exp(-blend_logits(oof[r, test], nofire[test], blend, offset)))
        runs = [binary_scores(y.tolist(), p[r].tolist(), 0.5) for r in range(REPEATS)]
        figures = {k: float(np.mean([getattr(s, k) for s in runs])) for k in ("precision", "recall", "f1", "fpr")}
        try:  # the setting that would ship: picked on every repeat's out-of-fold logits, checks by the final model
            ship = select_blend(oof.ravel(), np.tile(nofire, REPEATS), np.tile(y, REPEATS), outer[f"{config}/checks/final"],
                                check_set, 0.5)
            z = blend_logits(oof, nofire[None, :], *ship)
            best = [binary_scores(y.tolist(), (1 / (1 + np.exp(-z[r]))).tolist(), 0.5) for r in range(REPEATS)]
            under_checks = {"blend": ship[0], "offset": ship[1], "f1": float(np.mean([b.f1 for b in best])),
                            "fpr": float(np.mean([b.fpr for b in best]))}
        except ValueError:
            under_checks = None
        kept = [q for q in picks if q is not None]
        report[config] = {"nested": figures, "folds_without_a_pick": picks.count(None), "picks": picks,
                          "pick_on_all_of_cair": under_checks,
                          "blend_range": [min(b for b, _ in kept), max(b for b, _ in kept)] if kept else None,
                          "offset_range": [min(o for _, o in kept), max(o for _, o in kept)] if kept else None}
        print(config, json.dumps({k: v for k, v in report[config].items() if k != "picks"}))
    Path(args.report).write_text(json.dumps(report, indent=1))


def main() -> None:
    parser, sub = command_parser(__doc__)
    p = sub.add_parser("pack")
    p.add_argument("--shared", help=SHARED_HELP)
    p.add_argument("--out", default=".firedata")
    p = sub.add_parser("run")
    p.add_argument("--data", default=".firedata")
    p.add_argument("--out", required=True)
    p.add_argument("--work", default="/tmp/fire_finetune_work")
    p.add_argument("--configs", default="F1")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--budget-s", type=float, default=480, help="workers still running then are stopped; finished fits return")
    p.add_argument("--epochs", type=int, default=0, help="override every config's epochs (smoke runs only)")
    p.add_argument("--inner", action="store_true", help="the inner fits of nested CV instead of the outer folds")
    p = sub.add_parser("worker")
    for name in ("--data", "--work", "--configs"):
        p.add_argument(name, required=True)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--of", type=int, required=True)
    p.add_argument("--epochs", type=int, default=0)
    p.add_argument("--inner", action="store_true")
    p = sub.add_parser("evaluate")
    p.add_argument("--shared", help=SHARED_HELP)
    p.add_argument("--data", default=".firedata")
    p.add_argument("--results", required=True)
    p.add_argument("--report", default="fire_finetune_cv.json")
    p = sub.add_parser("nested")
    p.add_argument("--data", default=".firedata")
    p.add_argument("--results", required=True, help="the outer run's results.npz")
    p.add_argument("--inner", required=True, help="the --inner run's results.npz")
    p.add_argument("--report", default="fire_finetune_nested.json")
    args = parse_with_shared(parser)
    {"pack": pack, "run": run_all, "worker": worker, "evaluate": evaluate, "nested": nested}[args.command](args)


if __name__ == "__main__":
    main()
