"""Accuracy figures for the evaluation CLI: counting errors and binary classification with a threshold sweep."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIRE_LABELS = {"fire": True, "no_fire": False, "nofire": False, "non_fire": False}


@dataclass(frozen=True)
class CountErrors:
    n: int
    mae: float
    rmse: float
    bias: float  # mean(predicted - truth): negative = undercounting
    mean_truth: float
    mean_predicted: float


def count_errors(truth: Sequence[float], predicted: Sequence[float]) -> CountErrors:
    """MAE, RMSE and bias of predicted counts against ground truth."""
    t = np.asarray(truth, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if len(t) == 0 or len(t) != len(p):
        raise ValueError(f"need equal, non-zero lengths (truth {len(t)}, predicted {len(p)})")
    err = p - t
    return CountErrors(n=len(t), mae=float(np.abs(err).mean()), rmse=float(math.sqrt((err ** 2).mean())),
                       bias=float(err.mean()), mean_truth=float(t.mean()), mean_predicted=float(p.mean()))


@dataclass(frozen=True)
class BinaryScores:
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"threshold": self.threshold, "tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn,
                "precision": self.precision, "recall": self.recall, "f1": self.f1, "fpr": self.fpr}


def binary_scores(labels: Sequence[bool], scores: Sequence[float], threshold: float) -> BinaryScores:
    """Confusion counts when ``score >= threshold`` means positive."""
    y = np.asarray(labels, dtype=bool)
    hit = np.asarray(scores, dtype=np.float64) >= threshold
    return BinaryScores(threshold=threshold, tp=int((hit & y).sum()), fp=int((hit & ~y).sum()),
                        tn=int((~hit & ~y).sum()), fn=int((~hit & y).sum()))


def sweep(labels: Sequence[bool], scores: Sequence[float], thresholds: Sequence[float]) -> list[BinaryScores]:
    return [binary_scores(labels, scores, t) for t in thresholds]


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None


def load_counts(path: Path) -> dict[str, float]:
    """Ground-truth counts: ``{"image.jpg": n}`` or ``{"counts_by_frame_index": {"0": n, ...}}``."""
    data = _read_json(path)
    if isinstance(data, dict) and "counts_by_frame_index" in data:
        data = data["counts_by_frame_index"]
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty object of name -> count")
    counts = {}
    for name, count in data.items():
        if isinstance(count, bool) or not isinstance(count, int | float) or count < 0:
            raise ValueError(f"{path}: {name}: count {count!r} is not a number >= 0")
        counts[str(name)] = float(count)
    return counts


def load_fire_labels(path: Path) -> dict[str, bool]:
    """Fire labels: ``{"image.jpg": "fire" | "no_fire"}``."""
    data = _read_json(path)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty object of name -> \"fire\" | \"no_fire\"")
    out = {}
    for name, label in data.items():
        if str(label).lower() not in FIRE_LABELS:
            raise ValueError(f"{path}: {name}: label {label!r} is not one of {sorted(FIRE_LABELS)}")
        out[name] = FIRE_LABELS[str(label).lower()]
    return out


def natural_key(name: str) -> list:
    """Sort ``IMG_2`` before ``IMG_10``."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def spread(items: Sequence, limit: int | None) -> list:
    """At most ``limit`` items taken evenly across ``items`` (all of them when limit is None)."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit <= 0:
        return []
    return [items[int(i * len(items) / limit)] for i in range(limit)]

