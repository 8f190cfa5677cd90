"""Retraining speed: fine-tuning the built-in model on a synthetic label set, as a worker would.

    .venv/bin/python bench/retrain.py [--series 48] [--epochs 12] [--device cpu|cuda]

Makes `--series` labelled two-slice series (portal.dicom.samples.labelled_series: a burned-in
square reviewers call unusable), fine-tunes with portal.ai.finetune and prints the time per
phase and the held-out AUC before and after. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portal.ai import finetune  # noqa: E402
from portal.ai.registry import builtin_model_dir  # noqa: E402
from portal.dicom import samples  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=finetune.EPOCHS)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        made = samples.labelled_series(Path(tmp) / "data", args.series)
        examples = [{"key": uid, "paths": files, "labels": {"quality": 0 if bad else 1}} for uid, files, bad in made]
        marks, start = [], time.perf_counter()

        def progress(msg: str) -> None:
            marks.append((time.perf_counter() - start, msg))

        out = finetune.finetune(examples, builtin_model_dir(), Path(tmp) / "out", version="9.9.9", project="bench",
                                epochs=args.epochs, device=args.device, progress=progress)
        total = time.perf_counter() - start
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"fine-tuning on {out['device']}: {out['series']} series ({out['train_frames']} training frames, "
          f"{out['held_out_series']} held out), {out['epochs']} epochs: {total:.1f} s (load average {load:.2f})")
    epochs = [t for t, m in marks if m.startswith("epoch")]
    if len(epochs) > 1:
        print(f"  {(epochs[-1] - epochs[0]) / (len(epochs) - 1):.2f} s per epoch")
    print(f"  held-out AUC {out['base']['macro']} → {out['new']['macro']}; kept: {out['better']}")


if __name__ == "__main__":
    main()
