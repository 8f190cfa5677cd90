"""A conditional reading of lightbox-quality's outputs (issue 14; tried, NOT shipped: see train_native's docstring).

1.3.0/1.4.0 read each output against the *pooled* table of clean out-of-fold outputs. Here each output is read
against the clean reference views most similar in content to the image: the k nearest in a descriptor of
statistics that artifacts barely change (`descriptor`: background and saturated fractions, quantiles of the whole
frame, the spread and emptiness of 8x8 blocks, the foreground's mean and spread, low-resolution edge density, the
native window's mean, background and spread; all on the input average-pooled to 64x64), standardised by the
reference. p_knn = the share of the neighbours scoring at least as high (interpolated and tail-extended exactly as
`FeatureNet.scores`), blended with the pooled share: log p = w log p_knn + (1 - w) log p_pool, w fading when the
neighbours are far (`weight / (1 + (mean distance / dref)^4)`, dref = `dref_mult` x the median distance of a
reference view to its neighbours from other sources); quality = 1 + log10(min p) / 4. Numpy, except `descriptor`.
"""

from __future__ import annotations

import numpy as np

DESCRIPTOR_NAMES = ("background", "saturated", "q10", "q25", "q50", "q75", "q90", "block_std", "block_background",
                    "fg_mean", "fg_std", "edges", "window_mean", "window_background", "window_std")


def descriptor(x):
    """(B, 2, 256, 256) native-crop inputs (a torch tensor) → (B, 15) content descriptor (torch)."""
    import torch
    import torch.nn.functional as F

    s = F.avg_pool2d(x.float(), 4)
    w, c = s[:, 0], s[:, 1]
    qs = torch.quantile(w.flatten(1), torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]), dim=1).T
    blocks = F.avg_pool2d(w[:, None], 8)[:, 0].flatten(1)
    fg = (w > 0.1).float()
    nfg = fg.sum((1, 2)).clamp(min=1)
    fmean = (w * fg).sum((1, 2)) / nfg
    fstd = torch.sqrt((((w - fmean[:, None, None]) ** 2) * fg).sum((1, 2)) / nfg)
    edges = 0.5 * ((w[:, 1:] - w[:, :-1]).abs().mean((1, 2)) + (w[:, :, 1:] - w[:, :, :-1]).abs().mean((1, 2)))
    cols = [(w < 0.05).float().mean((1, 2)), (w > 0.95).float().mean((1, 2)), qs, blocks.std(1),
            (blocks < 0.05).float().mean(1), fmean, fstd, edges, c.mean((1, 2)), (c < 0.05).float().mean((1, 2)),
            c.std((1, 2))]
    return torch.cat([t[:, None] if t.dim() == 1 else t for t in cols], 1)


def share(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`FeatureNet.scores`' share of clean views at or above x, for sorted tables (Q, R, k) and values (Q, R):
    1 - rank / (k + 1), the rank interpolated between entries, times exp(-(x - largest)) beyond the table."""
    k = table.shape[-1]
    counts = (table <= x[..., None]).sum(-1)
    lo = np.take_along_axis(table, np.clip(counts - 1, 0, None)[..., None], -1)[..., 0]
    hi = np.take_along_axis(table, np.clip(counts, None, k - 1)[..., None], -1)[..., 0]
    frac = np.clip((x - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)
    rank = counts + np.where((counts > 0) & (counts < k), frac, 0.0)
    return (1.0 - rank / (k + 1)) * np.exp(-np.clip(x - table[..., -1], 0.0, None))


def pooled_share(ref_logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Shares (Q, R) of values x (Q, R) against the whole reference (N, R): 1.3.0/1.4.0's reading."""
    t = np.sort(ref_logits.T, axis=1)
    return share(np.broadcast_to(t, (len(x),) + t.shape), x)


def neighbours(ref_desc, q_desc, k: int, ref_source=None, q_source=None):
    """The k nearest reference rows of each query (standardised by the reference; a query's own source is
    excluded when sources are given: leave-one-source-out) → (indices (Q, k), distances (Q, k))."""
    mu, sd = ref_desc.mean(0), ref_desc.std(0) + 1e-6
    a, b = (ref_desc - mu) / sd, (q_desc - mu) / sd
    d2 = (b ** 2).sum(1)[:, None] + (a ** 2).sum(1)[None] - 2 * b @ a.T
    if q_source is not None:
        d2 = np.where(np.asarray(q_source)[:, None] == np.asarray(ref_source)[None], np.inf, d2)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return idx, np.sqrt(np.maximum(np.take_along_axis(d2, idx, 1), 0.0))


def typical_distance(ref_desc, ref_source, k: int) -> float:
    """The median mean distance of a reference view to its k neighbours from other sources."""
    _, dist = neighbours(ref_desc, ref_desc, k, ref_source, ref_source)
    return float(np.median(dist.mean(1)))


def conditional_share(ref_desc, ref_logits, q_desc, x, k: int, weight: float, dref: float | None = None,
                      ref_source=None, q_source=None) -> np.ndarray:
    """Shares (Q, R): the k-neighbour share blended (geometrically) with the pooled one; `dref` None: a constant
    weight, else weight / (1 + (mean neighbour distance / dref)^4)."""
    pooled = pooled_share(ref_logits, x)
    if k <= 0 or weight <= 0:
        return pooled
    idx, dist = neighbours(ref_desc, q_desc, k, ref_source, q_source)
    local = share(np.sort(np.transpose(ref_logits[idx], (0, 2, 1)), axis=-1), x)
    w = weight if dref is None else (weight / (1.0 + (dist.mean(1) / dref) ** 4))[:, None]
    return np.exp(w * np.log(local) + (1.0 - w) * np.log(pooled))


def quality(shares: np.ndarray) -> np.ndarray:
    """quality = 1 + log10(the smallest share) / 4, clipped to [0, 1] (as `FeatureNet.scores`)."""
    return np.clip(1.0 + np.log10(shares.min(1) + 1e-4) / 4.0, 0.0, 1.0)
