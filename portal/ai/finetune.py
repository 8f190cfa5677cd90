"""Fine-tune a quality model on reviewers' labels, and keep the result only if it is better.

Pure functions over files (no database, no queue); imports torch, so only workers and the CLI
import it. `portal/inference/retrain.py` gathers the labels and records the outcome.

    examples = [{"key": series_uid, "paths": [...], "labels": {"quality": 1, "motion": 0}}, ...]
    outcome = finetune(examples, base_dir, out_dir, version="1.0.1", project="chest")
    outcome["better"]        # True: out_dir holds the new model (manifest, model.pt, comparison)
    outcome["base"]["auc"]   # {"quality": 0.71, "motion": 0.64}: the current model on held-out labels
    outcome["new"]["auc"]    # the same after fine-tuning

Labels are per series: `quality` 1 = usable, 0 = unusable; an artifact output 1 = present,
0 = absent; outputs without a label are not trained. Series are split by a hash of their key,
stratified by their labels; both models are compared on the same held-out
series (mean over each series' frames, as inference scores a series), by the mean AUC over the
outputs that have both classes there.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from portal.ai.infer import representative_frames
from portal.ai.registry import load_manifest
from portal.ai.train_quality import auc

SEED = 1729
HOLDOUT_SHARE = 0.3
FRAMES_PER_SERIES = 4
MIN_SERIES = 8  # fewer labelled series say nothing reliable about "better"
EPOCHS = 12


class NotEnoughLabels(ValueError):
    """The labels cannot train or compare a model; the message says what is missing."""


def split(keys: Sequence[str], groups: Sequence[Any] | None = None,
          share: float = HOLDOUT_SHARE) -> tuple[list[int], list[int]]:
    """(train, held-out) indices, stratified: within each group (e.g. the quality label), the series
    whose key hashes lowest are held out, `share` of them (at least one of a group of two or more)."""
    groups = list(groups) if groups is not None else [None] * len(keys)
    rank = {i: hashlib.sha256(k.encode()).hexdigest() for i, k in enumerate(keys)}
    held: set[int] = set()
    for g in {repr(x) for x in groups}:
        members = sorted((i for i in range(len(keys)) if repr(groups[i]) == g), key=rank.__getitem__)
        if len(members) >= 2:
            held.update(members[:max(1, round(share * len(members)))])
    return [i for i in range(len(keys)) if i not in held], sorted(held)


def _outputs_with_both_classes(examples: Sequence[dict], names: Sequence[str]) -> list[str]:
    return [n for n in names if {e["labels"].get(n) for e in examples} >= {0, 1}]


def evaluate(module, frames: list[list[np.ndarray]], examples: Sequence[dict], names: Sequence[str],
             outputs: Sequence[str], channels: int = 1) -> dict[str, Any]:
    """AUC per output over series (mean of each series' frame scores) and their mean ("macro")."""
    from portal.ai import quality_model as qm

    scores = [np.mean([list(s.values()) for s in qm.predict(module, f, names=names, channels=channels)], axis=0)
              for f in frames]
    out = {}
    for name in outputs:
        j = list(names).index(name)
        labelled = [(e["labels"][name], s[j]) for e, s in zip(examples, scores) if name in e["labels"]]
        value = auc(np.array([y for y, _ in labelled]), np.array([v for _, v in labelled]))
        if value is not None:
            out[name] = round(value, 4)
    return {"auc": out, "macro": round(float(np.mean(list(out.values()))), 4) if out else None}


def finetune(examples: Sequence[dict], base_dir: str | Path, out_dir: str | Path, *, version: str,
             project: str = "", epochs: int | None = None, lr: float = 3e-4, seed: int = SEED,
             device: str | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune the model in `base_dir` on `examples`; write it to `out_dir` as `version` only if it
    beats the base model on the held-out series. Returns the comparison (also written beside the
    new model). Raises NotEnoughLabels."""
    import torch

    from portal.ai import quality_model as qm

    say = progress or (lambda _msg: None)
    epochs = epochs or EPOCHS
    base = load_manifest(base_dir)
    names = base.output_names
    examples = [e for e in examples if any(n in names for n in e["labels"])]
    if len(examples) < MIN_SERIES:
        raise NotEnoughLabels(f"{len(examples)} series carry a usable label; at least {MIN_SERIES} are needed "
                              "(decisions Usable/Unusable, or artifacts the model knows marked present or absent).")
    train_idx, held_idx = split([e["key"] for e in examples],
                                [tuple(sorted(e["labels"].items())) for e in examples])
    held = [examples[i] for i in held_idx]
    outputs = _outputs_with_both_classes(held, names)
    if not outputs or not train_idx:
        raise NotEnoughLabels(f"The {len(held)} held-out series do not have both classes of any output "
                              f"({', '.join(sorted({n for e in examples for n in e['labels']}))}): "
                              "label more series, some good and some bad.")

    say(f"loading frames of {len(examples)} series")
    frames: list[list[np.ndarray]] = []
    for e in examples:
        chosen, _, _ = representative_frames(e["paths"], FRAMES_PER_SERIES)
        frames.append([qm.load_frame(f["path"], f["frame"], base.input_size, base.normalisation) for f in chosen])
    keep = [i for i, f in enumerate(frames) if f]
    train_idx = [i for i in train_idx if i in keep]
    held_idx = [i for i in held_idx if i in keep]

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():  # torch 2.13 calls TorchScript deprecated; it is the format we ship
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(base.model_path), map_location="cpu")
    target = qm.pick_device(device)  # CUDA when present (or as LIGHTBOX_AI_DEVICE says), else the CPU
    model.to(target)
    model.eval()
    say("scoring the held-out series with the current model")
    channels = base.input_channels
    before = evaluate(model, [frames[i] for i in held_idx], [examples[i] for i in held_idx], names, outputs, channels)

    # Training samples: every frame of a training series, with its series' labels (a mask marks
    # the outputs labelled). BatchNorm statistics and dropout stay frozen (eval mode): a few
    # dozen series must nudge the model, not rebuild it.
    xs, ys, ms = [], [], []
    for i in train_idx:
        y = np.array([float(examples[i]["labels"].get(n, 0)) for n in names], np.float32)
        m = np.array([1.0 if n in examples[i]["labels"] else 0.0 for n in names], np.float32)
        for f in frames[i]:
            xs.append(f)
            ys.append(y)
            ms.append(m)
    x_all = torch.from_numpy(np.stack(xs))
    if x_all.ndim == 3:  # one-channel inputs (N, H, W); native-crop ones are (N, 2, H, W) already
        x_all = x_all[:, None]
    y_all, m_all = torch.from_numpy(np.stack(ys)), torch.from_numpy(np.stack(ms))
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for epoch in range(epochs):
        order = rng.permutation(len(xs))
        total = 0.0
        for start in range(0, len(order), 16):
            idx = torch.from_numpy(order[start:start + 16])
            x, y, m = x_all[idx].to(target), y_all[idx].to(target), m_all[idx].to(target)
            if rng.random() < 0.5:
                x = torch.flip(x, dims=[3])
            p = model(x).clamp(1e-5, 1 - 1e-5)
            loss = -(m * (y * torch.log(p) + (1 - y) * torch.log(1 - p))).sum() / m.sum().clamp(min=1.0)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        say(f"epoch {epoch + 1}/{epochs}: loss {total / len(xs):.4f}")
    model.eval()
    say("scoring the held-out series with the fine-tuned model")
    after = evaluate(model, [frames[i] for i in held_idx], [examples[i] for i in held_idx], names, outputs, channels)
    better = after["macro"] is not None and (before["macro"] is None or after["macro"] > before["macro"])
    comparison = {
        "model": base.name, "project": project, "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "base": {"version": base.version, **before}, "new": {"version": version, **after},
        "better": bool(better), "outputs": list(outputs), "series": len(keep),
        "train_series": len(train_idx), "held_out_series": len(held_idx), "train_frames": len(xs),
        "seed": seed, "epochs": epochs, "lr": lr, "device": str(target),
        "labels": {n: sum(1 for e in examples if n in e["labels"]) for n in names},
    }
    if better:
        _write_model(model.cpu(), base, Path(out_dir), version, project, comparison)
    return comparison


def _write_model(model, base, out: Path, version: str, project: str, comparison: dict) -> None:
    """The new model folder, written beside and renamed into place, so that a half-written model is never listed."""
    import torch

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(model, str(tmp / "model.pt"))
    manifest = json.loads((base.directory / "manifest.json").read_text())
    manifest.update({
        "version": version, "file": "model.pt",
        "sha256": hashlib.sha256((tmp / "model.pt").read_bytes()).hexdigest(),
        # A model fine-tuned on one project's labels serves that project only.
        "project": project,
        "trained": {"from": f"{base.name} {base.version}", "project": project, "seed": comparison["seed"],
                    "date": comparison["date"], "script": "portal/ai/finetune.py",
                    "held_out_macro_auc": {"before": comparison["base"]["macro"], "after": comparison["new"]["macro"]},
                    "evaluation": "comparison.json"},
    })
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (tmp / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")
    if out.exists():
        raise FileExistsError(f"{out} exists already")
    tmp.rename(out)
