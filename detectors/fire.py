"""Fire scoring: the full-frame OnFire classifier and per-camera N-of-M confirmation."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from detectors.registry import ModelError, ModelRegistry
from detectors.runtime import OnnxModel, Runtime
from detectors.settings import FireSettings

Region = tuple[float, float, float, float]


class OnFireScorer:
    """P(fire) of the whole frame: ``sigmoid(-nofire_logit)``; it does not localise."""

    name = "classifier"

    def __init__(self, model: OnnxModel):
        spec = model.spec
        if spec.task != "fire_classifier" or spec.output.decoding != "sigmoid_negated":
            raise ModelError(f"model {spec.name} is a {spec.task} model, not a fire classifier")
        self.model = model
        self.model_id = spec.model_id

    @classmethod
    def from_registry(cls, registry: ModelRegistry, settings: FireSettings, runtime: Runtime) -> OnFireScorer:
        return cls(runtime.model(registry, settings.model))

    def score(self, images: Sequence[np.ndarray]) -> list[tuple[float, Region | None]]:
        return self.model.infer(images, self.model.prepare, _probabilities)


def _probabilities(output: np.ndarray, _ratios: np.ndarray) -> list[tuple[float, Region | None]]:
    logits = output.reshape(len(output), -1)[:, 0].astype(np.float64)
    return [(float(p), None) for p in 1.0 / (1.0 + np.exp(logits))]


class FireConfirmer:
    """One camera's score history: fire is confirmed when ``confirm_k`` of the last ``confirm_n`` scores reach the threshold."""

    def __init__(self, settings: FireSettings):
        self.settings = settings
        self._history: deque[bool] = deque(maxlen=settings.confirm_n)

    def update(self, score: float) -> bool:
        """Record one frame's P(fire); True while the camera's fire is confirmed."""
        self._history.append(score >= self.settings.threshold)
        return sum(self._history) >= self.settings.confirm_k
