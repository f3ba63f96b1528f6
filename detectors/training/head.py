"""The density head: per-cell features → PCA whitening → 1×1-conv MLP → softplus, trained on image counts.

Cells are at stride 16. A cell's input is the four stride-8 feature vectors under it (space-to-depth),
the stride-16 features, the stride-16 features averaged over the 5×5 neighbourhood (context) and,
for heads trained with them, the stride-32 features of the cell's parent (nearest upsampling ×2).
Only image-level counts are known, so the loss compares the *sum* of the map with the count; the
network is local (1×1 convolutions on local features), so the count is spread where people look like
people, which is what makes per-zone sums meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

CONTEXT = 5  # AveragePool kernel on feat16


def space_to_depth(feat8: np.ndarray) -> np.ndarray:
    """(N,C,H,W) → (N,4C,H/2,W/2) in ONNX SpaceToDepth order (block row, block col, channel)."""
    n, c, h, w = feat8.shape
    x = feat8.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 3, 5, 1, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def average_pool(x: np.ndarray, k: int = CONTEXT) -> np.ndarray:
    """(N,C,H,W) mean over a k×k window, zero padding not counted (ONNX AveragePool, count_include_pad=0)."""
    n, c, h, w = x.shape
    ones = cv2.boxFilter(np.ones((h, w), np.float32), -1, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
    out = np.empty_like(x, dtype=np.float32)
    for i in range(n):
        for j in range(0, c, 64):  # OpenCV filters at most 512 channels at once; 64 keeps it cache-friendly
            hwc = np.ascontiguousarray(x[i, j:j + 64].transpose(1, 2, 0), dtype=np.float32)
            s = cv2.boxFilter(hwc, -1, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
            out[i, j:j + 64] = (s.reshape(h, w, -1) / ones[..., None]).transpose(2, 0, 1)
    return out


def upsample2(x: np.ndarray) -> np.ndarray:
    """(N,C,H,W) → (N,C,2H,2W), each value repeated 2×2 (ONNX Resize, nearest, asymmetric, floor)."""
    return x.repeat(2, axis=2).repeat(2, axis=3)


def cell_features(feat8: np.ndarray, feat16: np.ndarray, feat32: np.ndarray | None = None) -> np.ndarray:
    """(N,128,H/8,W/8), (N,128,H/16,W/16) [and (N,128,H/32,W/32)] → (N, H/16·W/16, 768 [+128]) float32 cell vectors."""
    f16 = np.asarray(feat16, np.float32)
    parts = [space_to_depth(np.asarray(feat8, np.float32)), f16, average_pool(f16)]
    if feat32 is not None:
        parts.append(upsample2(np.asarray(feat32, np.float32)))
    x = np.concatenate(parts, axis=1)
    n, c = x.shape[:2]
    return x.reshape(n, c, -1).transpose(0, 2, 1)


@dataclass
class Whitening:
    """x ↦ (x − mean) · proj, keeping the top principal components scaled to unit variance."""

    mean: np.ndarray  # (D,)
    proj: np.ndarray  # (D, K)

    @classmethod
    def fit(cls, cells: np.ndarray, k: int) -> Whitening:
        """Fit on an (M, D) sample of cell vectors."""
        mean = cells.mean(axis=0, dtype=np.float64)
        centred = cells - mean
        cov = centred.T @ centred / len(cells)
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1][:k]
        proj = vectors[:, order] / np.sqrt(np.maximum(values[order], 1e-8))
        return cls(mean.astype(np.float32), proj.astype(np.float32))

    def __call__(self, cells: np.ndarray) -> np.ndarray:
        return (cells - self.mean) @ self.proj


def shift_sum(taps: np.ndarray, k: int) -> np.ndarray:
    """(N,H,W,k·k) per-cell tap values → (N,H,W): out[y,x] = Σ_(dy,dx) taps[y+dy−p, x+dx−p, (dy,dx)], zero outside
    (a k×k cross-correlation, p = k//2, taps ordered row by row)."""
    n, rows, cols, _ = taps.shape
    p = k // 2
    padded = np.pad(taps, ((0, 0), (p, p), (p, p), (0, 0)))
    out = np.zeros((n, rows, cols), taps.dtype)
    for i, (dy, dx) in enumerate((dy, dx) for dy in range(k) for dx in range(k)):
        out += padded[:, dy:dy + rows, dx:dx + cols, i]
    return out


def shift_sum_grad(g: np.ndarray, k: int) -> np.ndarray:
    """The adjoint of :func:`shift_sum`: (N,H,W) gradients → (N,H,W,k·k)."""
    _, rows, cols = g.shape
    p = k // 2
    padded = np.pad(g, ((0, 0), (p, p), (p, p)))
    return np.stack([padded[:, 2 * p - dy:2 * p - dy + rows, 2 * p - dx:2 * p - dx + cols]
                     for dy in range(k) for dx in range(k)], axis=-1)


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class Mlp:
    """Per-cell MLP ``softplus(relu(z·w1 + b1)·w2 + b2)``: cell density in people.

    With ``kernel`` 3 the output layer is a 3×3 convolution over the map of hidden units (zero
    padding): a cell's density also reads its neighbours' hidden units; ``w2`` is then (9·hidden, 1)
    (tap row, tap column, hidden unit) and the cells must be given with their ``grid`` (rows, cols).
    """

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    kernel: int = 1

    @classmethod
    def init(cls, k: int, hidden: int, rng: np.random.Generator, prior_density: float, kernel: int = 1) -> Mlp:
        fan_in = kernel * kernel * hidden
        w1 = rng.normal(0.0, np.sqrt(2.0 / k), (k, hidden)).astype(np.float32)
        w2 = rng.normal(0.0, np.sqrt(1.0 / fan_in) * 0.1, (fan_in, 1)).astype(np.float32)
        b2 = np.array([np.log(np.expm1(prior_density))], np.float32)  # softplus(b2) = prior
        return cls(w1, np.zeros(hidden, np.float32), w2, b2, kernel)

    def params(self) -> list[np.ndarray]:
        return [self.w1, self.b1, self.w2, self.b2]

    def _taps(self, grid: tuple[int, int] | None) -> np.ndarray:
        if grid is None:
            raise ValueError("a spatial head needs the cells' grid (rows, cols)")
        return self.w2[:, 0].reshape(self.kernel * self.kernel, -1)  # (k·k, hidden)

    def _logits(self, h: np.ndarray, grid: tuple[int, int] | None) -> np.ndarray:
        """(N, cells, hidden) → (N, cells) output-layer values (before the softplus)."""
        if self.kernel == 1:
            return (h @ self.w2 + self.b2)[..., 0]
        n, m, _ = h.shape
        taps = (h @ self._taps(grid).T).reshape(n, *grid, -1)  # each cell's contribution to each neighbour
        return shift_sum(taps, self.kernel).reshape(n, m) + self.b2

    def __call__(self, z: np.ndarray, grid: tuple[int, int] | None = None) -> np.ndarray:
        """(N, cells, K) (or (..., K) when ``kernel`` is 1) → (N, cells) cell densities."""
        h = np.maximum(z @ self.w1 + self.b1, 0.0)
        return softplus(self._logits(h, grid))

    def counts_and_grads(self, z: np.ndarray, dloss_dcount_fn,
                         grid: tuple[int, int] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """Forward on (B, cells, K); ``dloss_dcount_fn(counts)`` gives dL/dcount per image; returns counts, grads."""
        b, m, k = z.shape
        flat = z.reshape(-1, k)
        pre = flat @ self.w1 + self.b1
        h = np.maximum(pre, 0.0)
        out = self._logits(h.reshape(b, m, -1), grid).reshape(-1, 1)
        counts = softplus(out).reshape(b, m).sum(axis=1)
        g_count = dloss_dcount_fn(counts)  # (B,)
        g_out = (sigmoid(out).reshape(b, m) * g_count[:, None]).reshape(-1, 1).astype(np.float32)
        g_b2 = g_out.sum(axis=0)
        if self.kernel == 1:
            g_w2 = h.T @ g_out
            g_cols = g_out @ self.w2.T
        else:
            taps = self._taps(grid)
            g_taps = shift_sum_grad(g_out.reshape(b, *grid), self.kernel).reshape(b * m, -1)  # (cells, k·k)
            g_w2 = (h.T @ g_taps).T.reshape(-1, 1)
            g_cols = g_taps @ taps
        g_h = g_cols * (pre > 0)
        g_w1 = flat.T @ g_h
        g_b1 = g_h.sum(axis=0)
        return counts, [g_w1, g_b1, g_w2, g_b2]


@dataclass
class Adam:
    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    t: int = 0
    m: list[np.ndarray] = field(default_factory=list)
    v: list[np.ndarray] = field(default_factory=list)

    def step(self, params: list[np.ndarray], grads: list[np.ndarray], lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        if not self.m:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            mh = m / (1 - self.beta1 ** self.t)
            vh = v / (1 - self.beta2 ** self.t)
            p -= (lr * (mh / (np.sqrt(vh) + self.eps) + self.weight_decay * p * (p.ndim > 1))).astype(p.dtype)


@dataclass
class DensityHead:
    """Whitening + an ensemble of MLPs whose maps are averaged; a numpy forward pass for checking the ONNX export."""

    whitening: Whitening
    mlps: list[Mlp]
    stride32: bool = False  # the cells also carry the stride-32 features (the graph then reads ``feat32``)

    def cell_density(self, z: np.ndarray, grid: tuple[int, int] | None = None) -> np.ndarray:
        """(N, cells, K) whitened cells on a ``grid`` of (rows, cols) → (N, cells) people per cell, the mean of the
        members' maps (``grid`` is needed by spatial heads only)."""
        return np.mean([mlp(z, grid) for mlp in self.mlps], axis=0)

    def density(self, feat8: np.ndarray, feat16: np.ndarray, feat32: np.ndarray | None = None) -> np.ndarray:
        """(N,1,H/16,W/16) density maps from backbone features — the reference forward pass."""
        n, _, h, w = feat16.shape
        z = self.whitening(cell_features(feat8, feat16, feat32 if self.stride32 else None))
        return self.cell_density(z, (h, w)).reshape(n, 1, h, w).astype(np.float32)
