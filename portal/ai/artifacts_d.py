"""Artifact implementation D: a third *training-side* simulator of the six families (lightbox-quality 1.4.0).

A (`portal/ai/artifacts.py`) and C (`portal/ai/artifacts_c.py`) train 1.3.0; 1.4.0 trains on A, C and D, and
`portal/ai/artifacts_alt.py` (B) stays held out of training entirely. D was written from the physics of each family,
choosing routes that neither A nor C takes, so that the model meets a third set of simulator quirks. *Said openly:*
its author had not read B's code, but had read the one-line summary of B in 1.3.0's EVALUATION.md (k-space and
quantum noise, random-walk motion, image-domain spikes, Gaussian coil profiles, undersampling aliasing, elliptical
k-space truncation) and deliberately chose other routes than those.

Same contract as A: a 2D float image in [0, 1], a severity in [0, 1], a seed → float32 in [0, 1] of the same shape;
the same seed gives the same result; the input is never changed.

- `noise`: multi-coil magnitude noise (root-sum-of-squares of 2-8 coils: noncentral chi, a brighter noise floor
  than Rician) or coloured Gaussian noise (its spectrum tilted towards low or high frequencies, as after
  reconstruction filters); A: white Rician/Gaussian; C: g-factor maps.
- `motion`: in-plane *rotation* between blocks of phase-encode lines (no translation), a smooth random amplitude
  and phase modulation over the lines (pulsatile flow / through-plane motion: smeared ghosts), or a small random
  sub-pixel translation of every line (diffuse jitter).
- `spike`: an RF burst: 2-5 consecutive bad samples on one k-space readout line (a short streak in k-space,
  stripes with a beat envelope), at 5-45% of the way to the edge.
- `bias_field`: transmit (B1) inhomogeneity: signal ∝ sin(flip angle x a smooth B1 map), the map a centre-bright
  quadratic dome with a random centre and tilt (the "dielectric" brightening of high fields), or a coarse 3x3
  random log-gain lattice interpolated bicubically.
- `wraparound`: the object extends beyond the field of view: the anatomy beyond an edge (approximated by mirroring
  the frame across that edge) folds onto the *opposite* edge, weighted by a receive-coil fall-off (dimmer).
- `gibbs`: the image acquired at a lower matrix (k-space cropped to 15-55%), then shown at the frame's size by
  *image-domain* bicubic interpolation (as a viewer or scanner upsampling does), not by zero-filling.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from portal.ai.artifacts import ARTIFACTS, SeedLike, _check, _kspace, _magnitude, _out, _rng


def _resize(img: np.ndarray, shape: tuple[int, int], resample=Image.Resampling.BICUBIC) -> np.ndarray:
    if img.shape == shape:
        return np.asarray(img, dtype=np.float64)
    pic = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F")
    return np.asarray(pic.resize((shape[1], shape[0]), resample), dtype=np.float64)


def noise(image: np.ndarray, severity: float, rng: SeedLike = None, *, kind: str | None = None) -> np.ndarray:
    """Noise sigma 0.5% (severity 0) to 15% (severity 1) of the range: "coils" (root-sum-of-squares magnitude of
    2-8 receive coils, each with noise sigma) or "coloured" (Gaussian noise with a tilted spectrum, variance kept)."""
    img = _check(image, severity)
    rng = _rng(rng)
    kind = kind or ("coils" if rng.random() < 0.5 else "coloured")
    sigma = 0.005 + 0.145 * severity
    if kind == "coils":
        n = int(rng.integers(2, 9))
        # each coil sees the image / sqrt(n): the combined signal stays the image, the noise floor rises with n
        total = np.zeros_like(img)
        for _ in range(n):
            re = img / np.sqrt(n) + rng.normal(0.0, sigma, img.shape)
            im = rng.normal(0.0, sigma, img.shape)
            total += re * re + im * im
        out = np.sqrt(total) - sigma * (np.sqrt(2 * n) - np.sqrt(2)) * 0.5  # floor partly removed, as a scanner does
    elif kind == "coloured":
        white = rng.normal(0.0, 1.0, img.shape)
        fy = np.fft.fftfreq(img.shape[0])[:, None]
        fx = np.fft.fftfreq(img.shape[1])[None, :]
        r = np.sqrt(fy ** 2 + fx ** 2) / 0.5
        tilt = rng.uniform(-1.0, 1.0)  # <0: low frequencies stronger (blotchy), >0: fine-grained
        shaped = np.real(np.fft.ifft2(np.fft.fft2(white) * (0.2 + r) ** tilt))
        out = img + sigma * shaped / max(shaped.std(), 1e-9)
    else:
        raise ValueError(f"Unknown noise kind {kind!r}; use 'coils' or 'coloured'.")
    return _out(out)


def _rotate(work: np.ndarray, angle: float) -> np.ndarray:
    return np.asarray(Image.fromarray(work.astype(np.float32), mode="F").rotate(
        angle, resample=Image.Resampling.BICUBIC), dtype=np.float64)


def motion(image: np.ndarray, severity: float, rng: SeedLike = None, *, axis: int | None = None,
           mode: str | None = None) -> np.ndarray:
    """Motion along phase-encode axis `axis`: "rotation" (2-6 blocks of lines each from the object turned by up
    to 1-12°), "pulsatile" (a smooth random amplitude and phase modulation over the lines) or "jitter" (each line
    its own small random sub-pixel translation)."""
    img = _check(image, severity)
    rng = _rng(rng)
    axis = int(rng.integers(0, 2)) if axis is None else axis
    mode = mode or str(rng.choice(["rotation", "pulsatile", "jitter"]))
    work = img if axis == 0 else img.T
    n_pe = work.shape[0]
    k = _kspace(work)
    lines = np.arange(n_pe) - n_pe // 2
    if mode == "rotation":
        blocks = int(rng.integers(2, 7))
        edges = np.linspace(0, n_pe, blocks + 1).astype(int)
        centre_block = int(np.searchsorted(edges, n_pe // 2, side="right") - 1)
        for b in range(blocks):
            if b == centre_block:
                continue
            angle = float(rng.uniform(-1, 1) * (1.0 + 11.0 * severity))
            k[edges[b]:edges[b + 1]] = _kspace(_rotate(work, angle))[edges[b]:edges[b + 1]]
    elif mode == "pulsatile":
        # a smooth random modulation: a few knots over the lines, interpolated
        knots = int(rng.integers(4, 16))
        amp = np.interp(np.arange(n_pe), np.linspace(0, n_pe - 1, knots), rng.normal(0, 1, knots))
        phase = np.interp(np.arange(n_pe), np.linspace(0, n_pe - 1, knots), rng.normal(0, 1, knots))
        gain = np.exp(-(0.05 + 0.6 * severity) * np.abs(amp)) * np.exp(1j * (0.1 + 1.5 * severity) * phase)
        gain[np.abs(lines) <= 1] = 1.0
        k = k * gain[:, None]
    elif mode == "jitter":
        d = rng.normal(0.0, 0.15 + 2.0 * severity, n_pe)
        d[np.abs(lines) <= 1] = 0.0
        k = k * np.exp(-2j * np.pi * lines * d / n_pe)[:, None]
    else:
        raise ValueError(f"Unknown motion mode {mode!r}; use 'rotation', 'pulsatile' or 'jitter'.")
    out = _magnitude(k)
    return _out(out if axis == 0 else out.T)


def spike(image: np.ndarray, severity: float, rng: SeedLike = None, *, length: int | None = None) -> np.ndarray:
    """An RF burst: `length` (2-5) consecutive corrupted samples on one readout line of k-space, total amplitude
    2%-30% of the range, 5-45% of the way to the edge of k-space."""
    img = _check(image, severity)
    rng = _rng(rng)
    rows, cols = img.shape
    k = _kspace(img)
    length = length or int(rng.integers(2, 6))
    radius = rng.uniform(0.05, 0.45)
    theta = rng.uniform(0, 2 * np.pi)
    r = (rows // 2 + int(round(radius * rows / 2 * np.sin(theta)))) % rows
    c0 = (cols // 2 + int(round(radius * cols / 2 * np.cos(theta)))) % cols
    if abs(r - rows // 2) < 2 and abs(c0 - cols // 2) < length + 2:
        r = (r + 3) % rows
    total = (0.02 + 0.28 * severity) * rows * cols
    envelope = np.hanning(length + 2)[1:-1]
    envelope /= envelope.sum()
    phase = rng.uniform(0, 2 * np.pi)
    step = rng.uniform(-1.0, 1.0)
    for i in range(length):
        k[r, (c0 + i) % cols] += total * envelope[i] * np.exp(1j * (phase + step * i))
    return _out(_magnitude(k))


def bias_field(image: np.ndarray, severity: float, rng: SeedLike = None, *, mode: str | None = None) -> np.ndarray:
    """Shading, brightest/darkest of the field about 1.4x (severity 0) to 8x (1): "b1" (signal ∝ sin of the
    flip angle across a smooth transmit map, a centre-bright dome) or "lattice" (a 3x3 random log-gain lattice,
    bicubically interpolated)."""
    img = _check(image, severity)
    rng = _rng(rng)
    mode = mode or ("b1" if rng.random() < 0.5 else "lattice")
    rows, cols = img.shape
    log_ratio = np.log(1.4) + severity * (np.log(8.0) - np.log(1.4))
    if mode == "b1":
        y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
        cy, cx = rng.uniform(-0.4, 0.4, 2)
        a, b = rng.uniform(0.6, 1.4, 2)
        dome = 1.0 - (a * (y - cy) ** 2 + b * (x - cx) ** 2) / 2.0 + rng.uniform(-0.3, 0.3) * (x - cx) * (y - cy)
        dome = (dome - dome.min()) / max(dome.max() - dome.min(), 1e-9)  # 0 at the rim, 1 at the centre
        # the flip angle runs from alpha_min to 90° (the centre at the nominal angle); the signal follows sin
        lo = np.arcsin(np.exp(-log_ratio))  # sin(lo) = 1 / ratio
        gain = np.sin(lo + (np.pi / 2 - lo) * dome)
    elif mode == "lattice":
        grid = rng.normal(0.0, 1.0, (3, 3))
        field = _resize(grid, (rows, cols))
        field = (field - field.min()) / max(field.max() - field.min(), 1e-9)
        gain = np.exp(log_ratio * (field - 1.0))
    else:
        raise ValueError(f"Unknown bias field mode {mode!r}; use 'b1' or 'lattice'.")
    return _out(img * gain / max(gain.max(), 1e-9))


def wraparound(image: np.ndarray, severity: float, rng: SeedLike = None, *, axis: int | None = None) -> np.ndarray:
    """The object extends 5%-35% beyond the field of view along `axis`, on one side or both: the anatomy beyond
    an edge (the frame mirrored across that edge) folds onto the opposite edge, weighted by a coil fall-off."""
    img = _check(image, severity)
    rng = _rng(rng)
    axis = int(rng.integers(0, 2)) if axis is None else axis
    work = img if axis == 0 else img.T
    n = work.shape[0]
    d = max(int(round(n * (0.05 + 0.30 * severity))), 1)
    d = min(d, n)
    sides = (0, 1) if rng.random() < 0.4 else (int(rng.integers(2)),)
    out = work.copy()
    fall = np.exp(-np.linspace(0.0, rng.uniform(0.5, 2.0), d))[:, None]  # dimmer further from the coil
    if 0 in sides:  # row -(j+1) above the top edge (~ mirror row j) aliases to row n-(j+1)
        out[n - d:] += (work[:d] * fall)[::-1]
    if 1 in sides:  # row n+j below the bottom edge (~ mirror row n-1-j) aliases to row j
        out[:d] += work[n - d:][::-1] * fall
    out = out / max(out.max(), 1.0)
    return _out(out if axis == 0 else out.T)


def gibbs(image: np.ndarray, severity: float, rng: SeedLike = None, *, axes: tuple[int, ...] | None = None) -> np.ndarray:
    """Acquired at a lower matrix (the central 55% (severity 0) to 15% (1) of k-space along the axes, the image
    reconstructed at that small size: ringing), then shown at the frame's size by image-domain bicubic
    interpolation (not zero-filling)."""
    img = _check(image, severity)
    rng = _rng(rng)
    if axes is None:
        axes = (0, 1) if rng.random() < 0.5 else (int(rng.integers(0, 2)),)
    keep = float(np.clip((0.55 - 0.40 * severity) * np.exp(rng.uniform(-0.15, 0.15)), 0.1, 0.7))
    k = _kspace(img)
    rows, cols = img.shape
    small = [rows, cols]
    for ax in axes:
        small[ax] = max(int(round(img.shape[ax] * keep)), 4)
    r0, c0 = rows // 2 - small[0] // 2, cols // 2 - small[1] // 2
    crop = k[r0:r0 + small[0], c0:c0 + small[1]]
    low = np.abs(np.fft.ifft2(np.fft.ifftshift(crop))) * (small[0] * small[1]) / (rows * cols)
    return _out(_resize(low, (rows, cols)))


ARTIFACT_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "noise": noise, "motion": motion, "spike": spike, "bias_field": bias_field, "wraparound": wraparound,
    "gibbs": gibbs,
}
assert tuple(ARTIFACT_FUNCTIONS) == ARTIFACTS
