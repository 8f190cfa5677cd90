"""The "native-crop" input of lightbox-quality 1.2.0: the whole frame squeezed to 256x256 *and* a crop at the
frame's own resolution, so that noise, ringing and spikes are seen as acquired, not averaged away by a resize.

Numpy only (no torch): the web process may import it. `native_input(values)` gives a (2, 256, 256) float32 array:

- channel 0: the whole frame as 1.0/1.1 see it (bilinear resize to 256x256, then percentiles 1-99 → [0, 1]);
- channel 1: a 256x256 window of the frame at its native matrix (no resampling), normalised by the *whole frame's*
  percentiles 1-99 (estimated on every 3rd pixel of large frames); of the 3x3 grid of candidate windows, the one
  with the most structure (highest standard deviation), so that it lies on the anatomy, not the background. A side
  shorter than 256 is periodically extended (`np.pad(mode="wrap")`): the extension a discrete Fourier transform
  assumes, so the spectrum of a small matrix stays that of the acquisition.

"native-crop" in the manifest's `input.normalisation` asks for this input (`input.channels` 2).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIZE = 256
NORMALISATION = "native-crop"
CHANNELS = 2


def _robust_range(arr: np.ndarray) -> tuple[float, float]:
    step = 3 if arr.size > 512 * 512 else 1
    lo, hi = np.percentile(arr[::step, ::step], [1, 99])
    if hi - lo <= 1e-6 * max(abs(hi), 1.0):
        lo, hi = float(arr.min()), float(arr.max())
    return float(lo), float(hi)


def _scale(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi - lo <= 1e-12:
        return np.zeros_like(arr, dtype=np.float32)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def whole_frame(values: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Channel 0: bilinear resize to size x size, then percentiles 1-99 (the 1.0/1.1 preprocessing)."""
    arr = np.asarray(values, dtype=np.float32)
    if arr.shape != (size, size):
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr), mode="F").resize(
            (size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    lo, hi = np.percentile(arr, [1, 99])
    if hi - lo <= 1e-6 * max(abs(hi), 1.0):
        lo, hi = float(arr.min()), float(arr.max())
    return _scale(arr, float(lo), float(hi))


def native_crop(values: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Channel 1: the most structured size x size window at the native matrix, wrap-extended when smaller."""
    arr = np.asarray(values, dtype=np.float32)
    lo, hi = _robust_range(arr)
    rows, cols = arr.shape
    pad = ((0, max(0, size - rows)), (0, max(0, size - cols)))
    if pad[0][1] or pad[1][1]:
        arr = np.pad(arr, pad, mode="wrap")
        rows, cols = arr.shape
    best, best_std = None, -1.0
    for r in sorted({0, (rows - size) // 2, rows - size}):
        for c in sorted({0, (cols - size) // 2, cols - size}):
            window = arr[r:r + size, c:c + size]
            s = float(window[::4, ::4].std())
            if s > best_std:
                best, best_std = window, s
    return _scale(best, lo, hi)


def native_input(values: np.ndarray, size: int = SIZE) -> np.ndarray:
    """A 2D frame (any size, any units) → (2, size, size) float32 in [0, 1]: whole frame, native crop."""
    arr = np.asarray(values, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"Expected one 2D frame, got shape {arr.shape}.")
    return np.stack([whole_frame(arr, size), native_crop(arr, size)])
