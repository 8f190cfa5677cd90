"""Synthetic acquisition artifacts on a 2D image, for training and testing the quality model.

Every function takes a 2D float image in [0, 1], a `severity` in [0, 1] (0 = barely there,
1 = the image is likely unusable) and a seed or `numpy.random.Generator`, and returns a new
float32 image in [0, 1] of the same shape; the input is never changed. The same seed gives the
same result. Most artifacts are simulated where they arise in MR, in k-space (the 2D Fourier
transform of the image), and the result is the magnitude image, as a scanner shows it:

- `noise`: thermal noise, Rician (magnitude of complex Gaussian noise) or Gaussian.
- `motion`: rigid motion between segments of k-space lines, periodic (respiratory) displacement
  along the phase-encode axis, or line-to-line amplitude ghosting: blurred edges and ghosts
  (shifted replicas) along the phase-encode axis.
- `spike`: one bad k-space sample (a "spike"): a herringbone / corduroy stripe pattern.
- `bias_field`: a smooth multiplicative intensity field (coil shading, inhomogeneity).
- `wraparound`: a field of view smaller than the object along phase-encode: what lies outside
  folds over onto the opposite side (aliasing).
- `gibbs`: k-space truncation (a low acquisition matrix without filtering): ringing parallel to
  sharp edges, plus blurring.

`apply_artifacts(image, {"noise": 0.4, "motion": 0.7}, rng)` applies several in the order they
arise in an acquisition (coil shading first, noise last).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from PIL import Image

ARTIFACTS: tuple[str, ...] = ("noise", "motion", "spike", "bias_field", "wraparound", "gibbs")

# Acquisition order: what apply_artifacts does first.
_ORDER = ("bias_field", "wraparound", "motion", "gibbs", "spike", "noise")

SeedLike = int | np.random.Generator | np.random.SeedSequence | None


def _rng(seed: SeedLike) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check(image: np.ndarray, severity: float) -> np.ndarray:
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim != 2 or min(arr.shape) < 8:
        raise ValueError(f"Expected a 2D image of at least 8x8 pixels, got shape {arr.shape}.")
    if not 0.0 <= float(severity) <= 1.0:
        raise ValueError(f"Severity must be between 0 and 1, got {severity}.")
    return arr


def _kspace(img: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(img))


def _magnitude(k: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.ifft2(np.fft.ifftshift(k)))


def _out(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _pick_axis(axis: int | None, rng: np.random.Generator) -> int:
    if axis is None:
        return int(rng.integers(0, 2))
    if axis not in (0, 1):
        raise ValueError("axis must be 0 (rows: phase-encode vertical) or 1 (columns).")
    return axis


def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of a float image to (rows, cols)."""
    if img.shape == shape:
        return img
    pic = Image.fromarray(img.astype(np.float32), mode="F")
    return np.asarray(pic.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float64)


def noise(image: np.ndarray, severity: float, rng: SeedLike = None, *, kind: str | None = None) -> np.ndarray:
    """Thermal noise: sigma from 0.5% (severity 0) to 15% (severity 1) of the intensity range.

    `kind` is "rician" (the magnitude of complex noise, as in MR: the dark background gets a
    noise floor) or "gaussian"; by default Rician two times in three.
    """
    img = _check(image, severity)
    rng = _rng(rng)
    if kind is None:
        kind = "rician" if rng.random() < 2 / 3 else "gaussian"
    sigma = 0.005 + 0.145 * severity
    if kind == "rician":
        out = np.hypot(img + rng.normal(0.0, sigma, img.shape), rng.normal(0.0, sigma, img.shape))
    elif kind == "gaussian":
        out = img + rng.normal(0.0, sigma, img.shape)
    else:
        raise ValueError(f"Unknown noise kind {kind!r}; use 'rician' or 'gaussian'.")
    return _out(out)


def motion(image: np.ndarray, severity: float, rng: SeedLike = None, *, axis: int | None = None,
           mode: str | None = None) -> np.ndarray:
    """Patient motion during the acquisition, along phase-encode axis `axis` (random by default).

    `mode`: "rigid" (the object moves and turns between 2-4 segments of k-space lines: blurring
    and ghosted edges), "respiratory" (periodic displacement from line to line: discrete
    ghosts), or "ghosting" (every n-th line scaled down: n-1 replicas at 1/n of the field of
    view). Chosen at random by default. Severity sets the displacement or the ghost intensity.
    """
    img = _check(image, severity)
    rng = _rng(rng)
    axis = _pick_axis(axis, rng)
    mode = mode or str(rng.choice(["rigid", "respiratory", "ghosting"]))
    work = img if axis == 0 else img.T  # phase-encode along rows of `work`
    n_pe, n_ro = work.shape
    k = _kspace(work)
    lines = np.arange(n_pe) - n_pe // 2  # phase-encode frequency of each k-space row
    ro = np.arange(n_ro) - n_ro // 2
    if mode == "rigid":
        cuts = np.sort(rng.choice(np.arange(1, n_pe), size=int(rng.integers(2, 5)) - 1, replace=False))
        bounds = [0, *cuts.tolist(), n_pe]
        centre = n_pe // 2
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if lo <= centre < hi:
                continue  # the segment with the centre of k-space defines where the object is
            shift = rng.uniform(-1, 1, size=2) * (0.5 + 10.0 * severity)
            angle = float(rng.uniform(-1, 1) * (0.5 + 8.0 * severity))
            moved = np.asarray(Image.fromarray(work.astype(np.float32), mode="F").rotate(
                angle, resample=Image.Resampling.BILINEAR), dtype=np.float64)
            km = _kspace(moved)[lo:hi]
            ramp = np.exp(-2j * np.pi * (lines[lo:hi, None] * shift[0] / n_pe + ro[None, :] * shift[1] / n_ro))
            k[lo:hi] = km * ramp
    elif mode == "respiratory":
        amplitude = 0.5 + 8.0 * severity  # pixels
        period = rng.uniform(3.0, 24.0)  # k-space lines per breath
        d = amplitude * np.sin(2 * np.pi * np.arange(n_pe) / period + rng.uniform(0, 2 * np.pi))
        k = k * np.exp(-2j * np.pi * lines * d / n_pe)[:, None]
    elif mode == "ghosting":
        step = int(rng.integers(2, 5))
        factor = 1.0 - (0.12 + 0.8 * severity)
        offset = int(rng.integers(0, step))
        mask = ((np.arange(n_pe) + offset) % step) == 0
        k[mask] *= factor * np.exp(1j * rng.uniform(-0.5, 0.5))
    else:
        raise ValueError(f"Unknown motion mode {mode!r}; use 'rigid', 'respiratory' or 'ghosting'.")
    out = _magnitude(k)
    return _out(out if axis == 0 else out.T)


def spike(image: np.ndarray, severity: float, rng: SeedLike = None, *, count: int | None = None) -> np.ndarray:
    """One or two k-space spikes: stripes across the image (herringbone), amplitude 2%-30% of the range.

    The spike lies between 6% and 45% of the way from the centre of k-space to its edge, so the
    stripes are from a few to ~20 pixels apart, in any direction.
    """
    img = _check(image, severity)
    rng = _rng(rng)
    rows, cols = img.shape
    k = _kspace(img)
    count = count or (1 if rng.random() < 0.8 else 2)
    for _ in range(count):
        radius = rng.uniform(0.06, 0.45)
        theta = rng.uniform(0, 2 * np.pi)
        r = rows // 2 + int(round(radius * rows / 2 * np.sin(theta)))
        c = cols // 2 + int(round(radius * cols / 2 * np.cos(theta)))
        if (r, c) == (rows // 2, cols // 2):
            c += 3
        amplitude = (0.02 + 0.28 * severity) * rows * cols * np.exp(1j * rng.uniform(0, 2 * np.pi))
        if rng.random() < 0.7:  # a real stripe pattern: the spike and its mirror across the centre
            k[r, c] += amplitude / 2
            k[_mirror(r, rows), _mirror(c, cols)] += np.conj(amplitude) / 2
        else:
            k[r, c] += amplitude
    return _out(_magnitude(k))


def _mirror(index: int, n: int) -> int:
    """The index of the opposite frequency in a centred (fftshifted) axis of length n."""
    return (n - index) % n if n % 2 == 0 else n - 1 - index


def bias_field(image: np.ndarray, severity: float, rng: SeedLike = None) -> np.ndarray:
    """A smooth multiplicative field (cubic polynomial in x, y): brightest/darkest ratio 1.6x to ~12x."""
    img = _check(image, severity)
    rng = _rng(rng)
    rows, cols = img.shape
    x, y = np.linspace(-1, 1, cols), np.linspace(-1, 1, rows)
    field = np.zeros_like(img)
    for i in range(4):
        for j in range(4 - i):
            if i or j:
                field += rng.normal() * np.outer(y**j, x**i)
    field -= field.mean()
    field /= max(np.abs(field).max(), 1e-9)
    strength = 0.25 + 1.0 * severity
    gain = np.exp(strength * field)
    return _out(img * gain / gain.max())


def wraparound(image: np.ndarray, severity: float, rng: SeedLike = None, *, axis: int | None = None,
               fold: bool = True) -> np.ndarray:
    """Fold-over: the field of view along `axis` shrinks by 6%-36% and the cut-off parts wrap around.

    The folded image is stretched back to the input's shape, as if the object filled the
    original frame. `fold=False` gives the same smaller field of view without the fold-over (a
    reference for how visible the artifact is).
    """
    img = _check(image, severity)
    rng = _rng(rng)
    axis = _pick_axis(axis, rng)
    work = img if axis == 0 else img.T
    n = work.shape[0]
    fov = max(int(round(n * (1.0 - (0.06 + 0.30 * severity)))), 4)
    start = int(rng.integers(0, n - fov + 1))  # where the smaller field of view sits on the object
    folded = np.zeros((fov, work.shape[1]))
    for row in range(n) if fold else range(start, start + fov):
        folded[(row - start) % fov] += work[row]
    folded = _resize(folded, work.shape)
    folded /= max(folded.max(), 1.0)
    return _out(folded if axis == 0 else folded.T)


def gibbs(image: np.ndarray, severity: float, rng: SeedLike = None, *, axes: tuple[int, ...] | None = None,
          window: bool = False) -> np.ndarray:
    """Truncation (Gibbs) ringing: keep the central 55% (severity 0) to 15% (severity 1) of k-space.

    Along one axis (ringing parallel to edges across it) or both; both by default half the time.
    `window=True` tapers the kept band smoothly (a Hann window) instead: the same loss of
    resolution without the ringing (a reference for how visible the ringing is).
    """
    img = _check(image, severity)
    rng = _rng(rng)
    if axes is None:
        axes = (0, 1) if rng.random() < 0.5 else (int(rng.integers(0, 2)),)
    keep = 0.55 - 0.40 * severity
    k = _kspace(img)
    for ax in axes:
        n = img.shape[ax]
        half = max(int(round(n * keep / 2)), 1)
        freq = np.abs(np.arange(n) - n // 2)
        mask = (freq <= half).astype(np.float64)
        if window:
            mask *= 0.5 + 0.5 * np.cos(np.pi * np.minimum(freq / (half + 1), 1.0))
        k = k * (mask[:, None] if ax == 0 else mask[None, :])
    return _out(_magnitude(k))


ARTIFACT_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "noise": noise,
    "motion": motion,
    "spike": spike,
    "bias_field": bias_field,
    "wraparound": wraparound,
    "gibbs": gibbs,
}


def apply_artifacts(image: np.ndarray, severities: Mapping[str, float], rng: SeedLike = None) -> np.ndarray:
    """Apply several artifacts, each at its severity, in acquisition order; unknown names raise."""
    unknown = set(severities) - set(ARTIFACTS)
    if unknown:
        raise ValueError(f"Unknown artifact(s) {sorted(unknown)}; known: {', '.join(ARTIFACTS)}.")
    rng = _rng(rng)
    out = np.asarray(image, dtype=np.float32)
    for name in _ORDER:
        if name in severities:
            out = ARTIFACT_FUNCTIONS[name](out, float(severities[name]), rng)
    return out
