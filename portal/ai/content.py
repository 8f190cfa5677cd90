"""Whether a frame has diagnostic content at all: blank, constant and mostly-empty frames are not scored.

A model asked about an all-zero frame answers something (1.1.0 said quality 1.00); the honest answer is "no
diagnostic content", decided before the model runs. Numpy only (no torch), so the web process may import it.
"""

from __future__ import annotations

import numpy as np

# A frame is empty when under this share of its pixels carries signal (above 5% of its robust range) ...
MIN_SIGNAL_FRACTION = 0.02
# ... or when its robust range (1st to 99th percentile) is this small against its full range: a constant frame
# with a few stray pixels, a burnt-in label on black.
MIN_ROBUST_RANGE = 1e-3


def no_content_reason(values: np.ndarray) -> str | None:
    """None for a frame worth scoring; else why not: "constant", "mostly empty"."""
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return "constant"
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo <= 1e-9 * max(abs(hi), 1.0):
        return "constant"
    p1, p99 = np.percentile(finite, [1, 99])
    if p99 - p1 <= MIN_ROBUST_RANGE * (hi - lo):
        return "mostly empty"
    if p99 - p1 <= 1e-4 * max(abs(p1), abs(p99), 1.0):  # constant up to float noise (a flat field at 50 ± 1e-6)
        return "constant"
    signal = (finite - p1) / (p99 - p1) > 0.05
    if float(signal.mean()) < MIN_SIGNAL_FRACTION:
        return "mostly empty"
    return None
