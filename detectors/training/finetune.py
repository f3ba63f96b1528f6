"""Fine-tuning the YOLOX-Nano backbone together with the density head, on image counts (torch: the ``[train]`` extra).

The network is the shipped one: the cut backbone (:mod:`detectors.training.torch_graph`, the registry's
graph with trainable initializers) → the head's cells (space-to-depth stride 8 ‖ stride 16 ‖ its 5×5
mean ‖ stride 32 upsampled) → a fixed whitening → an ensemble of per-cell and 3×3 spatial
MLPs → Softplus, the members' maps averaged. A fit yields the tuned backbone initializers and a
:class:`DensityHead` that :func:`head_to_onnx` exports unchanged. Runs on CPU (hours) or a GPU (minutes).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from detectors.density import CONTEXT_OUTPUT, FEATURE_OUTPUTS, PAD_VALUE, cut_backbone, letterbox
from detectors.training.head import CONTEXT, DensityHead, Mlp, Whitening
from detectors.training.torch_graph import OnnxGraph

log = logging.getLogger(__name__)

OUTPUTS = (*FEATURE_OUTPUTS, CONTEXT_OUTPUT)


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one fine-tuning fit."""

    seed: int = 7
    epochs: int = 40
    batch_images: int = 8
    lr_head: float = 1e-3
    lr_backbone: float = 2e-4
    warmup_epochs: int = 2  # backbone frozen while the new head settles, then its learning rate ramps up over as many
    weight_decay: float = 1e-4  # head weights only: the backbone starts from trained weights
    huber_delta: float = 1.0
    hidden: int = 32
    heads: int = 1
    spatial_heads: int = 1
    scales: tuple[float, ...] = (1.0, 0.8, 0.625)  # each batch is drawn at one of these long-side factors
    long_side: int = 1024
    mall_every: int = 3
    blank_frames: int = 8
    norm_images: int = 64  # training images whose cells set the per-channel standardisation
    precision: str = "bf16"  # on a GPU: "bf16" autocast, or "fp32" (TF32 off too, so a start head sees the features it was fitted on)
    distill: float = 0.0  # weight of the mean squared change of the whitened cell features against the frozen backbone's

    def __post_init__(self) -> None:
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', not {self.precision!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """ONNX SpaceToDepth(2) channel order: (block row, block col, channel)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


def cells(feat8: torch.Tensor, feat16: torch.Tensor, feat32: torch.Tensor) -> torch.Tensor:
    """(N, 896, H/16, W/16) cell features, as :func:`detectors.training.head.cell_features` orders them."""
    ctx = F.avg_pool2d(feat16, CONTEXT, stride=1, padding=CONTEXT // 2, count_include_pad=False)
    return torch.cat([space_to_depth(feat8), feat16, ctx, F.interpolate(feat32, scale_factor=2.0, mode="nearest")], 1)


class DensityNet(nn.Module):
    """Backbone → cells → a fixed whitening (a start head's PCA, or per-channel standardisation) → MLP ensemble;
    ``forward`` gives (N,1,H/16,W/16) float32 density maps."""

    def __init__(self, backbone: OnnxGraph, mean: torch.Tensor, proj: torch.Tensor, cfg: FinetuneConfig,
                 prior_density: float, start: DensityHead | None = None):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1))
        self.register_buffer("proj", proj.T.reshape(proj.shape[1], proj.shape[0], 1, 1).contiguous())  # (K, D, 1, 1)
        dims = proj.shape[1]
        if start is not None:
            if not start.stride32:
                raise ValueError("a start head must read the stride-32 features (trained with stride32=True)")
            self.kernels = [m.kernel for m in start.mlps]
            hidden = start.mlps[0].w1.shape[1]
        else:
            self.kernels = [1] * cfg.heads + [3] * cfg.spatial_heads
            hidden = cfg.hidden
        self.first = nn.ModuleList(nn.Conv2d(dims, hidden, 1) for _ in self.kernels)
        self.second = nn.ModuleList(nn.Conv2d(hidden, 1, k, padding=k // 2) for k in self.kernels)
        for i, (conv1, conv2, k) in enumerate(zip(self.first, self.second, self.kernels)):
            if start is None:
                nn.init.normal_(conv1.weight, 0.0, math.sqrt(2.0 / dims))
                nn.init.zeros_(conv1.bias)
                nn.init.normal_(conv2.weight, 0.0, 0.1 * math.sqrt(1.0 / (k * k * hidden)))
                nn.init.constant_(conv2.bias, math.log(math.expm1(prior_density)))
                continue
            mlp = start.mlps[i]
            with torch.no_grad():
                conv1.weight.copy_(torch.from_numpy(mlp.w1.T.copy()).reshape(hidden, dims, 1, 1))
                conv1.bias.copy_(torch.from_numpy(mlp.b1))
                conv2.weight.copy_(torch.from_numpy(mlp.w2[:, 0].reshape(k, k, hidden).transpose(2, 0, 1).copy())[None])
                conv2.bias.copy_(torch.from_numpy(mlp.b2))

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.first.parameters(), *self.second.parameters()]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return cells(*self.backbone(images))

    def whitened(self, images: torch.Tensor, backbone: OnnxGraph | None = None) -> torch.Tensor:
        """The MLPs' input: whitened cell features of ``backbone`` (default: the one being tuned)."""
        feats = cells(*(backbone or self.backbone)(images)).float()
        with torch.autocast(feats.device.type, enabled=False):  # whitening amplifies low-variance directions: keep fp32
            return F.conv2d(feats - self.mean, self.proj)

    def maps(self, z: torch.Tensor) -> torch.Tensor:
        maps = [F.softplus(conv2(F.relu(conv1(z))).float()) for conv1, conv2 in zip(self.first, self.second)]
        return torch.stack(maps).mean(0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.maps(self.whitened(images))

    def density_head(self) -> DensityHead:
        """The head as numpy :class:`DensityHead`, for ONNX export."""
        proj = self.proj[:, :, 0, 0].T.float().cpu().numpy()
        whitening = Whitening(self.mean.flatten().float().cpu().numpy(), np.ascontiguousarray(proj))
        mlps = []
        for conv1, conv2, k in zip(self.first, self.second, self.kernels):
            w1 = conv1.weight.detach().float().cpu().numpy()[:, :, 0, 0].T
            w2 = conv2.weight.detach().float().cpu().numpy()[0].transpose(1, 2, 0).reshape(-1, 1)  # (row, col, unit)
            mlps.append(Mlp(np.ascontiguousarray(w1), conv1.bias.detach().float().cpu().numpy(), np.ascontiguousarray(w2),
                            conv2.bias.detach().float().cpu().numpy(), k))
        return DensityHead(whitening, mlps, stride32=True)


@dataclass
class ScaledImages:
    """Training images letterboxed at one long side: uint8 (N,3,H,W) BGR, 114-padded, and each content width."""

    pixels: torch.Tensor
    widths: np.ndarray


def letterboxed(images: list[np.ndarray], long_side: int) -> ScaledImages:
    """Letterbox as inference does, then pad all to one size (right/bottom, 114)."""
    boxes = [letterbox(image, long_side) for image in images]
    height = max(t.shape[1] for t, _ in boxes)
    width = max(t.shape[2] for t, _ in boxes)
    out = np.full((len(boxes), 3, height, width), PAD_VALUE, np.uint8)
    for i, (tensor, _) in enumerate(boxes):
        out[i, :, :tensor.shape[1], :tensor.shape[2]] = tensor
    return ScaledImages(torch.from_numpy(out), np.array([b.width for _, b in boxes]))


def batch_tensor(scaled: ScaledImages, index: np.ndarray, flips: np.ndarray, device: torch.device) -> torch.Tensor:
    """Float (B,3,H,W) images of ``index``, the content of those with ``flips`` mirrored in place."""
    x = scaled.pixels[torch.from_numpy(index)].to(device, non_blocking=True).float()
    for j in np.flatnonzero(flips):
        w = int(scaled.widths[index[j]])
        x[j, :, :, :w] = x[j, :, :, :w].flip(-1)
    return x


def _amp(device: torch.device, cfg: FinetuneConfig) -> bool:
    if device.type == "cuda" and cfg.precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return device.type == "cuda" and cfg.precision == "bf16"


def count_loss(pred: torch.Tensor, counts: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber of (map sum − count)/√(count+1), as the numpy head is trained."""
    r = (pred - counts) / torch.sqrt(counts + 1.0)
    return F.huber_loss(r, torch.zeros_like(r), delta=delta)


def build(backbone: onnx.ModelProto, images: list[np.ndarray], counts: np.ndarray, cfg: FinetuneConfig,
          device: torch.device, start: DensityHead | None = None) -> tuple[DensityNet, list[ScaledImages]]:
    """The network and the images at every scale.

    With a ``start`` head (trained on frozen features of the same training images) the network begins as
    that head: its whitening stays fixed and its MLPs are fine-tuned. Without one, a per-channel
    standardisation is measured on ``norm_images`` training images and the MLPs start at random.
    """
    torch.manual_seed(cfg.seed)
    graph = OnnxGraph(cut_backbone(backbone, OUTPUTS)).to(device)
    scaled = [letterboxed(images, round(cfg.long_side * s)) for s in cfg.scales]
    cells_per_image = scaled[0].pixels.shape[2] * scaled[0].pixels.shape[3] / 256
    prior = float(counts.mean() / cells_per_image) + 1e-3
    if start is not None:
        mean = torch.from_numpy(start.whitening.mean.astype(np.float32))
        proj = torch.from_numpy(start.whitening.proj.astype(np.float32))
        return DensityNet(graph, mean, proj, cfg, prior, start).to(device), scaled
    pick = np.random.default_rng(cfg.seed).permutation(len(images))[:cfg.norm_images]
    total, total_sq, n = 0.0, 0.0, 0
    with torch.no_grad():
        for begin in range(0, len(pick), cfg.batch_images):
            index = np.sort(pick[begin:begin + cfg.batch_images])
            z = cells(*graph(batch_tensor(scaled[0], index, np.zeros(len(index), bool), device))).double()
            total = total + z.sum((0, 2, 3))
            total_sq = total_sq + (z * z).sum((0, 2, 3))
            n += z.shape[0] * z.shape[2] * z.shape[3]
    mean = total / n
    std = torch.sqrt(torch.clamp(total_sq / n - mean * mean, min=1e-8))
    net = DensityNet(graph, mean.float().cpu(), torch.diag(1.0 / std).float().cpu(), cfg, prior)
    return net.to(device), scaled


def train(net: DensityNet, scaled: list[ScaledImages], counts: np.ndarray, cfg: FinetuneConfig, device: torch.device,
          epochs: int | None = None, max_steps: int | None = None) -> list[dict]:
    """AdamW, cosine decay; each epoch visits every image once, each batch at one random scale, mirrored at random.

    With ``cfg.distill``, the loss also holds the whitened cell features near those of the backbone as it is when
    this call starts (a frozen copy). Returns per-epoch records (train MAE, mean squared feature change when
    distilling, seconds). ``max_steps`` stops early (for timing probes).
    """
    epochs = cfg.epochs if epochs is None else epochs
    rng = np.random.default_rng(cfg.seed)
    backbone_params = list(net.backbone.parameters())
    opt = torch.optim.AdamW([{"params": backbone_params, "lr": 0.0, "weight_decay": 0.0},
                             {"params": net.head_parameters(), "lr": cfg.lr_head, "weight_decay": cfg.weight_decay}])
    per_epoch = -(-len(counts) // cfg.batch_images)
    total = epochs * per_epoch
    warm = cfg.warmup_epochs * per_epoch
    target = torch.as_tensor(counts, dtype=torch.float32, device=device)
    amp = _amp(device, cfg)
    reference = None
    if cfg.distill:  # a frozen copy of the backbone as this call starts: the tuned one is held near its whitened features
        reference = copy.deepcopy(net.backbone).requires_grad_(False)
    history, step, start = [], 0, time.perf_counter()
    net.train()
    for epoch in range(epochs):
        order = rng.permutation(len(counts))
        abs_err, drift = 0.0, 0.0
        for b in range(per_epoch):
            index = np.sort(order[b * cfg.batch_images:(b + 1) * cfg.batch_images])
            scale = int(rng.integers(len(scaled)))
            flips = rng.random(len(index)) < 0.5
            cosine = 0.5 * (1 + math.cos(math.pi * step / total))
            ramp = min(1.0, max(0.0, (step - warm) / max(warm, 1))) if warm else 1.0
            opt.param_groups[0]["lr"] = cfg.lr_backbone * cosine * ramp
            opt.param_groups[1]["lr"] = cfg.lr_head * cosine
            x = batch_tensor(scaled[scale], index, flips, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                z = net.whitened(x)
                pred = net.maps(z).sum((1, 2, 3))
                if reference is not None:
                    with torch.no_grad():
                        z0 = net.whitened(x, reference)
            loss = count_loss(pred.float(), target[index], cfg.huber_delta)
            if reference is not None:
                change = F.mse_loss(z.float(), z0.float())
                loss = loss + cfg.distill * change
                drift += float(change.detach()) / per_epoch
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            abs_err += float((pred.detach().float() - target[index]).abs().sum())
            step += 1
            if max_steps is not None and step >= max_steps:
                return history
        history.append({"epoch": epoch + 1, "train_mae": abs_err / len(counts), "seconds": time.perf_counter() - start}
                       | ({"feature_change": drift} if reference is not None else {}))
        log.info("epoch %d: train MAE %.2f (%.0f s)", epoch + 1, history[-1]["train_mae"], history[-1]["seconds"])
    return history


@torch.no_grad()
def predict(net: DensityNet, images: list[np.ndarray], cfg: FinetuneConfig, device: torch.device) -> np.ndarray:
    """Counts of ``images`` at the inference long side."""
    net.eval()
    out = []
    for start in range(0, len(images), cfg.batch_images):
        scaled = letterboxed(images[start:start + cfg.batch_images], cfg.long_side)
        x = batch_tensor(scaled, np.arange(len(scaled.widths)), np.zeros(len(scaled.widths), bool), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=_amp(device, cfg)):
            out.append(net(x).sum((1, 2, 3)).float().cpu().numpy())
    net.train()
    return np.concatenate(out) if out else np.zeros(0)
