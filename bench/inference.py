"""Inference speed of the built-in quality model: images/s for 256x256 inputs on the CPU.

    .venv/bin/python bench/inference.py [--threads 2] [--seconds 5] [--device cpu]

Loads the committed TorchScript model through the registry (as a worker does), then runs
batches of 1 and 16 preprocessed 256x256 inputs for a few seconds each and prints images/s;
also the time to turn a DICOM frame into an input (decode, modality LUT, resize, normalise),
and the cost of one Grad-CAM heatmap. Target to measure (not asserted): >= 50 images/s on
2 cores. Other processes on the machine slow it down: the load average is printed beside.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portal.ai.registry import builtin_model_dir, load_model  # noqa: E402


def images_per_second(runner, batch: int, seconds: float) -> tuple[float, float]:
    """(wall-clock images/s, milliseconds per batch) for `batch` random inputs."""
    rng = np.random.default_rng(0)
    x = rng.random((batch, 256, 256), dtype=np.float32)
    for _ in range(3):
        runner(x, batch_size=batch)  # warm-up: TorchScript optimises on the first calls
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        runner(x, batch_size=batch)
        done += 1
    elapsed = time.perf_counter() - start
    return done * batch / elapsed, elapsed / done * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch CPU threads")
    ap.add_argument("--seconds", type=float, default=5.0, help="per batch size")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()

    import torch

    from portal.ai.quality_model import load_frame
    from portal.dicom.samples import sample_path

    torch.set_num_threads(args.threads)
    runner = load_model(builtin_model_dir(), device=args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{runner.name} {runner.version} on {runner.device} (torch {torch.__version__}, {args.threads} threads, "
          f"{os.cpu_count()} CPUs, load average {load:.2f})")
    for batch in (1, 16):
        ips, ms = images_per_second(runner, batch, args.seconds)
        print(f"  batch {batch:>2}: {ips:7.1f} images/s  ({ms:6.1f} ms per batch)")

    for name in ("CT_small.dcm", "693_UNCI.dcm", "MR2_UNCI.dcm", "RG1_UNCI.dcm"):
        path = sample_path(name)
        load_frame(path)
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < 1.0:
            load_frame(path)
            n += 1
        print(f"  preprocess {name:<14} {(time.perf_counter() - start) / n * 1000:7.1f} ms per frame")
    x = load_frame(sample_path("693_UNCI.dcm"))
    runner.heatmap(x)
    start = time.perf_counter()
    for _ in range(5):
        runner.heatmap(x)
    print(f"  heatmap (Grad-CAM)         {(time.perf_counter() - start) / 5 * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
