"""Fine-tuning the OnFire classifier end to end on labelled photos (torch: the ``[train]`` extra).

The network is the registry's OnFire graph run by :class:`OnnxGraph`, its weights trainable under their
own initializer names, so a fit is a set of tuned initializers for that graph and nothing else. Inputs
are the images exactly as the scorer resizes them (full frame stretched to 224×224, uint8 BGR); the
graph's normalisation (BGR→RGB, ImageNet mean and std) is applied here. Training views are random
crops, flips and brightness/contrast changes drawn on the device; ``degrade`` adds a CCTV-like
down-and-up scaling. The loss is binary cross-entropy on the fire logit, ``-nofire_logit``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from detectors.training.torch_graph import OnnxGraph

log = logging.getLogger(__name__)

MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)
LAST_STAGES = ("/stage4/", "/conv5/", "fc.")  # what ``trainable="last"`` leaves free


@dataclass(frozen=True)
class FireFinetuneConfig:
    """Hyper-parameters of one fine-tuning fit."""

    seed: int = 0
    epochs: int = 30
    batch_images: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    trainable: str = "all"  # "all", or "last": the last stage, conv5 and fc
    crop_area: tuple[float, float] = (0.6, 1.0)  # random crop, as a fraction of the image's area
    jitter: float = 0.15  # brightness and contrast factors drawn from 1 ± jitter
    degrade: bool = False  # half the batches scaled down by 0.25–1 and back up, like a low-resolution camera

    def __post_init__(self) -> None:
        if self.trainable not in ("all", "last"):
            raise ValueError(f"trainable must be 'all' or 'last', not {self.trainable!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def _consumers(model: onnx.ModelProto) -> dict[str, str]:
    """Initializer name → the name of the node that consumes it (ONNX node names carry the module path)."""
    return {name: node.name for node in model.graph.node for name in node.input}


def trainable_names(model: onnx.ModelProto, trainable: str) -> set[str]:
    """The weight initializers a fit may change."""
    graph = OnnxGraph(model)
    if trainable == "all":
        return set(graph.names)
    users = _consumers(model)
    return {name for name in graph.names if any(name.startswith(p) or users.get(name, "").startswith(p) for p in LAST_STAGES)}


def normalise(images: torch.Tensor) -> torch.Tensor:
    """(N, 224, 224, 3) uint8 BGR → the graph's input: (N, 3, 224, 224) float RGB, ImageNet-normalised."""
    x = images.permute(0, 3, 1, 2).flip(1).float() / 255.0
    mean = torch.tensor(MEAN_RGB, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD_RGB, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(images: torch.Tensor, cfg: FireFinetuneConfig, gen: torch.Generator) -> torch.Tensor:
    """Random views of a uint8 BGR batch, returned as the graph's normalised input."""
    n, size = images.shape[0], images.shape[1]
    dev = images.device
    x = images.permute(0, 3, 1, 2).float()

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen, device=dev)

    area = uniform(*cfg.crop_area)
    log_ratio = uniform(math.log(3 / 4), math.log(4 / 3))
    sx = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    sy = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    tx = (uniform(-1, 1)) * (1 - sx)
    ty = (uniform(-1, 1)) * (1 - sy)
    flip = torch.where(torch.rand(n, generator=gen, device=dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx * flip, tx, sy, ty
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.degrade and torch.rand(1, generator=gen, device=dev).item() < 0.5:
        small = max(8, int(size * (0.25 + 0.75 * torch.rand(1, generator=gen, device=dev).item())))
        x = F.interpolate(F.interpolate(x, size=(small, small), mode="area"), size=(size, size), mode="bilinear",
                          align_corners=False)
    if cfg.jitter:
        grey = x.mean(dim=(1, 2, 3), keepdim=True)
        contrast = uniform(1 - cfg.jitter, 1 + cfg.jitter).view(n, 1, 1, 1)
        brightness = uniform(1 - cfg.jitter, 1 + cfg.jitter).view(n, 1, 1, 1)
        x = ((x - grey) * contrast + grey) * brightness
    x = x.clamp(0, 255).round()
    return normalise(x.permute(0, 2, 3, 1))


def fire_logits(graph: OnnxGraph, images: torch.Tensor, batch: int = 64) -> np.ndarray:
    """Fire logit (``-nofire_logit``) of uint8 BGR images (N, 224, 224, 3) already on the graph's device."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(-graph(normalise(images[i:i + batch]))[0].float().squeeze(1))
    return torch.cat(out).cpu().numpy().astype(np.float64) if out else np.zeros(0)


def train(model: onnx.ModelProto, images: torch.Tensor, labels: np.ndarray, cfg: FireFinetuneConfig,
          device: str = "cpu") -> OnnxGraph:
    """Fine-tune ``model`` on uint8 BGR ``images`` (N, 224, 224, 3) with 0/1 ``labels``; returns the tuned graph."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    graph = OnnxGraph(model).to(device)
    free = trainable_names(model, cfg.trainable)
    params = []
    for name, key in graph.names.items():
        p = getattr(graph, key)
        p.requires_grad_(name in free)
        if name in free:
            params.append(p)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    images = images.to(device)
    y = torch.as_tensor(labels, dtype=torch.float32, device=device)
    steps_per_epoch = max(1, math.ceil(len(images) / cfg.batch_images))
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    start = time.time()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(images), generator=gen, device=device)
        running = 0.0
        for i in range(0, len(order), cfg.batch_images):
            idx = order[i:i + cfg.batch_images]
            logit = -graph(augment(images[idx], cfg, gen))[0].squeeze(1)
            loss = F.binary_cross_entropy_with_logits(logit, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item() * len(idx)
        log.debug("epoch %d loss %.4f (%.0f s)", epoch, running / len(images), time.time() - start)
    graph.eval()
    return graph
