"""Score a series with a model: representative frames → scores, a heatmap overlay and a report.

Pure functions over files: no database, no queue. Importing this module does not import torch
(`load_model` does, when a series is scored), so a web process may import it to name things.

    result = score_series(paths, builtin_model_dir())
    result["scores"]       # {"quality": 0.87, "noise": 0.04, ...}  aggregated over the frames
    result["critical"]     # True when the manifest's critical threshold is crossed
    result["heatmap_png"]  # RGBA PNG overlay, the size of the representative (worst) frame
    result["report"]       # a short text for people
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from portal.ai.registry import Manifest, load_model
from portal.dicom import DicomRejected
from portal.dicom.parse import has_pixel_data, number_of_frames, open_dataset

DEFAULT_MAX_FRAMES = 8
AGGREGATES = ("mean", "median", "worst")


def _instance_order(ds) -> tuple:
    number = ds.get("InstanceNumber")
    try:
        number = int(number)
    except (TypeError, ValueError):
        number = math.inf
    try:
        z = float(ds.ImagePositionPatient[2])
    except (AttributeError, IndexError, TypeError, ValueError):
        z = math.inf
    return (number, z)


def representative_frames(paths: Sequence[str | Path], max_frames: int = DEFAULT_MAX_FRAMES
                          ) -> tuple[list[dict[str, Any]], int, list[dict[str, str]]]:
    """Up to `max_frames` frames spread over the middle 80% of the series, in series order.

    The series is ordered by Instance Number, then slice position, then file name; frames of
    multi-frame files count one by one. Returns (chosen frames, frames in all, files skipped).
    """
    instances, skipped = [], []
    for path in map(Path, paths):
        try:
            ds = open_dataset(path)  # pixel data stays on disk (deferred)
        except Exception as exc:  # not DICOM, unreadable: note it and carry on
            skipped.append({"path": str(path), "reason": f"cannot read: {exc}"})
            continue
        if not has_pixel_data(ds):
            skipped.append({"path": str(path), "reason": "no pixel data"})
            continue
        instances.append((_instance_order(ds), path.name, path, ds))
    instances.sort(key=lambda t: (t[0], t[1]))
    frames = []
    for order, _, path, ds in instances:
        n = max(number_of_frames(ds), 1)
        for f in range(n):
            frames.append({"path": path, "frame": f, "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
                           "instance_number": None if order[0] == math.inf else int(order[0]),
                           "rows": int(ds.get("Rows") or 0),
                           "columns": int(ds.get("Columns") or 0)})
    total = len(frames)
    if total > max_frames > 0:
        picks = np.unique(np.round(np.linspace(0.1 * (total - 1), 0.9 * (total - 1), max_frames)).astype(int))
        frames = [frames[i] for i in picks]
    return frames, total, skipped


def aggregate_scores(manifest: Manifest, per_frame: Sequence[dict[str, float]], how: str = "mean") -> dict[str, float]:
    """One value per output: the mean or median over frames, or the worst (lowest for outputs flagged
    below their threshold, highest otherwise)."""
    if how not in AGGREGATES:
        raise ValueError(f"Unknown aggregate {how!r}; use {' or '.join(AGGREGATES)}.")
    out = {}
    for spec in manifest.outputs:
        values = np.array([s[spec.name] for s in per_frame], np.float64)
        if how == "mean":
            out[spec.name] = float(values.mean())
        elif how == "median":  # robust to one odd frame (an end slice, a localiser)
            out[spec.name] = float(np.median(values))
        else:
            out[spec.name] = float(values.min() if spec.direction == "below" else values.max())
    return out


def _badness(manifest: Manifest, scores: dict[str, float]) -> float:
    """How bad a frame looks, by the critical output (else the first output)."""
    name = manifest.critical["output"] if manifest.critical else manifest.outputs[0].name
    value = scores[name]
    return -value if manifest.output(name).direction == "below" else value


_COLOURS = np.array([[0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0]], np.float64)  # blue → red


def overlay_png(heat: np.ndarray, rows: int, columns: int) -> bytes:
    """An RGBA PNG of `heat` (values in [0, 1]) resized to columns x rows: colour from blue to
    red, transparent where the heat is low."""
    h = np.clip(np.asarray(heat, np.float32), 0.0, 1.0)
    if rows > 0 and columns > 0 and h.shape != (rows, columns):
        pic = Image.fromarray(h, mode="F").resize((columns, rows), Image.Resampling.BILINEAR)
        h = np.clip(np.asarray(pic, np.float32), 0.0, 1.0)
    pos = h * (len(_COLOURS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_COLOURS) - 2)
    t = (pos - lo)[..., None]
    rgb = _COLOURS[lo] * (1 - t) + _COLOURS[lo + 1] * t
    alpha = np.clip((h - 0.25) / 0.75, 0.0, 1.0) * 170.0
    rgba = np.concatenate([rgb, alpha[..., None]], axis=-1).round().astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(out, "PNG", compress_level=3)
    return out.getvalue()


def _fmt(v: float) -> str:
    return f"{v:.2f}"


def build_report(manifest: Manifest, scores: dict[str, float], *, critical: bool, frames_scored: int,
                 frames_total: int, how: str, worst: dict[str, Any] | None) -> str:
    """A short plain-text report for people."""
    lines = [f"{manifest.name} {manifest.version}: {frames_scored} of {frames_total} frame(s) scored, "
             f"{how} over frames."]
    first = manifest.outputs[0]
    if first.type == "float":
        verdict = ""
        if first.threshold is not None:
            verdict = " (poor)" if first.flagged(scores[first.name]) else " (acceptable)"
        lines.append(f"Overall {first.name}: {_fmt(scores[first.name])}{verdict}. "
                     + (f"{first.description}" if first.description else ""))
    flagged = [o for o in manifest.outputs if o.type == "probability" and o.flagged(scores[o.name])]
    if flagged:
        lines.append("Suggested artifacts: " + ", ".join(f"{o.name.replace('_', ' ')} {_fmt(scores[o.name])}"
                                                          for o in flagged) + ".")
    elif any(o.type == "probability" for o in manifest.outputs):
        lines.append("No artifact above its threshold.")
    if worst is not None:
        where = f"instance {worst['instance_number']}" if worst.get("instance_number") is not None else worst["path"]
        if worst["frame"]:
            where += f", frame {worst['frame'] + 1}"
        lines.append(f"Worst frame: {where} ({first.name} {_fmt(worst['scores'][first.name])}); the heatmap shows it.")
    if critical and manifest.critical:
        lines.append(f"CRITICAL: {manifest.critical.get('meaning', 'critical threshold crossed')}.")
    lines.append("All scores: " + ", ".join(f"{o.name} {_fmt(scores[o.name])}" for o in manifest.outputs) + ".")
    lines.append("An automated estimate; a reviewer's decision always wins.")
    return "\n".join(lines)


def series_policy(manifest: Manifest) -> tuple[int, str]:
    """(frames, aggregate) for series scoring: the manifest's `series` (chosen by the model's evaluation), else
    8 frames and the mean."""
    policy = manifest.raw.get("series") if isinstance(manifest.raw.get("series"), dict) else {}
    frames = policy.get("max_frames", DEFAULT_MAX_FRAMES)
    how = policy.get("aggregate", "mean")
    frames = frames if isinstance(frames, int) and not isinstance(frames, bool) and frames > 0 else DEFAULT_MAX_FRAMES
    return frames, how if how in AGGREGATES else "mean"


def no_content_result(manifest: Manifest, skipped: list, total: int) -> dict[str, Any]:
    """What a series whose every frame is blank, constant or mostly empty gets: no scores, not critical."""
    return {"model": {"name": manifest.name, "version": manifest.version}, "scores": {}, "flagged": [],
            "per_instance": [], "frames_scored": 0, "frames_total": total, "aggregate": "", "representative": None,
            "heatmap_png": b"", "critical": False, "skipped": skipped, "no_content": True,
            "report": f"{manifest.name} {manifest.version}: no diagnostic content — every frame looked at is blank, "
                      "constant or mostly empty, so nothing was scored."}


def score_series(paths: Sequence[str | Path], model_dir: str | Path | None = None, *,
                 max_frames: int | None = None, aggregate: str | None = None,
                 device: str | None = None) -> dict[str, Any]:
    """Score a series (its files, in any order) with the model in `model_dir` (default: built-in).

    Returns {"model": {"name", "version"}, "scores": {output: value}, "flagged": [outputs over
    their thresholds], "per_instance": [{"sop_instance_uid", "instance_number", "path", "frame",
    "scores", "flagged"}], "frames_scored", "frames_total", "aggregate", "representative":
    {"sop_instance_uid", "instance_number", "path", "frame", "rows", "columns"}, "heatmap_png":
    RGBA PNG bytes sized like the representative frame, "report": str, "critical": bool,
    "skipped": [{"path", "reason"}]}. The representative frame is the worst one scored.

    Frames and aggregate default to the manifest's `series` policy (`series_policy`). Blank, constant
    or mostly-empty frames are not scored (`portal/ai/content.py`); a series of nothing else gets
    `no_content_result` (no scores, "no_content": True).

    Raises `ModelUnavailable` (the model cannot be used) or `DicomRejected` (no frame of the
    series could be read), each with a reason.
    """
    from portal.ai.content import no_content_reason

    if aggregate is not None and aggregate not in AGGREGATES:
        raise ValueError(f"Unknown aggregate {aggregate!r}; use {' or '.join(AGGREGATES)}.")
    if model_dir is None:
        from portal.ai.registry import builtin_model_dir
        model_dir = builtin_model_dir()
    runner = load_model(model_dir, device=device)
    manifest = runner.manifest
    policy_frames, policy_how = series_policy(manifest)
    max_frames = max_frames or policy_frames
    aggregate = aggregate or policy_how
    frames, total, skipped = representative_frames(paths, max_frames)
    from portal.ai import quality_model as qm

    inputs, scored, blank = [], [], 0
    for fr in frames:
        try:
            values = qm.frame_values(fr["path"], fr["frame"])
        except Exception as exc:  # a frame that cannot be decoded does not stop the others
            skipped.append({"path": str(fr["path"]), "reason": f"frame {fr['frame'] + 1}: {exc}"})
            continue
        reason = no_content_reason(values)
        if reason:
            blank += 1
            skipped.append({"path": str(fr["path"]), "reason": f"frame {fr['frame'] + 1}: no diagnostic content ({reason})"})
            continue
        inputs.append(runner.preprocess(values))
        scored.append(fr)
    if not scored and blank:
        return no_content_result(manifest, skipped, total)
    if not scored:
        reasons = "; ".join(s["reason"] for s in skipped[:3]) or "no files"
        raise DicomRejected(f"No frame of this series could be scored ({reasons}).", "no_scorable_frames")
    per_frame = runner(inputs)
    per_instance = [{"sop_instance_uid": fr["sop_instance_uid"], "instance_number": fr["instance_number"],
                     "path": str(fr["path"]), "frame": fr["frame"],
                     "scores": {k: round(v, 4) for k, v in s.items()}, "flagged": manifest.flagged(s)}
                    for fr, s in zip(scored, per_frame)]
    scores = aggregate_scores(manifest, per_frame, aggregate)
    worst_index = max(range(len(scored)), key=lambda i: _badness(manifest, per_frame[i]))
    worst = scored[worst_index]
    target = manifest.critical["output"] if manifest.critical else None
    heat = runner.heatmap(inputs[worst_index], target)
    rows, columns = worst["rows"] or heat.shape[0], worst["columns"] or heat.shape[1]
    critical = manifest.is_critical(scores)
    return {
        "model": {"name": manifest.name, "version": manifest.version},
        "scores": {k: round(v, 4) for k, v in scores.items()},
        "flagged": manifest.flagged(scores),
        "per_instance": per_instance,
        "frames_scored": len(scored),
        "frames_total": total,
        "aggregate": aggregate,
        "representative": {"sop_instance_uid": worst["sop_instance_uid"],
                           "instance_number": worst["instance_number"],
                           "path": str(worst["path"]), "frame": worst["frame"], "rows": rows, "columns": columns},
        "heatmap_png": overlay_png(heat, rows, columns),
        "report": build_report(manifest, scores, critical=critical, frames_scored=len(scored), frames_total=total,
                               how=aggregate, worst={**per_instance[worst_index], "path": Path(worst["path"]).name}),
        "critical": critical,
        "skipped": skipped,
    }
