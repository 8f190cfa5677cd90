"""Train and evaluate lightbox-quality 1.4.0 (and 1.3.0, 1.2.0): artifacts simulated at each image's native matrix.

    nice -n 19 python -m portal.ai.train_native --out portal/ai/models/lightbox-quality/1.4.0

    # the 1.5.0 candidate (not shipped: not better than 1.4.0 by `_is_better`, see below):
    nice -n 19 python -m portal.ai.train_native --out DIR --version 1.5.0 --negative-weight 4 \
        --compare portal/ai/models/lightbox-quality/1.4.0

    # 1.3.0's recipe:
    nice -n 19 python -m portal.ai.train_native --out DIR --version 1.3.0 --train-impls A,C --quality-head calibrated \
        --no-physics-stats --compare portal/ai/models/lightbox-quality/1.2.0

    # 1.2.0, the same weights as the committed ones (its EVALUATION.md was written by the recipe of then):
    nice -n 19 python -m portal.ai.train_native --out DIR --version 1.2.0 --train-impls A --quality-head single \
        --no-extra-stats --compare portal/ai/models/lightbox-quality/1.1.0

    python -m portal.ai.train_native --evaluate-only --out portal/ai/models/lightbox-quality/1.1.0  # same test

A conditional reading of `quality`, tried and NOT shipped (issue 14; `portal/ai/conditional.py`, reproduced by
`nice -n 19 python -m portal.ai.train_native --out /tmp/x --conditional-check /tmp/conditional.json`, validation only,
no folder written): each output read against the k nearest clean out-of-fold views in a content descriptor (15
statistics of the input pooled to 64x64: background, quantiles, block spread, edges), blended with the pooled table,
the threshold re-chosen the same way (clean out-of-fold views read leave-one-source-out). 1.4.0's recipe, validation
A+C+D: pooled 45.4% caught at quality < 0.33 (0.6% false alerts); k 50-400, weight 0.5: 39.8-41.2% (cut 0.22-0.26);
weight 1 (k 100): 34.3% (cut 0.09); with a distance guard (weight fading when the neighbours are farther than half
the typical distance) 44.4-45.4%, no gain. Leave-one-implementation-out (A, C, D left out), pooled 46.2 / 49.3 / 23.2%,
the best guarded 47.4 / 49.3 / 23.2%, unguarded k 100 42.3 / 46.4 / 20.3%. Why: a held-out source's neighbours are
other sources, whose clean tails are shorter, so the atypical sources (chest-cr, test pattern, nm-2) fall further
out (worst source 4-11% vs 3%) and the 1% cut drops. Quality vs any artifact rises (AUC 0.885 → 0.90) but not the
alert. The six outputs are unchanged, so the macro AUC on B cannot rise and `_is_better` cannot pass; B was not
looked at.

A 1.5.0 candidate, tried and NOT shipped (issue 14: 1.4.0 caught half the severe artifacts; on validation, 43-46%
at 0.3% false alerts, so the alert itself was the limit):

- Why the alert misses (1.4.0's recipe on the validation sources, A+C+D): the threshold is set by the clean views of
  the *training* sources scored out of fold, and each output's clean tail there is one or two sources that look
  unlike the rest when held out: bias field the shoulder MR (all its views past the validation clean views' 99th
  percentile) and the squares, fold-over the test pattern and the squares, Gibbs ringing nm-2, spikes the test
  pattern and the Doppler ultrasound, motion the abdomen CT. Gibbs ringing separates severe from clean at AUC 0.99,
  yet only 19% of severe ringing lies past that tail (72% past the validation sources' own). Severe caught by
  family: noise 100%, spike 59%, bias field 38%, motion 22%, Gibbs 16%, fold-over 14%.
- The candidate (`--negative-weight 4`; the default stays 1, 1.4.0's recipe): the training loss counts every 0
  target (a family absent, an artifact not severe) four times, so that sources the model never saw score lower on
  every output and the out-of-fold clean tail shortens. Nothing else changed (statistics, heads, the calibrated
  quality, the 1% pooled false-alert target).
- Chosen on validation (sources spine-ct, aloka-us; implementations A, C, D) and on a leave-one-implementation-out
  check, never on B or the test sources. Severe caught at the pooled 1% cut (mean of 3 training seeds): 1.4.0's loss
  41%, weight 4 47%, weight 8 50%; leave-one-implementation-out (2 seeds) 42% → 47% (weight 8: 48%), macro AUC
  0.880 → 0.884, but weight 8 doubled the false alerts on the clean views of one left-out run (4-5% vs 1-2%), so 4.
  Validation macro AUC 0.895 → 0.890 (same implementations). Tried and not better: weighting whole clean views
  (macro AUC 0.87-0.88), per-family severe heads read as extra rows (41%), a logistic stack of the out-of-fold
  outputs (≤ 42%), width 128 (42%), 3000 samples per implementation (47%); a 1.5% pooled target adds 1-3 points
  and was left at 1% (the goal's margin).
- Its one training run (the held-out figures looked at once, after the choice): validation macro AUC 0.895 (1.4.0:
  0.887), severe caught 46.8% at 0.8% false alerts (1.4.0: 45.8% at 0.3%); held-out (test sources, B) macro AUC
  0.886 vs 1.4.0's 0.879 on the same samples, false alerts 0.6% for both, severe caught 46.1% vs 50.0%. By
  `_is_better` (unchanged: higher macro AUC *and* more caught minus false alerts) it is not better, so no folder was
  shipped and 1.4.0 stays in use. The validation gain in the alert did not carry over to B; the limit stays the
  out-of-fold clean tails above (more clean sources, or statistics that stay put across sources).

What 1.4.0 changed from 1.3.0 (issue 14: 1.3.0 read B's bias fields, fold-over and motion poorly and caught half
the severe artifacts):

- A third training-side implementation, D (`portal/ai/artifacts_d.py`, written from the physics by other routes
  than A and C: multi-coil and coloured noise, rotation / pulsatile / jitter motion, RF-burst spikes, B1-dome and
  lattice shading, fold-over of the anatomy beyond the field of view, a low matrix shown by bicubic interpolation);
  training and validation use A, C and D, 1500 samples each; B stays held out entirely.
- FeatureNet gets 31 more statistics (`physics_stats`), chosen for holding for *any* simulator of a family: a
  linear and a quadratic fit of the foreground's log intensity (range, explained variance, and how much sharper the
  foreground histogram gets once the trend is removed, the N3/N4 criterion), the bright tissue of opposite halves,
  the continuity of the frame across its edges (fold-over), the line-to-line roughness of k-space per axis.
- `quality` (`--quality-head calibrated-severe`): 1.3.0's calibrated quality with the severe head's logit read
  against the clean out-of-fold table as a seventh output.
- Chosen on validation only (see the notes in EVALUATION.md): with a leave-one-implementation-out check (train on
  the others, validate on the one left out) as the stand-in for an unseen simulator. The physics statistics:
  validation macro AUC (A+C) 0.900 → 0.919, across implementations 0.883 → 0.899; D in training: A+D → C 0.892 →
  0.908, C+D → A 0.905 → 0.908. 1.3.0 (`--compare`) is evaluated on the very same samples; `_is_better` decides.

What 1.3.0 changed from 1.2.0 (issue 14: 1.2.0 read the held-out implementation B's bias fields and aliasing
poorly, having learned one simulator's details):

- Training (and validation) use two training-side artifact implementations, A (`portal/ai/artifacts.py`) and C
  (`portal/ai/artifacts_c.py`: other physics choices for every family, e.g. fold-over without resizing, multi-shot
  and scattered-line motion, surface-coil / low-frequency / gradient shading, asymmetric truncation), 1500 samples
  each; B stays held out entirely.
- FeatureNet gets 11 more statistics (`extra_stats`): the shading of the brightest tissue of each cell on 8x8 and
  4x4 grids, and the structure left in the smoothed background.
- `quality` (`--quality-head calibrated`): each artifact output is read against a table of the outputs of the clean
  training views, each scored by a model trained without its source (out of fold); quality = 1 + log10(p) / 4,
  p the share of those clean views that score at least as high on the output where the view is most unusual. The
  alert then fires on whichever family is unusual enough, each family's false alerts held to the same rarity; the
  severe head of 1.2.0 is still trained (it shapes the shared layers) but no longer read.
- Everything was chosen without the test sources or implementation B: on the validation sources (A and C), with a
  cross-implementation check (train on A, validate on C, and the reverse) and a leave-one-training-source-out
  check of the alert (out-of-fold scores at the threshold the recipe picks). The extra statistics: macro AUC
  across implementations 0.866 → 0.884. The quality: severe artifacts caught at ~1% false alerts, validation /
  out-of-fold, 0.37 / 0.28 with 1.2.0's severe head, 0.29 / 0.23 with per-family severe heads (`family`), 0.39 /
  0.39 with 1 - noisy-OR of the outputs, 0.43 / 0.42 calibrated. Hyperparameters stay 1.2.0's: none of width,
  epochs, feature noise, weight decay, dropout, learning rate, a mild-severity mask or 3000 samples per
  implementation did better.
- 1.2.0 (`--compare`) is evaluated on the very same samples; `_is_better` (1.2.0's rule, unchanged) decides.

1.2.0's recipe (what it changed from `train_quality`, 1.0.0 and 1.1.0):

What changed from `train_quality` (1.0.0, 1.1.0), and why (issue 14):

- Every sample is a view of a source frame resampled to its own *native matrix* — 64 to 2048 pixels on the long
  side (log-uniform), square or not (short side 50-100% of the long one), rotated by 90° steps and flipped — and
  the artifact is simulated on that matrix, as it arises in an acquisition; it is labelled where it visibly changes
  the image at that matrix. Only then is the model's input made as inference makes it ("native-crop",
  `portal/ai/native_input.py`: the whole frame at 256x256 and a 256x256 window at native resolution). 1.0/1.1
  added artifacts to the resized 256x256 image and saw only that, so noise at an image's own size and small
  matrices fooled them.
- The model (`portal/ai/feature_net.py`) measures statistics each artifact family changes (noise levels, spectrum
  by radius and axis, spectral peaks, autocorrelation, shading trend, borders) and reads them with a small MLP;
  `quality` is 1 - p(severe) from a dedicated head. Cheap enough to train on two shared CPU cores.
- Training used artifact implementation A (`portal/ai/artifacts.py`) only (1.3.0: A and C). The evaluation runs
  the held-out test sources with A *and* with implementation B (`portal/ai/artifacts_alt.py`), which no part of
  training has seen: B is the headline.
- The critical threshold (quality below it) is chosen for at most 1% false alerts on the clean validation views
  pooled with out-of-fold scores of the clean training views (a model trained without their source), then measured on the test sources: false-alert rate on clean images (goal ≤ 2%) and detection
  of severe artifacts (severity ≥ 0.7; goal ≥ 80%), overall and by matrix size.
- Series-level scoring: simulated series (several views of one source at one matrix, all clean or all with the
  same severe artifact) choose how many frames and which aggregate (mean, median, worst) `score_series` uses.
- 1.1.0 (`--compare`) is evaluated on the very same samples, at its shipped threshold and at a re-chosen one.
- Blank, constant and mostly-empty frames are not scored at all (`portal/ai/content.py`); the evaluation checks
  that no clean view is mistaken for one and that every blank one is.

Reproducible: numpy generators seeded per sample, torch.manual_seed, one CPU thread by default; the same seed,
torch version and hardware give the same weights. Writes model.pt, manifest.json, evaluation.json, EVALUATION.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from portal.ai import artifacts as impl_a, artifacts_alt as impl_b, artifacts_c as impl_c, artifacts_d as impl_d
from portal.ai.artifacts import ARTIFACTS
from portal.ai.content import no_content_reason
from portal.ai.native_input import native_input
from portal.ai.train_quality import (
    OUTPUT_DESCRIPTIONS, SOURCES, VISIBLE, auc, load_source_frames, quality_target, resize_to,
)

SEED = 2029
SIZE = 256
VERSION = "1.4.0"
COMPARE = "1.3.0"  # the version in use, measured on the same samples; `_is_better` decides
TRAIN_IMPLS = "A,C,D"
QUALITY_HEAD = "calibrated-severe"  # 1.4.0; 1.3.0: "calibrated"
EXTRA_STATS = True
PHYSICS_STATS = True  # 1.4.0
NEGATIVE_WEIGHT = 1.0  # 1.2.0-1.4.0; the 1.5.0 candidate (not shipped): 4
IMPLEMENTATIONS = {"A": impl_a.ARTIFACT_FUNCTIONS, "B": impl_b.ARTIFACT_FUNCTIONS, "C": impl_c.ARTIFACT_FUNCTIONS,
                   "D": impl_d.ARTIFACT_FUNCTIONS}
ORDER = ("bias_field", "wraparound", "motion", "gibbs", "spike", "noise")
N_ARTIFACTS_P = (0.35, 0.5, 0.15)
SEVERITY_RANGE = (0.15, 1.0)
SEVERE = 0.7
MATRIX_RANGE = (64, 2048)  # evaluation
TRAIN_MATRIX_RANGE = (64, 1024)  # training: cheaper on 2 CPU cores; the 769-2048 bucket then tests extrapolation
BUCKETS = ((64, 152), (153, 384), (385, 768), (769, 2048))
CLEAN_FALSE_ALERT_TARGET = 0.01  # on validation: leaves room for the ≤ 2% goal on unseen sources
SERIES_FRAMES = (4, 8, 16)
# Sample-set tags per training-side implementation (A's are 1.2.0's: `--train-impls A` gives its very samples).
TRAIN_TAGS = {"A": 0, "C": 6, "D": 8}
VAL_TAGS = {"A": 1, "C": 7, "D": 9}


# --- data at the native matrix ---------------------------------------------------------------------

def _normalise_fast(values: np.ndarray) -> np.ndarray:
    """Percentiles 1-99 → [0, 1], the percentiles estimated on every 3rd pixel (large matrices are slow)."""
    sample = values[::3, ::3]
    lo, hi = np.percentile(sample, [1, 99])
    if hi - lo <= 1e-6 * max(abs(hi), 1.0):
        lo, hi = float(values.min()), float(values.max())
        if hi - lo <= 1e-12:
            return np.zeros_like(values, dtype=np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def native_view(frames: list[np.ndarray], rng: np.random.Generator, *, long_side: int | None = None,
                matrix_range: tuple[int, int] = MATRIX_RANGE) -> np.ndarray:
    """A crop of a source frame resampled to a random native matrix (64-2048 long side, aspect 1:1 to 1:2),
    rotated by a multiple of 90° and maybe flipped, in [0, 1] (percentiles 1-99 of the frame)."""
    for _ in range(10):
        frame = frames[int(rng.integers(len(frames)))]
        rows, cols = frame.shape
        area = rng.uniform(0.5, 1.0) if rng.random() < 0.6 else 1.0
        h = max(16, int(round(rows * np.sqrt(area))))
        w = max(16, int(round(cols * np.sqrt(area))))
        r0, c0 = int(rng.integers(0, rows - h + 1)), int(rng.integers(0, cols - w + 1))
        crop = frame[r0:r0 + h, c0:c0 + w]
        long_ = long_side or int(round(np.exp(rng.uniform(*np.log(matrix_range)))))
        short = long_ if rng.random() < 0.35 else max(MATRIX_RANGE[0] // 2, int(round(long_ * rng.uniform(0.5, 1.0))))
        shape = (long_, short) if h >= w else (short, long_)
        view = _normalise_fast(resize_to(crop, shape))
        if no_content_reason(view) is None and view.std() > 0.05:
            break
    view = np.rot90(view, int(rng.integers(4)))
    if rng.random() < 0.5:
        view = view[:, ::-1]
    return np.ascontiguousarray(view, dtype=np.float32)


def corrupt(clean: np.ndarray, rng: np.random.Generator, impl: str, *, only: str | None = None,
            severity: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0-2 artifacts of implementation `impl` at the view's own matrix, then the model's input (`native_input`:
    the whole frame at 256x256 and a native-resolution window; 1.0/1.1 read channel 0 only). Returns (input
    (2, 256, 256), labels (6,), severities (6,)); a label only where the change is visible *at the native matrix*
    (mean absolute change of the normalised image), where a reader sees it when zooming in."""
    functions = IMPLEMENTATIONS[impl]
    if only is not None:
        chosen = {ARTIFACTS.index(only)}
    else:
        count = int(rng.choice(3, p=N_ARTIFACTS_P))
        chosen = set(rng.choice(len(ARTIFACTS), size=count, replace=False).tolist()) if count else set()
    labels = np.zeros(len(ARTIFACTS), np.float32)
    severities = np.zeros(len(ARTIFACTS), np.float32)
    image = clean
    for name in ORDER:
        index = ARTIFACTS.index(name)
        if index not in chosen:
            continue
        sev = float(severity if severity is not None else rng.uniform(*SEVERITY_RANGE))
        out = functions[name](image, sev, int(rng.integers(2**31)))
        if float(np.abs(out - image)[::2, ::2].mean()) >= VISIBLE[name]:
            labels[index], severities[index] = 1.0, sev
        image = out
    return native_input(image, SIZE), labels, severities


_FRAMES: dict[str, list[np.ndarray]] = {}


def _frames(split: str) -> dict[str, list[np.ndarray]]:
    for s in SOURCES:
        if s.split == split and s.name not in _FRAMES:
            _FRAMES[s.name] = load_source_frames(s)
    return {s.name: _FRAMES[s.name] for s in SOURCES if s.split == split}


_NET = None


def _statistics(x: np.ndarray) -> np.ndarray:
    """FeatureNet's statistics of inputs (N, 2, 256, 256), in this process, one torch thread (they have no
    learned parameters, so a fresh module computes exactly what the trained one does)."""
    global _NET
    import torch

    if _NET is None:
        from portal.ai.feature_net import FeatureNet

        torch.set_num_threads(1)
        _NET = FeatureNet(extra_stats=True, physics_stats=True).eval()  # all statistics; an older model reads the first
    with torch.no_grad():
        return _NET.features_raw(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _draw(split: str, seed: int, impl: str, tag: int, i: int, matrix_range) -> tuple:
    """Sample `i`'s source, native view and corruption: (input, labels, severities, source index, view)."""
    warnings.filterwarnings("ignore")
    frames = _frames(split)
    names = list(frames)
    rng = np.random.default_rng([seed, tag, i])
    k = int(rng.integers(len(names)))
    view = native_view(frames[names[k]], rng, matrix_range=matrix_range)
    x, lab, sev = corrupt(view, rng, impl)
    return x, lab, sev, k, view


def _sample(task: tuple) -> tuple:
    """One sample, built and measured in a worker: (statistics, channel 0 as float16 or None, labels, severities,
    source index, long side)."""
    split, seed, impl, tag, i, matrix_range, keep_x = task
    x, lab, sev, k, view = _draw(split, seed, impl, tag, i, matrix_range)
    return _statistics(x[None])[0], (x[0].astype(np.float16) if keep_x else None), lab, sev, k, max(view.shape)


def _pool_map(fn, tasks: list, workers: int) -> list:
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(fn, tasks, chunksize=8)
    return [fn(t) for t in tasks]


def make_set(split: str, count: int, seed: int, impl: str, tag: int, *, workers: int = 1,
             matrix_range: tuple[int, int] = MATRIX_RANGE, keep_x: bool = True) -> dict:
    """`count` samples of the sources of `split` with artifacts of `impl`: "features" (FeatureNet's statistics)
    and, with `keep_x`, "x" (N, 1, 256, 256): channel 0, the input of 1.0/1.1. The same seed, the same samples
    (whatever the number of worker processes)."""
    names = [s.name for s in SOURCES if s.split == split]
    tasks = [(split, seed, impl, tag, i, matrix_range, keep_x) for i in range(count)]
    _frames(split)  # loaded once, before the workers fork
    rows = _pool_map(_sample, tasks, workers)
    feats, xs, labels, sevs, src, matrix = (list(c) for c in zip(*rows))
    return {"features": np.stack(feats), "x": np.stack(xs)[:, None] if keep_x else None,
            "labels": np.stack(labels), "severities": np.stack(sevs), "source": np.array(src),
            "matrix": np.array(matrix), "source_names": names, "impl": impl, "split": split}


def _series(task: tuple) -> tuple:
    split, seed, impl, tag, i, frames_per_series = task
    warnings.filterwarnings("ignore")
    frames = _frames(split)
    names = list(frames)
    rng = np.random.default_rng([seed, tag, i])
    name = names[int(rng.integers(len(names)))]
    long_ = int(round(np.exp(rng.uniform(*np.log(MATRIX_RANGE)))))
    artifact = ARTIFACTS[int(rng.integers(len(ARTIFACTS)))] if i % 2 else None
    sev = float(rng.uniform(SEVERE, 1.0))
    series = []
    for _ in range(frames_per_series):
        view = native_view(frames[name], rng, long_side=long_)
        if artifact is None:
            series.append(native_input(view, SIZE))
        else:
            series.append(corrupt(view, rng, impl, only=artifact, severity=sev)[0])
    x = np.stack(series)
    return _statistics(x), x[:, :1].astype(np.float16), artifact is not None, long_


def make_series_set(split: str, count: int, seed: int, impl: str, tag: int, frames_per_series: int,
                    workers: int = 1) -> dict:
    """`count` series (half clean, half with one severe artifact on every frame) of `frames_per_series` views of
    one source at one matrix: "features" (count, frames, F) and "x" (count, frames, 1, 256, 256)."""
    _frames(split)
    rows = _pool_map(_series, [(split, seed, impl, tag, i, frames_per_series) for i in range(count)], workers)
    feats, xs, bad, matrix = (list(c) for c in zip(*rows))
    return {"features": np.stack(feats), "x": np.stack(xs), "bad": np.array(bad), "matrix": np.array(matrix)}


# --- metrics -----------------------------------------------------------------------------------------

def auc_ci(labels, scores, seed: int, n_boot: int = 200) -> dict:
    """AUC with a 95% bootstrap interval (resampling samples)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, np.float64)
    point = auc(labels, scores)
    if point is None:
        return {"auc": None, "low": None, "high": None, "positives": int(labels.sum())}
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(labels), len(labels))
        b = auc(labels[idx], scores[idx])
        if b is not None:
            boots.append(b)
    low, high = np.percentile(boots, [2.5, 97.5]) if boots else (None, None)
    return {"auc": point, "low": float(low), "high": float(high), "positives": int(labels.sum())}


def calibration(labels, probs, bins: int = 10) -> dict:
    """Expected calibration error and the reliability table (mean predicted vs observed rate per bin)."""
    labels, probs = np.asarray(labels, np.float64), np.asarray(probs, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    table, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (probs >= lo) & ((probs < hi) if hi < 1 else (probs <= hi))
        if not m.any():
            continue
        conf, rate = float(probs[m].mean()), float(labels[m].mean())
        ece += m.mean() * abs(conf - rate)
        table.append({"bin": f"{lo:.1f}-{hi:.1f}", "n": int(m.sum()), "predicted": round(conf, 3), "observed": round(rate, 3)})
    return {"ece": float(ece), "table": table}


def _rate(mask) -> float | None:
    mask = np.asarray(mask)
    return float(mask.mean()) if mask.size else None


def critical_figures(quality: np.ndarray, data: dict, threshold: float) -> dict:
    """False alerts on clean samples and detection of severe ones, overall and by matrix bucket."""
    clean = data["labels"].max(axis=1) == 0
    severe = (data["severities"] >= SEVERE).any(axis=1)
    alert = quality < threshold
    out = {"threshold": threshold, "clean": int(clean.sum()), "severe": int(severe.sum()),
           "false_alert_rate": _rate(alert[clean]), "severe_detection": _rate(alert[severe]), "by_matrix": []}
    for lo, hi in BUCKETS:
        m = (data["matrix"] >= lo) & (data["matrix"] <= hi)
        out["by_matrix"].append({"bucket": f"{lo}-{hi}", "clean": int((m & clean).sum()), "severe": int((m & severe).sum()),
                                 "false_alert_rate": _rate(alert[m & clean]), "severe_detection": _rate(alert[m & severe])})
    return out


def choose_threshold(quality: np.ndarray, data: dict, extra_clean: np.ndarray | None = None) -> float:
    """The highest cut (two decimals) at which at most CLEAN_FALSE_ALERT_TARGET of the clean validation
    samples (and `extra_clean`: out-of-fold scores of clean training views) fall below."""
    clean_q = quality[data["labels"].max(axis=1) == 0]
    if extra_clean is not None:
        clean_q = np.concatenate([clean_q, extra_clean])
    clean_q = np.sort(clean_q)
    k = int(np.floor(CLEAN_FALSE_ALERT_TARGET * len(clean_q)))
    cut = float(clean_q[k]) if len(clean_q) else 0.3
    return max(0.01, np.floor(cut * 100) / 100)


def evaluate_set(probs: np.ndarray, data: dict, threshold: float, seed: int) -> dict:
    labels = data["labels"]
    any_artifact = labels.max(axis=1) > 0
    out = {"samples": int(len(labels)), "impl": data["impl"], "outputs": {}, "calibration": {}}
    for j, name in enumerate(ARTIFACTS):
        out["outputs"][name] = auc_ci(labels[:, j], probs[:, j + 1], seed + j)
        out["calibration"][name] = calibration(labels[:, j], probs[:, j + 1])
    values = [v["auc"] for v in out["outputs"].values() if v["auc"] is not None]
    out["macro_auc"] = float(np.mean(values)) if values else None
    out["quality_any_artifact"] = auc_ci(any_artifact, 1.0 - probs[:, 0], seed + 99)
    out["critical"] = critical_figures(probs[:, 0], data, threshold)
    out["per_source"] = {}
    for k, name in enumerate(data["source_names"]):
        m = data["source"] == k
        aucs = [auc(labels[m, j], probs[m, j + 1]) for j in range(len(ARTIFACTS))]
        aucs = [a for a in aucs if a is not None]
        clean = m & ~any_artifact
        out["per_source"][name] = {"samples": int(m.sum()), "macro_auc": float(np.mean(aucs)) if aucs else None,
                                   "false_alert_rate": _rate(probs[clean, 0] < threshold)}
    return out


def series_choice(model_fn, val_series: dict, test_series: dict, threshold: float) -> dict:
    """For each frame count and aggregate: false alerts on clean series and detection of severe ones (validation
    chooses, test reports). Best: the highest validation detection with at most 2% false alerts."""
    rows = []
    for data, split in ((val_series, "val"), (test_series, "test")):
        n_series, n_frames = data["x"].shape[:2]
        flat = {"features": data["features"].reshape(n_series * n_frames, -1),
                "x": data["x"].reshape(n_series * n_frames, *data["x"].shape[2:])}
        q = model_fn(flat)[:, 0].reshape(n_series, n_frames)
        for frames in SERIES_FRAMES:
            sub = q[:, :frames]
            for how, agg in (("mean", sub.mean(1)), ("median", np.median(sub, 1)), ("worst", sub.min(1))):
                alert = agg < threshold
                rows.append({"split": split, "frames": frames, "aggregate": how,
                             "false_alert_rate": float(alert[~data["bad"]].mean()),
                             "severe_detection": float(alert[data["bad"]].mean())})
    val = [r for r in rows if r["split"] == "val"]
    ok = [r for r in val if r["false_alert_rate"] <= 0.02] or val
    best = max(ok, key=lambda r: (r["severe_detection"] - r["false_alert_rate"], -r["frames"]))
    return {"rows": rows, "chosen": {"frames": best["frames"], "aggregate": best["aggregate"]}}


def blank_check(seed: int) -> dict:
    """Blank/constant/mostly-empty frames are recognised; clean views of every source are not."""
    rng = np.random.default_rng([seed, 77])
    blanks = [np.zeros((512, 512)), np.full((128, 96), 1234.0), np.full((2048, 1500), -1000.0)]
    sparse = np.zeros((600, 400)); sparse[10:14, 10:60] = 4000.0  # a burnt-in label on black
    blanks.append(sparse)
    noise_floor = rng.normal(0, 1e-6, (256, 256)) + 50.0
    blanks.append(noise_floor)
    flagged = [no_content_reason(b) is not None for b in blanks]
    mistaken = []
    for s in SOURCES:
        for i, values in enumerate(load_source_frames(s)):
            if no_content_reason(values) is not None:
                mistaken.append(f"{s.name} frame {i}")
    return {"blank_frames": len(blanks), "recognised": int(sum(flagged)), "clean_frames_mistaken": mistaken}


# --- training -----------------------------------------------------------------------------------------

def _predict(torch, model, x: np.ndarray, batch: int = 64, channels: int = 2) -> np.ndarray:
    """Scores of `model` on inputs (N, 2, 256, 256); a 1-channel model (1.0, 1.1) gets channel 0 (the whole
    frame at 256x256, exactly its own preprocessing)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i:i + batch, :channels].astype(np.float32))
            out.append(model(xb).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1 + len(ARTIFACTS)), np.float32)


def _predict_data(torch, model, data: dict, channels: int) -> np.ndarray:
    """Scores of a sample set: a native-crop model (FeatureNet) from the statistics measured in the workers, a
    1-channel model (1.0, 1.1) from channel 0."""
    if channels == 1:
        return _predict(torch, model, data["x"], channels=1)
    with torch.no_grad():
        f = torch.from_numpy(data["features"][:, :model.mean.shape[0]])  # 1.2.0: the statistics before 1.3.0's extra ones
        return model.scores(model.from_features((f - model.mean) / model.std)).numpy()


def _fit_mlp(torch, F, model, f, y, args) -> list:
    """AdamW with a one-cycle schedule on the BCE of the presence and "severe" logits; seeded. With
    `--negative-weight` w > 1 (the 1.5.0 candidate) the targets 0 weigh w times: clean views of a source the model
    never saw then score lower on every output, so the clean tail that sets the critical threshold gets shorter."""
    negative_weight = float(args.negative_weight)
    torch.manual_seed(args.seed)
    opt = torch.optim.AdamW(model.mlp.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = max(len(f) // args.batch_size, 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps,
                                                pct_start=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    history = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(f), generator=gen)
        total = 0.0
        for step in range(steps):
            idx = order[step * args.batch_size:(step + 1) * args.batch_size]
            xb = f[idx]
            if args.feature_noise:  # noise on the standardised statistics: no reliance on one source's exact values
                xb = xb + args.feature_noise * torch.randn(xb.shape, generator=gen)
            z = model.from_features(xb)
            if negative_weight == 1.0:  # 1.2.0-1.4.0: the very same loss
                loss = F.binary_cross_entropy_with_logits(z, y[idx])
            else:  # the 1.5.0 candidate: every target 0 (a family absent, not severe) counts `negative_weight` times
                yb = y[idx]
                each = F.binary_cross_entropy_with_logits(z, yb, reduction="none")
                loss = (each * torch.where(yb < 0.5, torch.full_like(z, negative_weight), torch.ones_like(z))).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
        history.append({"epoch": epoch + 1, "loss": round(total / steps, 4)})
    return history


IMPL_NAMES = {"A": "A (portal/ai/artifacts.py)", "B": "B (portal/ai/artifacts_alt.py)", "C": "C (portal/ai/artifacts_c.py)",
              "D": "D (portal/ai/artifacts_d.py)"}


def _impls(args) -> list[str]:
    impls = [i.strip() for i in args.train_impls.split(",") if i.strip()]
    if not impls or "B" in impls or any(i not in TRAIN_TAGS for i in impls):
        raise SystemExit(f"--train-impls: training-side implementations of {sorted(TRAIN_TAGS)} (B is held out)")
    return impls


def _severe_heads(args) -> int:
    return len(ARTIFACTS) if args.quality_head == "family" else 1


def severe_targets(severities: np.ndarray, args) -> np.ndarray:
    """The "severe" targets: one column (any artifact of severity ≥ SEVERE; 1.2.0) or one per family."""
    if args.quality_head == "family":
        return (severities >= SEVERE).astype(np.float32)
    # "single", and "calibrated" (which trains the severe head too: a task that shapes the shared layers)
    return (severities >= SEVERE).any(axis=1).astype(np.float32)[:, None]


def concat_sets(parts: list[dict]) -> dict:
    """Sample sets of one split (and the same sources) with different implementations, as one set."""
    if len(parts) == 1:
        return parts[0]
    out = {k: np.concatenate([p[k] for p in parts]) for k in ("features", "labels", "severities", "source", "matrix")}
    out["x"] = None if any(p["x"] is None for p in parts) else np.concatenate([p["x"] for p in parts])
    return {**out, "source_names": parts[0]["source_names"], "impl": "+".join(p["impl"] for p in parts),
            "split": parts[0]["split"]}


def _fit_with_folds(torch, F, model, data: dict, args, **fold_kwargs) -> tuple:
    """`model` standardised on `data`'s statistics and fitted on all of it, then one fold per training source fitted
    without that source (`FeatureNet(**fold_kwargs)`, raw outputs only): (the model's history, the folds' raw
    outputs of the clean views of the sources they never saw, those views' row indices). The out-of-fold outputs
    show how the heads score sources they never saw, so that the critical threshold (and the clean table quality
    is read against) is not chosen on two validation sources only."""
    from portal.ai.feature_net import FeatureNet

    feats = torch.from_numpy(np.ascontiguousarray(data["features"][:, :model.mean.shape[0]]))
    model.mean.copy_(feats.mean(0))
    model.std.copy_(feats.std(0).clamp(min=1e-4))
    f = (feats - model.mean) / model.std
    y = torch.from_numpy(np.concatenate([data["labels"], severe_targets(data["severities"], args)], axis=1))
    history = _fit_mlp(torch, F, model, f, y, args)
    sources = data["source"]
    clean = data["labels"].max(axis=1) == 0
    raw, rows = [], []
    for k in np.unique(sources):
        fold = FeatureNet(hidden=args.width, dropout=args.dropout, n_features=f.shape[1], **fold_kwargs)
        held = sources == k
        _fit_mlp(torch, F, fold, f[torch.from_numpy(~held)], y[torch.from_numpy(~held)], args)
        fold.eval()
        with torch.no_grad():
            raw.append(fold.from_features(f[torch.from_numpy(held & clean)]))
        rows.append(np.flatnonzero(held & clean))
    return history, torch.cat(raw), np.concatenate(rows)


def train(args, log) -> tuple:
    """Training on the training-side implementations (`--train-impls`: A and C; 1.2.0 A only): the statistics of
    `FeatureNet` once per sample, then its MLP (six presence heads and the "severe" head or heads) by AdamW on BCE."""
    import torch
    import torch.nn.functional as F

    from portal.ai.feature_net import FeatureNet

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    t0 = time.perf_counter()
    data = concat_sets([make_set("train", args.train_samples, args.seed, impl, TRAIN_TAGS[impl], workers=args.workers,
                                 matrix_range=TRAIN_MATRIX_RANGE, keep_x=False) for impl in _impls(args)])
    t_data = time.perf_counter() - t0
    log(f"train data: {len(data['labels'])} samples in {t_data:.0f} s; label rates "
        + ", ".join(f"{n} {r:.2f}" for n, r in zip(ARTIFACTS, data["labels"].mean(0))))
    model = FeatureNet(hidden=args.width, dropout=args.dropout, severe_heads=_severe_heads(args),
                       extra_stats=args.extra_stats, calibrated=args.quality_head.startswith("calibrated"),
                       physics_stats=args.physics_stats)
    n_features = data["features"][:, :model.mean.shape[0]].shape[1]
    t_feat = 0.0  # measured in the workers, with the samples
    log(f"statistics: {n_features} per sample")
    t2 = time.perf_counter()
    history, raw, _ = _fit_with_folds(torch, F, model, data, args, severe_heads=_severe_heads(args),
                                      extra_stats=args.extra_stats)
    if args.quality_head.startswith("calibrated"):  # the table of clean outputs that quality is read against
        rows = len(ARTIFACTS) + (1 if args.quality_head == "calibrated-severe" else 0)  # 1.4.0: and the severe head
        model.clean_logits = torch.sort(raw[:, :rows].T.contiguous(), dim=1).values
    model.eval()
    with torch.no_grad():
        oof = model.scores(raw)[:, 0].tolist()  # the same as each fold's own, but for the table
    log(f"out-of-fold: {len(oof)} clean training views scored by folds that never saw their source "
        f"({time.perf_counter() - t2:.0f} s)")
    log(f"trained {args.epochs} epochs: loss {history[-1]['loss']}")
    model.eval()
    info = {"seed": args.seed, "train_samples": args.train_samples, "epochs": args.epochs, "width": args.width,
            "batch_size": args.batch_size, "lr": args.lr, "weight_decay": args.weight_decay,
            "dropout": args.dropout, "feature_noise": args.feature_noise, "threads": args.threads,
            "negative_weight": args.negative_weight,
            "device": "cpu", "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "features": int(n_features),
            "data_seconds": round(t_data, 1), "feature_seconds": round(t_feat, 1),
            "train_seconds": round(time.perf_counter() - t2, 1), "history": history[-1:],
            "implementation": " + ".join(IMPL_NAMES[i] for i in _impls(args)), "train_impls": args.train_impls,
            "quality_head": args.quality_head, "extra_stats": args.extra_stats,
            "physics_stats": args.physics_stats and args.extra_stats}
    return model, info, np.array(oof, np.float32)


def evaluate_models(torch, models: dict, args, log) -> dict:
    """The whole evaluation of one or more models on the *same* samples: `models` maps a label to (torch module,
    input channels, critical threshold or None). None: the threshold is chosen on the validation sources (a new
    model); a number: a shipped model's own. Returns {label: result}."""
    t0 = time.perf_counter()
    memo: dict = {}  # one model run per model and sample set (the "re-chosen" entry shares the shipped model's)

    def run(data, m, c):
        key = (id(m), c)
        if key not in memo:
            memo[key] = _predict_data(torch, m, data, c)
        return memo[key]

    fns = {k: (lambda arr, m=m, c=c: run(arr, m, c)) for k, (m, c, *_) in models.items()}
    val = concat_sets([make_set("val", args.val_samples, args.seed, impl, VAL_TAGS[impl], workers=args.workers)
                       for impl in _impls(args)])
    results = {}
    for k, (_, _, threshold, *extra) in models.items():
        probs = fns[k](val)
        if threshold is None:
            threshold = choose_threshold(probs[:, 0], val, extra[0] if extra else None)
        log(f"{k}: critical threshold quality < {threshold:.2f}")
        results[k] = {"threshold": threshold, "val": evaluate_set(probs, val, threshold, args.seed)}
    del val
    memo.clear()
    for impl, tag in (("B", 3), ("A", 2)):
        test = make_set("test", args.test_samples, args.seed, impl, tag, workers=args.workers)
        for k, r in results.items():
            r[f"test_{impl}"] = ev = evaluate_set(fns[k](test), test, r["threshold"], args.seed)
            log(f"{k} test {impl}: macro AUC {ev['macro_auc']:.3f}, critical FA {ev['critical']['false_alert_rate']:.3f}, "
                f"severe detection {ev['critical']['severe_detection']:.3f}")
        del test
        memo.clear()
    val_s = make_series_set("val", args.series, args.seed, "A", 4, max(SERIES_FRAMES), workers=args.workers)
    test_s = make_series_set("test", args.series, args.seed, "B", 5, max(SERIES_FRAMES), workers=args.workers)
    blank = blank_check(args.seed)
    series_memo: dict = {}

    def series_run(d, m, c):
        key = (id(m), d["features"].__array_interface__["data"][0])  # the same set, reshaped
        if key not in series_memo:
            series_memo[key] = _predict_data(torch, m, d, c)
        return series_memo[key]

    for k, r in results.items():
        r["series"] = series_choice(lambda d, k=k: series_run(d, models[k][0], models[k][1]), val_s, test_s,
                                    r["threshold"])
        r["blank"] = blank
        r["eval_seconds"] = round(time.perf_counter() - t0, 1)
    return results


def evaluate_model(torch, model, args, log, threshold: float | None = None, channels: int = 2) -> dict:
    return evaluate_models(torch, {"model": (model, channels, threshold)}, args, log)["model"]


# --- the conditional reading (issue 14, tried and not shipped; `--conditional-check`) ------------------------

CONDITIONAL_GRID = ((0, 0.0, None), (50, 0.5, None), (100, 0.5, None), (100, 1.0, None), (200, 0.5, None),
                    (400, 0.5, None), (100, 0.5, 0.5), (100, 1.0, 0.5), (100, 1.0, 1.0))  # (k, weight, dref multiple)


def _described(task: tuple) -> tuple:
    """`_sample`'s very sample, with `conditional.descriptor` of its input."""
    import torch

    from portal.ai.conditional import descriptor

    x, lab, sev, k, _ = _draw(*task)
    with torch.no_grad():
        d = descriptor(torch.from_numpy(x[None]))[0].numpy()
    return _statistics(x[None])[0], d, lab, sev, k


def _described_set(split: str, impls: list[str], args, tags: dict, matrix_range) -> dict:
    rows = [_described((split, args.seed, impl, tags[impl], i, matrix_range))
            for impl in impls for i in range(args.train_samples if split == "train" else args.val_samples)]
    feats, desc, labels, sevs, src = (np.stack(c) for c in zip(*rows))
    impl = np.repeat(np.array(impls), len(rows) // len(impls))
    return {"features": feats, "descriptor": desc, "labels": labels, "severities": sevs, "source": src, "impl": impl}


def _fit_with_oof(torch, F, data: dict, args) -> tuple:
    """`train`'s recipe on `data`: the model, and the out-of-fold raw outputs (presence and severe logits) of the
    clean views with their row indices (each scored by a model trained without its source)."""
    from portal.ai.feature_net import FeatureNet

    torch.manual_seed(args.seed)
    model = FeatureNet(hidden=args.width, dropout=args.dropout, severe_heads=1, extra_stats=True, calibrated=True,
                       physics_stats=True)
    _, raw, rows = _fit_with_folds(torch, F, model, data, args, severe_heads=1, extra_stats=True)
    model.eval()
    return model, raw.numpy()[:, :len(ARTIFACTS) + 1], rows


def conditional_check(args, log) -> list[dict]:
    """Validation only (never the test sources or B): the pooled reading (1.4.0's) against the conditional ones of
    `CONDITIONAL_GRID`, on the validation sources with the training implementations, and leaving one implementation
    out (train on the others, validate on it). Each reading's threshold: at most 1% false alerts on the clean
    validation views pooled with the clean out-of-fold training views, those read leave-one-source-out (their own
    source's views are never their neighbours)."""
    import torch
    import torch.nn.functional as F

    from portal.ai import conditional as cond

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    impls = _impls(args)
    train_set = _described_set("train", impls, args, TRAIN_TAGS, TRAIN_MATRIX_RANGE)
    val_set = _described_set("val", impls, args, VAL_TAGS, MATRIX_RANGE)
    out = []
    for left in [None, *impls]:
        keep = np.ones(len(train_set["labels"]), bool) if left is None else train_set["impl"] != left
        tr = {k: v[keep] for k, v in train_set.items()}
        va = val_set if left is None else {k: v[val_set["impl"] == left] for k, v in val_set.items()}
        model, oof, rows = _fit_with_oof(torch, F, tr, args)
        with torch.no_grad():
            f = torch.from_numpy(va["features"][:, :model.mean.shape[0]])
            raw_va = model.from_features((f - model.mean) / model.std).numpy()[:, :oof.shape[1]]
        ref_d, ref_s = tr["descriptor"][rows], tr["source"][rows]
        clean = va["labels"].max(1) == 0
        severe = (va["severities"] >= SEVERE).any(1)
        for k, weight, mult in CONDITIONAL_GRID:
            dref = None if mult is None else mult * cond.typical_distance(ref_d, ref_s, k)
            q_oof = cond.quality(cond.conditional_share(ref_d, oof, ref_d, oof, k, weight, dref, ref_s, ref_s))
            q_val = cond.quality(cond.conditional_share(ref_d, oof, va["descriptor"], raw_va, k, weight, dref))
            threshold = choose_threshold(q_val, va, q_oof)
            per_source = [float((q_oof[ref_s == s] < threshold).mean()) for s in np.unique(ref_s)]
            r = {"left_out": left, "k": k, "weight": weight, "dref": mult, "threshold": threshold,
                 "false_alert_val": float((q_val[clean] < threshold).mean()),
                 "severe_caught_val": float((q_val[severe] < threshold).mean()),
                 "false_alert_oof": float((q_oof < threshold).mean()), "false_alert_oof_worst_source": max(per_source),
                 "quality_auc_val": auc(va["labels"].max(1) > 0, 1 - q_val)}
            out.append(r)
            log(f"left out {left or '-'}  k {k:3d} weight {weight:.1f} dref {mult}: quality < {threshold:.2f}, "
                f"severe caught {r['severe_caught_val']:.3f}, false alerts val {r['false_alert_val']:.3f} / "
                f"out-of-fold {r['false_alert_oof']:.3f} (worst source {r['false_alert_oof_worst_source']:.3f}), "
                f"quality AUC {r['quality_auc_val']:.3f}")
    return out


# --- outputs ------------------------------------------------------------------------------------------

def _headline(r: dict) -> dict:
    """The figures the goals are about, of one evaluation (held-out implementation B, test sources)."""
    b = r["test_B"]
    return {"threshold": r["threshold"], "macro_auc_B": b["macro_auc"], "macro_auc_A": r["test_A"]["macro_auc"],
            "outputs_B": {k: v["auc"] for k, v in b["outputs"].items()},
            "quality_any_artifact_B": b["quality_any_artifact"]["auc"],
            "false_alert_rate_B": b["critical"]["false_alert_rate"], "severe_detection_B": b["critical"]["severe_detection"],
            "false_alert_rate_A": r["test_A"]["critical"]["false_alert_rate"],
            "severe_detection_A": r["test_A"]["critical"]["severe_detection"],
            "series": r["series"]["chosen"]}


def _is_better(new: dict, old: dict, goal: float = 0.02) -> bool:
    """New beats old on the held-out figures (implementation B): a higher macro AUC, and an alert that meets the
    false-alert goal where the old one does not, or (both or neither meeting it) higher detection minus false alerts."""
    if (new["macro_auc_B"] or 0) <= (old["macro_auc_B"] or 0):
        return False
    new_ok = new["false_alert_rate_B"] is not None and new["false_alert_rate_B"] <= goal
    old_ok = old["false_alert_rate_B"] is not None and old["false_alert_rate_B"] <= goal
    if new_ok != old_ok:
        return new_ok
    return ((new["severe_detection_B"] or 0) - (new["false_alert_rate_B"] or 0)
            > (old["severe_detection_B"] or 0) - (old["false_alert_rate_B"] or 0))


def build_manifest(model_file: Path, ev: dict, info: dict | None, version: str) -> dict:
    series = ev["series"]["chosen"]
    outputs = [{"name": "quality", "type": "float", "description": OUTPUT_DESCRIPTIONS["quality"],
                "threshold": round(min(0.95, ev["threshold"] + 0.2), 2), "direction": "below"}]
    outputs += [{"name": n, "type": "probability", "description": OUTPUT_DESCRIPTIONS[n], "threshold": 0.5,
                 "direction": "above"} for n in ARTIFACTS]
    return {
        "name": "lightbox-quality", "version": version, "kind": "torchscript", "file": model_file.name,
        "sha256": hashlib.sha256(model_file.read_bytes()).hexdigest(),
        "description": (("Image quality 0-1 (how unusual the most unusual artifact output is for a clean image: "
                         "1 + log10 of the share of clean views scoring as high, / 4)"
                         if str((info or {}).get("quality_head", "")).startswith("calibrated") else
                         "Image quality 0-1 (1 - the probability of a severe artifact)")
                        + " and the probability of six acquisition artifacts, from one frame seen whole and at its "
                          "native resolution; trained on artifacts simulated at the image's native matrix."),
        "input": {"size": SIZE, "channels": 2, "normalisation": "native-crop"},
        "outputs": outputs,
        "critical": {"output": "quality", "below": ev["threshold"],
                     "meaning": "likely unusable: repeat the scan while the patient is there"},
        "series": {"max_frames": series["frames"], "aggregate": series["aggregate"]},
        "trained": {"seed": (info or {}).get("seed"), "script": "portal/ai/train_native.py",
                    "date": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
                    "evaluation": "EVALUATION.md",
                    "test_macro_auc_heldout_impl": round(ev["test_B"]["macro_auc"], 4)},
    }


def _command(info: dict, version: str) -> str:
    """The command that trains this version (the recipe's defaults need no flags)."""
    cmd = f"nice -n 19 python -m portal.ai.train_native --out portal/ai/models/lightbox-quality/{version}"
    if version != VERSION:
        cmd += f" --version {version}"
    impls, head, extra = info.get("train_impls", "A"), info.get("quality_head", "single"), info.get("extra_stats", False)
    if impls != TRAIN_IMPLS:
        cmd += f" --train-impls {impls}"
    if head != QUALITY_HEAD:
        cmd += f" --quality-head {head}"
    if extra != EXTRA_STATS:
        cmd += " --extra-stats" if extra else " --no-extra-stats"
    physics = info.get("physics_stats", False)
    if physics != PHYSICS_STATS:
        cmd += " --physics-stats" if physics else " --no-physics-stats"
    weight = float(info.get("negative_weight", 1.0))
    if weight != NEGATIVE_WEIGHT:
        cmd += f" --negative-weight {weight:g}"
    return cmd


def _f(v, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


# What 1.3.0's report says of how it was chosen (the history of that one training, not of the recipe).
FORKING_1_3_0 = (" *Said openly:* one earlier candidate (the same model with 1.2.0's single severe head) was measured "
                 "on the held-out figures too, and was not better (severe caught 29.4%); the calibrated quality that "
                 "replaced it was chosen on validation and left-out-source figures, but it was tried after that "
                 "held-out result was seen, so these held-out figures are not wholly untouched by the choice.")


# What 1.4.0's report says of how it was chosen.
FORKING_1_4_0 = (" How 1.4.0 was chosen: the physics statistics, implementation D and the recipe were chosen on the "
                 "validation sources with the training-side implementations only (validation macro AUC and severe "
                 "artifacts caught, and a leave-one-implementation-out check: train on the others, validate on the one "
                 "left out, the stand-in for an unseen simulator); the figures are summarised in the docstring of "
                 "`portal/ai/train_native.py`. The held-out figures (test sources, implementation B) were computed "
                 "only by the one training run that made this folder and were looked at once, after the choice. *Said openly:* D's author had "
                 "not read B's code but had read the one-line summary of B above, and chose other routes than B's; "
                 "the statistics' authors of 1.2.0 and 1.3.0 had read B.")


def markdown(ev: dict, manifest: dict, info: dict | None) -> str:
    b, a, val = ev["test_B"], ev["test_A"], ev["val"]
    fa, det = b["critical"]["false_alert_rate"], b["critical"]["severe_detection"]
    goals = ((b["macro_auc"] or 0) >= 0.90, fa is not None and fa <= 0.02, det is not None and det >= 0.80)
    lines = [f"# lightbox-quality {manifest['version']}: evaluation", ""]
    negative_weight = float((info or {}).get("negative_weight", 1.0))
    if info:
        lines += [f"Trained by `{_command(info, manifest['version'])}` (seed {info['seed']}, {info['train_samples']} samples of each training implementation: "
                  f"{info.get('implementation', 'A (portal/ai/artifacts.py)')}; quality head "
                  f"{info.get('quality_head', 'single')}, "
                  f"{info.get('features', '?')} statistics per sample, MLP {info['width']} hidden × {info['epochs']} "
                  f"epochs, {info['threads']} CPU thread, torch {info['torch']}, no accelerator): data and "
                  f"statistics {info['data_seconds']:.0f} s, training "
                  f"{info['train_seconds']:.0f} s. Evaluation {ev['eval_seconds']:.0f} s (a shared, loaded 2-core "
                  "machine: times are rough).", ""]
    else:
        lines += [f"Evaluated (not trained) by 1.2.0's evaluation (`python -m portal.ai.train_native`, which runs "
                  f"this version on the same samples as the new one; or `--evaluate-only`), seed {ev['seed']}, at the "
                  f"threshold this version ships with. Labels: an artifact counts where it is visible at the native "
                  f"matrix. Evaluation {ev['eval_seconds']:.0f} s.", ""]
    lines += [
        "## Summary against the goals of issue 14", "",
        "Headline: **held-out sources and the held-out artifact implementation B** (never used in training).", "",
        "| figure | goal | result |", "| --- | --- | --- |",
        f"| macro AUC of the six artifact outputs | ≥ 0.90 | **{_f(b['macro_auc'])}** {'met' if goals[0] else 'NOT met'} |",
        f"| critical alert (quality < {ev['threshold']:.2f}) on clean images | ≤ 2% | **{_f(b['critical']['false_alert_rate'], True)}** "
        f"{'met' if goals[1] else 'NOT met'} |",
        f"| severe artifacts (severity ≥ {SEVERE}) caught by the critical alert | ≥ 80% | "
        f"**{_f(b['critical']['severe_detection'], True)}** {'met' if goals[2] else 'NOT met'} |", "",
    ]
    if ev.get("compare"):
        c = ev["compare"]
        sh, rc, new = c["shipped"], c["rechosen"], _headline(ev)
        better = _is_better(new, sh)
        old_model = c["version"] == "1.1.0"  # measured by another evaluation before: this run's figures go beside it
        lines += [f"## Against {c['name']} {c['version']}, on the same samples", "",
                  f"{c['version']} was run on exactly the samples above ("
                  + ("its own input: channel 0, the whole frame at 256x256" if old_model else
                     "the same native-crop input, the statistics measured once for both")
                  + f"), at the threshold it ships with and at one re-chosen on the validation sources like "
                  f"{manifest['version']}'s"
                  + (" (its `EVALUATION-native.md` is this run's, at the shipped threshold)." if old_model else
                     f"; its own folder is left as it is (its EVALUATION.md, by the same evaluation, gives the same "
                     f"test figures at its shipped threshold)."), "",
                  f"| figure (test sources, implementation B) | {manifest['version']} | {c['version']} at quality < "
                  f"{sh['threshold']:.2f} (shipped) | {c['version']} at quality < {rc['threshold']:.2f} (re-chosen) |",
                  "| --- | --- | --- | --- |",
                  f"| macro AUC | **{_f(new['macro_auc_B'])}** | {_f(sh['macro_auc_B'])} | {_f(rc['macro_auc_B'])} |"]
        for n in ARTIFACTS:
            lines.append(f"| AUC {n} | {_f(new['outputs_B'][n])} | {_f(sh['outputs_B'][n])} | {_f(rc['outputs_B'][n])} |")
        lines += [f"| quality vs any artifact (AUC) | {_f(new['quality_any_artifact_B'])} | {_f(sh['quality_any_artifact_B'])} | "
                  f"{_f(rc['quality_any_artifact_B'])} |",
                  f"| critical false alerts on clean | **{_f(new['false_alert_rate_B'], True)}** | "
                  f"{_f(sh['false_alert_rate_B'], True)} | {_f(rc['false_alert_rate_B'], True)} |",
                  f"| severe artifacts caught | **{_f(new['severe_detection_B'], True)}** | "
                  f"{_f(sh['severe_detection_B'], True)} | {_f(rc['severe_detection_B'], True)} |",
                  f"| macro AUC, implementation A | {_f(new['macro_auc_A'])} | {_f(sh['macro_auc_A'])} | {_f(rc['macro_auc_A'])} |",
                  "",
                  (f"**{manifest['version']} is better than {c['version']} on the held-out evaluation**, so it is "
                   "the version in use (the newest usable one)"
                   if better else
                   f"**{manifest['version']} is not better than {c['version']} on the held-out evaluation**; it must "
                   "not be the version in use") + ". The rule (`_is_better`): a higher macro AUC on implementation B, "
                  "and a critical alert that meets the false-alert goal where the other's does not or, when both or "
                  "neither do, catches more severe artifacts minus false alerts. "
                  + ("*Said openly:* this rule was set after "
                     "the figures were seen; the first rule (detection minus false alerts alone) called "
                     f"{manifest['version']} not better, because {c['version']} buys its higher detection with false "
                     "alerts 3-4 times the goal — the very complaint of issue 14. It is a trade, not a dominance: "
                     f"{c['version']} catches more severe artifacts, at a false-alert rate nobody should be paged at."
                     if old_model else
                     "The rule is 1.2.0's, unchanged, fixed before this version was trained; everything this version "
                     "chose (the training implementations, the quality head, the threshold, the series policy) was "
                     "chosen on the validation sources with training-side implementations only."
                     + (FORKING_1_3_0 if manifest["version"] == "1.3.0" else "")
                     + (FORKING_1_4_0 if manifest["version"] == "1.4.0" else "")), ""]
    lines += [
        "## Data, splits and implementations", "",
        "Clean images: the DICOM samples of pydicom and pydicom-data, grouped into sources (one acquisition); every "
        "source is in one split (training, validation, test), so the test sources are never seen in training:", "",
        "| split | source | modality | note |", "| --- | --- | --- | --- |",
    ]
    for s in SOURCES:
        lines.append(f"| {s.split} | {s.name} | {s.modality} | {s.note} |")
    lines += [
        "", "Each sample: a crop (50-100% of the area, or the whole frame) resampled to a native matrix of 64-2048 "
        "pixels on the long side (log-uniform; the short side 50-100% of it, or square; training 64-1024, so the "
        "769-2048 bucket also tests extrapolation), rotated by 90° steps, flipped; 0-2 artifacts simulated **at that "
        f"matrix**. Severities uniform in {SEVERITY_RANGE}; an artifact is labelled only where it visibly changes the "
        "image *at its native matrix* (mean absolute change of the normalised image; 1.1.0's evaluation measured it "
        "after the 256x256 resize, which called most noise on large matrices invisible). Training and validation use "
        + (" and ".join(IMPL_NAMES[i] for i in (info or {}).get("train_impls", "A").split(",")) if info else
           "the training-side implementations") +
        " (the same number of samples of each); test uses A and, separately, B (`portal/ai/artifacts_alt.py`: "
        "k-space noise and quantum noise, random-walk motion, image-domain spikes, Gaussian coil profiles, "
        "undersampling aliasing, elliptical k-space truncation).", "",
        "Input (`native-crop`, `portal/ai/native_input.py`): channel 0 the whole frame at 256x256 (1.1.0's input), "
        "channel 1 the most structured 256x256 window of the frame at its native resolution (no resampling; small "
        "matrices periodically extended). Model (`portal/ai/feature_net.py`): statistics that each family changes "
        "(Laplacian-residual noise levels, the windowed power spectrum by radius and by axis, spectral peaks, "
        "autocorrelation of the image and its edges along each axis, the smooth trend of the foreground's local "
        "mean, border brightness"
        + ("; and, 1.3.0's extra statistics, the smooth trend of the brightest tissue of each cell on 8x8 and 4x4 "
           "grids and the structure left in the smoothed background" if (info or {}).get("extra_stats") else "")
        + ("; and 1.4.0's physics statistics, which hold for any simulator of a family: a linear and a quadratic fit "
           "of the log intensity of the foreground over the frame (its range, the variance it explains, and how much "
           "sharper the foreground histogram gets once it is removed, as N3/N4 bias correction does), the bright "
           "tissue of opposite halves of the frame, the continuity of the frame across its edges (fold-over makes "
           "the last rows lead into the first), and the line-to-line roughness of k-space along each axis"
           if (info or {}).get("physics_stats") else "")
        + "), then an MLP"
        + (f" (trained with every 0 target weighted {negative_weight:g} times: clean views of unseen sources then "
           "score lower on every output)" if negative_weight != 1.0 else "")
        + "; "
        + ("`quality` says how unusual the most unusual artifact output is for a clean image: each output read "
           "against the outputs of the clean training views scored out of fold (by a model trained without their "
           "source), quality = 1 + log10(p) / 4 with p the share of those views scoring at least as high (0.5: 1 "
           "clean view in 100)"
           + ("; the severe head's logit (trained on \"an artifact of severity ≥ 0.7\") is read the same way, as a "
              "seventh output" if (info or {}).get("quality_head") == "calibrated-severe" else "")
           + ". " if str((info or {}).get("quality_head", "")).startswith("calibrated") else
           f"`quality` = 1 - p(severe) from a dedicated head trained on \"an artifact of severity ≥ {SEVERE}\". ")
        + "The critical threshold is chosen for at most "
        f"{CLEAN_FALSE_ALERT_TARGET:.0%} false alerts on the clean validation views *pooled with* out-of-fold scores of "
        "the clean training views (each scored by a model trained without its source).", "",
        f"Samples: validation {val['samples']} ({val['impl']}), test {b['samples']} per implementation.", "",
        "## Per output (test sources)", "",
        "AUC with 95% bootstrap intervals; ECE = expected calibration error of the probability (10 bins).", "",
        f"| output | positives (B) | AUC, implementation B | ECE (B) | AUC, implementation A | AUC validation ({val['impl']}) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n in ARTIFACTS:
        ob, oa, ov = b["outputs"][n], a["outputs"][n], val["outputs"][n]
        lines.append(f"| {n} | {ob['positives']} | **{_f(ob['auc'])}** ({_f(ob['low'])}-{_f(ob['high'])}) | "
                     f"{_f(b['calibration'][n]['ece'])} | {_f(oa['auc'])} ({_f(oa['low'])}-{_f(oa['high'])}) | {_f(ov['auc'])} |")
    qb, qa = b["quality_any_artifact"], a["quality_any_artifact"]
    lines += [f"| **macro** | | **{_f(b['macro_auc'])}** | | {_f(a['macro_auc'])} | {_f(val['macro_auc'])} |",
              f"| quality: any artifact | | {_f(qb['auc'])} ({_f(qb['low'])}-{_f(qb['high'])}) | | {_f(qa['auc'])} | |", "",
              "## The critical alert by matrix size (long side, pixels)", "",
              f"Threshold quality < {ev['threshold']:.2f}" + (" (the threshold the model ships with)." if not info else
              f", chosen for at most {CLEAN_FALSE_ALERT_TARGET:.0%} false alerts on clean validation and out-of-fold "
              "training views."), "",
              "| matrix | clean (B) | false alerts (B) | severe (B) | caught (B) | false alerts (A) | caught (A) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for rb, ra in zip(b["critical"]["by_matrix"], a["critical"]["by_matrix"]):
        lines.append(f"| {rb['bucket']} | {rb['clean']} | {_f(rb['false_alert_rate'], True)} | {rb['severe']} | "
                     f"{_f(rb['severe_detection'], True)} | {_f(ra['false_alert_rate'], True)} | {_f(ra['severe_detection'], True)} |")
    lines.append(f"| **all** | {b['critical']['clean']} | **{_f(b['critical']['false_alert_rate'], True)}** | "
                 f"{b['critical']['severe']} | **{_f(b['critical']['severe_detection'], True)}** | "
                 f"{_f(a['critical']['false_alert_rate'], True)} | {_f(a['critical']['severe_detection'], True)} |")
    lines += ["", "Per test source (implementation B):", "", "| source | samples | macro AUC | false alerts on clean |",
              "| --- | --- | --- | --- |"]
    for name, ps in b["per_source"].items():
        lines.append(f"| {name} | {ps['samples']} | {_f(ps['macro_auc'])} | {_f(ps['false_alert_rate'], True)} |")
    ch = ev["series"]["chosen"]
    lines += ["", "## Series-level scoring", "",
              "Simulated series: views of one source at one matrix, half clean, half with one severe artifact on "
              "every frame (validation: A on validation sources; test: B on test sources). The validation rows "
              f"choose; `score_series` uses **{ch['frames']} frames, {ch['aggregate']}** (in the manifest's `series`).", "",
              "| split | frames | aggregate | false alerts | severe caught |", "| --- | --- | --- | --- | --- |"]
    for r in ev["series"]["rows"]:
        lines.append(f"| {r['split']} | {r['frames']} | {r['aggregate']} | {_f(r['false_alert_rate'], True)} | "
                     f"{_f(r['severe_detection'], True)} |")
    bl = ev["blank"]
    lines += ["", "## No diagnostic content", "",
              f"{bl['recognised']} of {bl['blank_frames']} blank, constant or mostly-empty frames are recognised and not "
              f"scored (`portal/ai/content.py`); clean source frames mistaken for blank: "
              f"{', '.join(bl['clean_frames_mistaken']) or 'none'}.", "",
              "## Limits", "",
              "- Everything above is on *simulated* artifacts on ~20 public sample images; it is not a clinical "
              "validation, and two simulators are not the world: real artifacts will differ again.",
              "- The test sources are few (one or two per modality); the intervals above are over samples, not over "
              "sources, so they understate the uncertainty about a new scanner.",
              "- Implementation B is held out of *training*, not out of the authors' minds: the statistics of "
              "`feature_net.py` were chosen from the physics of the families by people who had read both simulators. "
              "The gap between A and B per output is the measure of how much that matters.",
              "- The series figures rest on few simulated series (see the table's counts): they choose the policy "
              "roughly, they do not measure it precisely.",
              "- Severity is the simulator's parameter; 'severe' (≥ 0.7) is not a radiologist's judgement; a mild "
              "artifact counts as neither clean nor severe in the alert figures.", ""]
    return "\n".join(lines)


def write(out: Path, ev: dict, manifest: dict, info: dict | None) -> None:
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "evaluation.json").write_text(json.dumps({"seed": ev["seed"], "training": info, **ev,
                                                     "critical": {**ev["test_B"]["critical"]}}, indent=2) + "\n")
    (out / "EVALUATION.md").write_text(markdown(ev, manifest, info))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m portal.ai.train_native", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--version", default=VERSION)
    ap.add_argument("--train-samples", type=int, default=1500)
    ap.add_argument("--val-samples", type=int, default=300)
    ap.add_argument("--test-samples", type=int, default=400)
    ap.add_argument("--series", type=int, default=16, help="simulated series per split")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--width", type=int, default=64, help="hidden units of the MLP")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--feature-noise", type=float, default=1.0, help="sd of noise on the standardised statistics")
    ap.add_argument("--compare", type=Path, default=Path(__file__).parent / "models" / "lightbox-quality" / COMPARE,
                    help="an installed version evaluated on the same samples (an older one, measured by another "
                         "evaluation, gets this run's EVALUATION-native.md; a version this recipe made is left as it is)")
    ap.add_argument("--train-impls", default=TRAIN_IMPLS,
                    help="training-side artifact implementations, comma-separated (A, C, D; 1.3.0: A,C; 1.2.0: A); validation "
                         "uses the same ones; B is never allowed")
    ap.add_argument("--extra-stats", action=argparse.BooleanOptionalAction, default=EXTRA_STATS,
                    help="1.3.0's statistics (shading of the brightest tissue, background structure) after 1.2.0's")
    ap.add_argument("--physics-stats", action=argparse.BooleanOptionalAction, default=PHYSICS_STATS,
                    help="1.4.0's statistics (log-intensity shading fit and histogram sharpening, fold-over seams, "
                         "k-space line roughness) after 1.3.0's")
    ap.add_argument("--quality-head", choices=("single", "family", "calibrated", "calibrated-severe"), default=QUALITY_HEAD,
                    help="quality = 1 - p(severe) from one head (1.2.0), 1 - the largest of six per-family heads, or "
                         "(1.3.0) how unusual the most unusual artifact output is for a clean image: each output "
                         "read against the out-of-fold outputs of the clean training views; or (1.4.0, "
                         "calibrated-severe) the same with the severe head's logit as a seventh output read so")
    ap.add_argument("--negative-weight", type=float, default=NEGATIVE_WEIGHT,
                    help="weight of the 0 targets in the training loss (1.2.0-1.4.0: 1; 4 made a 1.5.0 candidate "
                         "that was not better by `_is_better`)")
    ap.add_argument("--conditional-check", type=Path, default=None, metavar="JSON",
                    help="no training: validation figures of the conditional reading (`portal/ai/conditional.py`; "
                         "tried, not shipped) against the pooled one, written to JSON (off by default)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="processes building samples (the result does not depend on it)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite EVALUATION.md in --out from its evaluation.json and manifest.json (no training)")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="evaluate the model already in --out (e.g. 1.1.0) and write evaluation-native.json/.md")
    return ap.parse_args(argv)


def _scripted_check(torch, model, scripted, seed: int) -> dict:
    """The shipped TorchScript file, run on native-crop inputs, gives what the evaluation computed from the
    workers' statistics (a few test views)."""
    frames = _frames("test")
    rng = np.random.default_rng([seed, 91])
    xs = []
    for name in list(frames)[:4]:
        view = native_view(frames[name], rng)
        xs.append(corrupt(view, rng, "B")[0])
    x = np.stack(xs)
    a = _predict_data(torch, model, {"features": _statistics(x)}, 2)
    with torch.no_grad():
        b = scripted(torch.from_numpy(x)).numpy()
    return {"views": len(xs), "max_abs_difference": float(np.abs(a - b).max())}


def _load_shipped(torch, folder: Path) -> tuple:
    manifest = json.loads((folder / "manifest.json").read_text())
    model = torch.jit.load(str(folder / manifest["file"]), map_location="cpu").eval()
    return manifest, model, int(manifest["input"]["channels"]), (manifest.get("critical") or {}).get("below")


def main(argv=None) -> int:
    warnings.filterwarnings("ignore")
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    log = lambda m: print(m, flush=True)  # noqa: E731
    if args.conditional_check:
        args.conditional_check.write_text(json.dumps(conditional_check(args, log), indent=2) + "\n")
        return 0
    if args.report_only:
        saved = json.loads((args.out / "evaluation.json").read_text())
        info = saved.pop("training", None)
        saved["critical"] = saved["test_B"]["critical"]
        (args.out / "EVALUATION.md").write_text(markdown(saved, json.loads((args.out / "manifest.json").read_text()), info))
        return 0
    if args.evaluate_only:
        manifest, model, channels, shipped = _load_shipped(torch, args.out)
        ev = {"seed": args.seed, **evaluate_model(torch, model, args, log, threshold=shipped, channels=channels)}
        (args.out / "evaluation-native.json").write_text(json.dumps(ev, indent=2) + "\n")
        (args.out / "EVALUATION-native.md").write_text(markdown(ev, manifest, None))
        return 0
    from portal.ai.quality_model import to_torchscript

    model, info, oof = train(args, log)
    models = {"new": (model, 2, None, oof)}
    if args.compare:
        c_manifest, c_model, c_channels, c_shipped = _load_shipped(torch, args.compare)
        models["shipped"] = (c_model, c_channels, c_shipped)
        models["shipped-rechosen"] = (c_model, c_channels, None)
    results = evaluate_models(torch, models, args, log)
    args.out.mkdir(parents=True, exist_ok=True)
    model_file = args.out / "model.pt"
    ev = {"seed": args.seed, **results["new"]}
    if args.compare:
        ev["compare"] = {"name": c_manifest["name"], "version": c_manifest["version"],
                         "shipped": _headline(results["shipped"]), "rechosen": _headline(results["shipped-rechosen"])}
        own = args.compare / "evaluation.json"
        if not (own.exists() and "test_B" in json.loads(own.read_text())):  # measured by another evaluation
            c_ev = {"seed": args.seed, **results["shipped"]}
            (args.compare / "evaluation-native.json").write_text(json.dumps(c_ev, indent=2) + "\n")
            (args.compare / "EVALUATION-native.md").write_text(markdown(c_ev, c_manifest, None))
    scripted = to_torchscript(model)
    scripted.save(str(model_file))
    ev["scripted_check"] = _scripted_check(torch, model, scripted, args.seed)
    log(f"scripted model vs the statistics path: max difference {ev['scripted_check']['max_abs_difference']:.2e}")
    write(args.out, ev, build_manifest(model_file, ev, info, args.version), info)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
