"""Artifact implementation C: a second *training-side* simulator of the six families, with other details than A.

`portal/ai/artifacts.py` (A) and this module (C) both train lightbox-quality 1.3.0; `portal/ai/artifacts_alt.py`
(B) stays held out of training entirely. C exists so that the model does not learn the quirks of one simulator
(1.2.0, trained on A only, read B's bias fields and aliasing poorly): where A makes a choice, C makes another.
Same signature as A (2D float image in [0, 1], severity in [0, 1], seed) → float32 in [0, 1] of the same shape;
the same seed gives the same result; the input is never changed.

- `noise`: spatially varying noise (a smooth g-factor map, 1x to ~2.5x), Rician or Gaussian, sometimes slightly
  correlated (smoothed by a 3-tap kernel, as after interpolation); A: uniform white noise.
- `motion`: multi-shot (interleaved) acquisitions whose shots see the object at different positions (ghosts at
  FOV/shots), a scattered fraction of lines with independent translations (diffuse smearing), or a steady drift
  with a small turn over the acquisition; A: 2-4 contiguous segments, periodic displacement, line scaling.
- `spike`: one to three bad k-space samples, each a small cluster (1-2 samples wide) anywhere between 4% and 48%
  of the way to the edge of k-space; A: single samples, 6-45%.
- `bias_field`: a surface-coil fall-off from a coil beside the object, a random low-frequency (≤ 1.5 cycles per
  field of view) pattern at a random orientation, or a linear gradient at a random angle; brightest/darkest of
  the field 1.4x to 10x; A: the exponential of a random cubic polynomial.
- `wraparound`: fold-over *without* resizing: the image reconstructed on a smaller field of view at the same
  pixel size and shown periodically extended to the frame, or bands beyond the field of view laid over the
  opposite edge (one or both axes); A: fold, then stretch back to the frame.
- `gibbs`: truncation with independent kept fractions per axis, asymmetric (partial-Fourier, zero-filled) bands,
  and sometimes a short taper that weakens but keeps the ringing; A: a symmetric band, the same on each axis.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from portal.ai.artifacts import ARTIFACTS, SeedLike, _check, _kspace, _magnitude, _out, _rng


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, max_cycles: float = 1.5) -> np.ndarray:
    """A random smooth field in [0, 1]: a few cosines of at most `max_cycles` cycles per field of view."""
    rows, cols = shape
    y, x = np.meshgrid(np.linspace(0, 1, rows), np.linspace(0, 1, cols), indexing="ij")
    field = np.zeros(shape)
    for _ in range(int(rng.integers(2, 5))):
        cycles = rng.uniform(0.2, max_cycles)
        theta = rng.uniform(0, np.pi)
        field += rng.uniform(0.3, 1.0) * np.cos(2 * np.pi * cycles * (np.cos(theta) * x + np.sin(theta) * y)
                                               + rng.uniform(0, 2 * np.pi))
    lo, hi = field.min(), field.max()
    return (field - lo) / max(hi - lo, 1e-9)


def noise(image: np.ndarray, severity: float, rng: SeedLike = None, *, kind: str | None = None) -> np.ndarray:
    """Noise of mean sigma 0.5% (severity 0) to 15% (severity 1), spatially varying (g-factor), maybe correlated."""
    img = _check(image, severity)
    rng = _rng(rng)
    kind = kind or ("rician" if rng.random() < 0.5 else "gaussian")
    sigma = 0.005 + 0.145 * severity
    gmap = 1.0 + rng.uniform(0.0, 1.5) * _smooth_field(img.shape, rng)
    gmap /= gmap.mean()

    def draw() -> np.ndarray:
        n = rng.normal(0.0, 1.0, img.shape)
        if rng.random() < 0.3:  # slightly correlated: a 3-tap smoothing, variance restored
            a = rng.uniform(0.15, 0.35)
            for ax in (0, 1):
                n = (1 - 2 * a) * n + a * (np.roll(n, 1, ax) + np.roll(n, -1, ax))
            n /= max(n.std(), 1e-9)
        return n * sigma * gmap

    if kind == "rician":
        out = np.hypot(img + draw(), draw())
    elif kind == "gaussian":
        out = img + draw()
    else:
        raise ValueError(f"Unknown noise kind {kind!r}; use 'rician' or 'gaussian'.")
    return _out(out)


def _rotate(work: np.ndarray, angle: float) -> np.ndarray:
    return np.asarray(Image.fromarray(work.astype(np.float32), mode="F").rotate(
        angle, resample=Image.Resampling.BILINEAR), dtype=np.float64)


def motion(image: np.ndarray, severity: float, rng: SeedLike = None, *, axis: int | None = None,
           mode: str | None = None) -> np.ndarray:
    """Motion along phase-encode axis `axis`: "shots" (interleaved shots at different positions), "scatter"
    (a fraction of lines with their own translation) or "drift" (steady translation and a small turn)."""
    img = _check(image, severity)
    rng = _rng(rng)
    axis = int(rng.integers(0, 2)) if axis is None else axis
    mode = mode or str(rng.choice(["shots", "scatter", "drift"]))
    work = img if axis == 0 else img.T
    n_pe, n_ro = work.shape
    k = _kspace(work)
    lines = (np.arange(n_pe) - n_pe // 2)[:, None]
    ro = (np.arange(n_ro) - n_ro // 2)[None, :]
    amp = 0.5 + 10.0 * severity  # pixels
    if mode == "shots":
        shots = int(rng.integers(2, 9))
        shot = (np.arange(n_pe) + int(rng.integers(shots))) % shots
        centre = shot[n_pe // 2]
        shift = rng.uniform(-1, 1, (shots, 2)) * amp
        shift[centre] = 0.0
        s = shift[shot]
        k = k * np.exp(-2j * np.pi * (lines * s[:, :1] / n_pe + ro * s[:, 1:] / n_ro))
    elif mode == "scatter":
        bad = rng.random(n_pe) < rng.uniform(0.05, 0.3)
        bad[n_pe // 2] = False
        s = rng.normal(0, 0.6, (n_pe, 2)) * amp * bad[:, None]
        k = k * np.exp(-2j * np.pi * (lines * s[:, :1] / n_pe + ro * s[:, 1:] / n_ro))
    elif mode == "drift":
        f = np.arange(n_pe) - n_pe // 2
        if rng.random() < 0.5:
            t = f / max(n_pe, 1)  # sequential order: time runs from -0.5 to 0.5, the centre line at 0
        else:
            t = np.abs(f) / max(n_pe // 2, 1)  # centric order: from the centre out, 0 to 1
        d = rng.uniform(-1, 1, 2) * amp * 1.5
        s = t[:, None] * d[None, :]
        k = k * np.exp(-2j * np.pi * (lines * s[:, :1] / n_pe + ro * s[:, 1:] / n_ro))
        late = t > rng.uniform(0.0, 0.4)
        if late.any():
            turned = _kspace(_rotate(work, float(rng.uniform(-1, 1) * (0.5 + 6.0 * severity))))
            k[late] = turned[late] * np.exp(-2j * np.pi * (lines[late] * s[late, :1] / n_pe + ro * s[late, 1:] / n_ro))
    else:
        raise ValueError(f"Unknown motion mode {mode!r}; use 'shots', 'scatter' or 'drift'.")
    out = _magnitude(k)
    return _out(out if axis == 0 else out.T)


def spike(image: np.ndarray, severity: float, rng: SeedLike = None, *, count: int | None = None) -> np.ndarray:
    """1-3 bad k-space samples (small clusters), amplitude 2%-30% of the range each."""
    img = _check(image, severity)
    rng = _rng(rng)
    rows, cols = img.shape
    k = _kspace(img)
    for _ in range(count or int(rng.integers(1, 4))):
        radius = rng.uniform(0.04, 0.48)
        theta = rng.uniform(0, 2 * np.pi)
        r = (rows // 2 + int(round(radius * rows / 2 * np.sin(theta)))) % rows
        c = (cols // 2 + int(round(radius * cols / 2 * np.cos(theta)))) % cols
        if abs(r - rows // 2) + abs(c - cols // 2) < 3:
            c = (c + 3) % cols
        amplitude = (0.02 + 0.28 * severity) * rows * cols * np.exp(1j * rng.uniform(0, 2 * np.pi))
        size = int(rng.integers(1, 3))
        weights = rng.uniform(0.5, 1.0, (size, size))
        weights /= weights.sum()
        for dr in range(size):
            for dc in range(size):
                k[(r + dr) % rows, (c + dc) % cols] += amplitude * weights[dr, dc]
    return _out(_magnitude(k))


def bias_field(image: np.ndarray, severity: float, rng: SeedLike = None, *, mode: str | None = None) -> np.ndarray:
    """Shading, brightest/darkest 1.4x (severity 0) to 10x (1): "coil" (surface-coil fall-off), "lowpass"
    (random low-frequency pattern) or "gradient" (linear, any angle)."""
    img = _check(image, severity)
    rng = _rng(rng)
    mode = mode or str(rng.choice(["coil", "lowpass", "gradient"]))
    rows, cols = img.shape
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    if mode == "coil":
        theta = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(1.0, 1.6)  # the coil beside the object, at the edge or beyond
        cy, cx = dist * np.sin(theta), dist * np.cos(theta)
        d = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
        field = -np.log(d + rng.uniform(0.2, 0.8))  # sensitivity falls with distance from the coil
    elif mode == "lowpass":
        field = _smooth_field(img.shape, rng, max_cycles=float(rng.uniform(0.6, 1.5)))
    elif mode == "gradient":
        theta = rng.uniform(0, 2 * np.pi)
        field = np.cos(theta) * x + np.sin(theta) * y
    else:
        raise ValueError(f"Unknown bias field mode {mode!r}; use 'coil', 'lowpass' or 'gradient'.")
    field = (field - field.min()) / max(field.max() - field.min(), 1e-9)
    log_ratio = np.log(1.4) + severity * (np.log(10.0) - np.log(1.4))
    gain = np.exp(log_ratio * (field - 1.0))
    return _out(img * gain)


def wraparound(image: np.ndarray, severity: float, rng: SeedLike = None, *, axis: int | None = None,
               mode: str | None = None) -> np.ndarray:
    """Fold-over without resizing: "periodic" (a field of view 6%-36% smaller at the same pixel size, shown
    periodically extended to the frame) or "band" (the parts beyond the field of view, 4%-30% of it on each side,
    laid over the opposite edge, on one axis or both)."""
    img = _check(image, severity)
    rng = _rng(rng)
    mode = mode or ("periodic" if rng.random() < 0.5 else "band")
    axes = [int(rng.integers(0, 2))] if axis is None else [axis]
    if mode == "band" and axis is None and rng.random() < 0.25:
        axes = [0, 1]
    out = img.copy()
    for ax in axes:
        work = out if ax == 0 else out.T
        n = work.shape[0]
        if mode == "periodic":
            fov = max(int(round(n * (1.0 - (0.06 + 0.30 * severity)))), 4)
            start = int(rng.integers(0, n - fov + 1))
            folded = np.zeros((fov, work.shape[1]))
            np.add.at(folded, (np.arange(n) - start) % fov, work)
            shown = folded[(np.arange(n) - start) % fov]  # the field of view in place, its repeats beyond
        elif mode == "band":
            d = max(int(round(n * (0.04 + 0.26 * severity))), 1)
            gain = rng.uniform(0.6, 1.0)
            shown = work.copy()
            sides = (0, 1) if rng.random() < 0.5 else (int(rng.integers(2)),)
            if 0 in sides:
                shown[:d] += gain * work[n - d:]
            if 1 in sides:
                shown[n - d:] += gain * work[:d]
        else:
            raise ValueError(f"Unknown wraparound mode {mode!r}; use 'periodic' or 'band'.")
        shown = shown / max(shown.max(), 1.0)
        out = shown if ax == 0 else shown.T
    return _out(out)


def gibbs(image: np.ndarray, severity: float, rng: SeedLike = None, *, axes: tuple[int, ...] | None = None) -> np.ndarray:
    """Truncation ringing: per axis its own kept fraction around 55% (severity 0) to 15% (severity 1), the band
    maybe asymmetric (partial Fourier, zero-filled), maybe with a short taper."""
    img = _check(image, severity)
    rng = _rng(rng)
    if axes is None:
        axes = (0, 1) if rng.random() < 0.6 else (int(rng.integers(0, 2)),)
    k = _kspace(img)
    for ax in axes:
        n = img.shape[ax]
        keep = float(np.clip((0.55 - 0.40 * severity) * np.exp(rng.uniform(-0.2, 0.2)), 0.08, 0.8))
        half = max(keep / 2 * n, 1.0)
        if rng.random() < 0.4:  # partial Fourier: one side kept fully (or nearly), the other truncated
            lo, hi = half, half * rng.uniform(1.3, 1.8)
            if rng.random() < 0.5:
                lo, hi = hi, lo
        else:
            lo = hi = half
        f = np.arange(n) - n // 2
        edge = np.where(f < 0, lo, hi)
        mask = (np.abs(f) <= edge).astype(np.float64)
        if rng.random() < 0.3:  # a short taper over the last 10-25% of the band: weaker ringing, still there
            width = rng.uniform(0.1, 0.25) * edge
            inner = edge - width
            ramp = np.clip((edge - np.abs(f)) / np.maximum(width, 1e-9), 0.0, 1.0)
            mask = np.where(np.abs(f) <= inner, 1.0, 0.5 - 0.5 * np.cos(np.pi * ramp)) * mask
        k = k * (mask[:, None] if ax == 0 else mask[None, :])
    return _out(_magnitude(k))


ARTIFACT_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "noise": noise, "motion": motion, "spike": spike, "bias_field": bias_field, "wraparound": wraparound,
    "gibbs": gibbs,
}
assert tuple(ARTIFACT_FUNCTIONS) == ARTIFACTS
