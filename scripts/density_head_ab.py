"""Images/s of two density heads merged behind the same YOLOX-Nano backbone, side by side in one process.

Each image goes through both estimators, the order alternating from image to image, so both see the
same machine state; prints images/s of each and the ratio B/A.

    .venv/bin/python scripts/density_head_ab.py OLD_HEAD.onnx models/trained/crowd_density_head.onnx [--images 40]

Get an earlier committed head with ``git show REV:models/trained/crowd_density_head.onnx > /tmp/old.onnx``.
A research tool for choosing a head; ``guanjia bench density`` measures the shipped one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2

from detectors.density import BACKBONE_MODEL, DensityEstimator
from detectors.registry import ModelRegistry
from pipeline.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("head_a", type=Path)
    parser.add_argument("head_b", type=Path)
    parser.add_argument("--images", type=int, default=40, help="ShanghaiTech-B images timed (1024×768)")
    args = parser.parse_args()
    backbone = ModelRegistry.load().locate(BACKBONE_MODEL)
    heads = {"A": DensityEstimator.from_files(backbone, args.head_a), "B": DensityEstimator.from_files(backbone, args.head_b)}
    folder = Settings().shared_dir / "data" / "crowd" / "shanghaitech_B_train" / "images"
    paths = sorted(folder.glob("*.jpg"))[:args.images]
    if not paths:
        raise SystemExit(f"no images in {folder} (GUANJIA_SHARED_DIR)")
    images = [cv2.imread(str(p)) for p in paths]
    for estimator in heads.values():
        estimator.density(images[:2])  # warm-up
    seconds = dict.fromkeys(heads, 0.0)
    for i, image in enumerate(images):
        for name in (("A", "B") if i % 2 else ("B", "A")):
            start = time.perf_counter()
            heads[name].density([image])
            seconds[name] += time.perf_counter() - start
    for name, path in (("A", args.head_a), ("B", args.head_b)):
        print(f"{name} {path}: {len(images) / seconds[name]:.1f} images/s")
    print(f"speed B/A: {seconds['A'] / seconds['B']:.2f}")


if __name__ == "__main__":
    main()
