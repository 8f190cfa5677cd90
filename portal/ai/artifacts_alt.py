"""A second, independent implementation of each artifact family, held out of training entirely.

`portal/ai/artifacts.py` (implementation A) trains the quality model; this module (implementation B) exists so that
the evaluation can ask whether the model learned the *artifact* or the quirks of one simulator. Each function
has A's signature (2D float image in [0, 1], severity in [0, 1], seed) and returns float32 in [0, 1] of the same
shape, but simulates the family by another route:

- `noise`: complex white noise added to k-space (A adds it to the image), magnitude image; or signal-dependent
  (Poisson-like) noise, as in projection radiography.
- `motion`: a random walk of translations, one per phase-encode line, as linear phase ramps, plus a slow
  in-plane rotation between k-space halves done by resampling coordinates (A: 2-4 rigid segments, periodic
  displacement, or line scaling).
- `spike`: the spike's stripe pattern written in the image domain as a complex exponential added to the complex
  image (A edits one k-space sample); one to three of them.
- `bias_field`: a sum of 2-4 broad Gaussian coil-sensitivity blobs (A: a cubic polynomial).
- `wraparound`: k-space undersampled by 2 or 3 along phase-encode without unfolding (parallel-imaging aliasing:
  overlapping replicas at FOV/R), partly weighted as an imperfect reconstruction (A: a shrunken field of view whose
  edges fold onto the opposite side).
- `gibbs`: an elliptical (radial) k-space truncation, ringing in every direction (A: a rectangular band, axis by
  axis).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from portal.ai.artifacts import ARTIFACTS, SeedLike, _check, _out, _rng


def _ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.ifft2(np.fft.ifftshift(k))


def _fft2c(img: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(img))


def noise(image: np.ndarray, severity: float, rng: SeedLike = None, *, kind: str | None = None) -> np.ndarray:
    """k-space white noise (image-domain sigma 0.5%-15% of the range, like A) or signal-dependent noise."""
    img = _check(image, severity)
    rng = _rng(rng)
    kind = kind or ("kspace" if rng.random() < 0.6 else "poisson")
    sigma = 0.005 + 0.145 * severity
    if kind == "kspace":
        n = img.size
        # An unnormalised FFT: image-domain sigma s needs k-space sigma s * sqrt(N) per real/imaginary part.
        k = _fft2c(img.astype(np.complex128))
        k += (rng.normal(0, 1, img.shape) + 1j * rng.normal(0, 1, img.shape)) * sigma * np.sqrt(n)
        return _out(np.abs(_ifft2c(k)))
    if kind == "poisson":
        # Quantum noise: variance proportional to the signal; sigma at mid-grey matches the k-space case.
        counts = 0.5 / sigma**2
        return _out(rng.poisson(np.clip(img, 0, None) * counts) / counts)
    raise ValueError(f"Unknown noise kind {kind!r}; use 'kspace' or 'poisson'.")


def motion(image: np.ndarray, severity: float, rng: SeedLike = None, *, axis: int | None = None) -> np.ndarray:
    """Per-line random-walk translation (up to ~1-12 pixels) and a small rotation of the later half of k-space."""
    img = _check(image, severity)
    rng = _rng(rng)
    axis = int(rng.integers(0, 2)) if axis is None else axis
    work = img if axis == 0 else img.T
    n_pe, n_ro = work.shape
    k = _fft2c(work.astype(np.complex128))
    # Rotation of the object for the lines acquired after a random time: resample the image, take those lines.
    angle = np.deg2rad(rng.uniform(-1, 1) * (0.3 + 6.0 * severity))
    yy, xx = np.meshgrid(np.arange(n_pe) - n_pe / 2, np.arange(n_ro) - n_ro / 2, indexing="ij")
    ys = np.cos(angle) * yy - np.sin(angle) * xx + n_pe / 2
    xs = np.sin(angle) * yy + np.cos(angle) * xx + n_ro / 2
    yi = np.clip(np.round(ys).astype(int), 0, n_pe - 1)
    xi = np.clip(np.round(xs).astype(int), 0, n_ro - 1)
    rotated = work[yi, xi]
    order = rng.permutation(n_pe) if rng.random() < 0.3 else np.arange(n_pe)  # sequential or shuffled line order
    later = order[int(n_pe * rng.uniform(0.3, 0.8)):]
    k[later] = _fft2c(rotated.astype(np.complex128))[later]
    # Translation: a random walk over acquisition order, as phase ramps along both axes.
    steps = rng.normal(0, 1, (n_pe, 2))
    walk = np.cumsum(steps, axis=0)
    walk -= walk[order[n_pe // 2]]  # the centre line defines the position
    walk *= (1.0 + 11.0 * severity) / max(np.abs(walk).max(), 1e-9)
    shift = np.empty_like(walk)
    shift[order] = walk
    f_pe = (np.arange(n_pe) - n_pe // 2)[:, None] / n_pe
    f_ro = (np.arange(n_ro) - n_ro // 2)[None, :] / n_ro
    k *= np.exp(-2j * np.pi * (f_pe * shift[:, :1] + f_ro * shift[:, 1:]))
    out = np.abs(_ifft2c(k))
    return _out(out if axis == 0 else out.T)


def spike(image: np.ndarray, severity: float, rng: SeedLike = None, *, count: int | None = None) -> np.ndarray:
    """Herringbone stripes as image-domain complex exponentials, amplitude 2%-30% of the range each."""
    img = _check(image, severity)
    rng = _rng(rng)
    rows, cols = img.shape
    yy, xx = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    z = img.astype(np.complex128)
    for _ in range(count or int(rng.integers(1, 4))):
        radius = rng.uniform(0.05, 0.48)  # fraction of the Nyquist frequency
        theta = rng.uniform(0, 2 * np.pi)
        fy, fx = radius * 0.5 * np.sin(theta), radius * 0.5 * np.cos(theta)  # cycles per pixel
        amplitude = (0.02 + 0.28 * severity) * np.exp(1j * rng.uniform(0, 2 * np.pi))
        z += amplitude * np.exp(2j * np.pi * (fy * yy + fx * xx))
    return _out(np.abs(z))


def bias_field(image: np.ndarray, severity: float, rng: SeedLike = None) -> np.ndarray:
    """Coil shading from 2-4 broad Gaussian sensitivity profiles; brightest/darkest up to ~10x."""
    img = _check(image, severity)
    rng = _rng(rng)
    rows, cols = img.shape
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    field = np.zeros_like(img)
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(-1.3, 1.3, 2)
        width = rng.uniform(0.5, 1.4)
        field += rng.uniform(0.3, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
    field /= field.max()
    floor = 0.75 - 0.65 * severity  # the darkest part of the field, relative to the brightest
    gain = floor + (1 - floor) * (field - field.min()) / max(field.max() - field.min(), 1e-9)
    return _out(img * gain)


def wraparound(image: np.ndarray, severity: float, rng: SeedLike = None, *, axis: int | None = None) -> np.ndarray:
    """Undersampling by R = 2 or 3 without unfolding: replicas shifted by FOV/R, weighted 15%-100% by severity."""
    img = _check(image, severity)
    rng = _rng(rng)
    axis = int(rng.integers(0, 2)) if axis is None else axis
    work = img if axis == 0 else img.T
    n = work.shape[0]
    r = 2 if rng.random() < 0.7 else 3
    k = _fft2c(work.astype(np.complex128))
    keep = np.zeros(n, bool)
    keep[int(rng.integers(0, r))::r] = True
    aliased = np.abs(_ifft2c(np.where(keep[:, None], k * r, 0)))
    weight = 0.15 + 0.85 * severity  # an imperfect unfolding leaves part of the replicas
    out = (1 - weight) * work + weight * aliased
    out /= max(out.max(), 1.0)
    return _out(out if axis == 0 else out.T)


def gibbs(image: np.ndarray, severity: float, rng: SeedLike = None, *, axes: tuple[int, ...] | None = None) -> np.ndarray:
    """Ringing from an elliptical k-space acquisition (radial truncation, as with elliptical scanning or a
    radially undersampled protocol): keep the k-space inside an ellipse with semi-axes 55% (severity 0) to 15%
    (severity 1) of each axis' extent; rings in every direction (A truncates a rectangle, axis by axis).
    `axes` is accepted for A's signature and ignored: the truncation is two-dimensional."""
    img = _check(image, severity)
    rng = _rng(rng)
    frac = 0.55 - 0.40 * severity
    rows, cols = img.shape
    stretch = float(np.exp(rng.uniform(-0.15, 0.15)))  # the ellipse's axes a little unequal, at a random angle
    angle = rng.uniform(0, np.pi)
    fy = (np.arange(rows) - rows // 2)[:, None] / (rows * frac / 2)
    fx = (np.arange(cols) - cols // 2)[None, :] / (cols * frac / 2)
    u, v = np.cos(angle) * fy + np.sin(angle) * fx, -np.sin(angle) * fy + np.cos(angle) * fx
    k = _fft2c(img.astype(np.complex128)) * (((u * stretch) ** 2 + (v / stretch) ** 2) <= 1.0)
    return _out(np.abs(_ifft2c(k)))


ARTIFACT_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "noise": noise, "motion": motion, "spike": spike, "bias_field": bias_field, "wraparound": wraparound,
    "gibbs": gibbs,
}
assert tuple(ARTIFACT_FUNCTIONS) == ARTIFACTS
