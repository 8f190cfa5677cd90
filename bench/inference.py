"""Inference speed of the built-in quality model: images/s for 256x256 inputs on the CPU.

    .venv/bin/python bench/inference.py [--threads 2] [--seconds 5] [--device cpu]
    .venv/bin/python bench/inference.py --latency [--quiet 1] [--series 5] [--slices 5]

Loads the committed TorchScript model through the registry (as a worker does), then runs
batches of 1 and 16 preprocessed 256x256 inputs for a few seconds each and prints images/s;
also the time to turn a DICOM frame into an input (decode, modality LUT, resize, normalise),
and the cost of one Grad-CAM heatmap. Target to measure (not asserted): >= 50 images/s on
2 cores. Other processes on the machine slow it down: the load average is printed beside.

--latency starts a Lightbox (SQLite, SqliteHuey, one embedded consumer thread), uploads series
of 512x512 CT slices one instance per request, and measures the time from the last upload to
the moment `GET /api/v1/results/{uid}` answers success. It prints the project's quiet period
(the wait for more instances, a setting) apart from the rest (queue, scoring, storing results).
Target to measure: < 3 s upload → result.
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


def latency(args) -> None:
    """Upload → result times through a real server with its embedded queue."""
    import statistics
    import tempfile

    import httpx

    from bench.ingest import ADMIN_PASSWORD, make_files, start_lightbox
    from portal.dicom import samples

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        os.environ.update({"LIGHTBOX_DATA_DIR": str(data), "LIGHTBOX_ADMIN_PASSWORD": ADMIN_PASSWORD})
        proc, url = start_lightbox(data, workers=1, settings={"ai_quiet_seconds": args.quiet})
        try:
            auth = {"X-USERNAME": "admin", "X-PASSWORD": ADMIN_PASSWORD}
            src = make_files(1, Path(tmp) / "src")[0]
            times = []
            for n in range(args.series):
                files = samples.make_series(src, Path(tmp) / f"s{n}", args.slices)
                with httpx.Client(base_url=url, headers=auth, timeout=60) as http:
                    for f in files:
                        r = http.post("/api/v1/instance/upload/", data={"Project": "bench"},
                                      files={"file": (f.name, f.read_bytes())})
                        r.raise_for_status()
                    uid = r.json()["SeriesInstanceUID"]
                    sent = time.perf_counter()
                    while True:
                        body = http.get(f"/api/v1/results/{uid}").json()
                        if body.get("success") or "failed" in body.get("message", ""):
                            break
                        time.sleep(0.05)
                    took = time.perf_counter() - sent
                if not body.get("success"):
                    raise SystemExit(f"series {n}: {body['message']}")
                times.append(took)
                print(f"  series {n + 1}: result {took:5.2f} s after the last upload "
                      f"({max(took - args.quiet, 0):4.2f} s after the quiet period)")
            med = statistics.median(times)
            print(f"upload → result, {args.slices} slices of 512x512 CT: median {med:.2f} s, max {max(times):.2f} s; "
                  f"quiet period {args.quiet:g} s; queue + scoring + results: median {max(med - args.quiet, 0):.2f} s")
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch CPU threads")
    ap.add_argument("--seconds", type=float, default=5.0, help="per batch size")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--latency", action="store_true", help="measure upload → result through a running server")
    ap.add_argument("--quiet", type=float, default=1.0, help="the project's quiet period for --latency (s)")
    ap.add_argument("--series", type=int, default=5, help="series to upload for --latency")
    ap.add_argument("--slices", type=int, default=5, help="instances per series for --latency")
    args = ap.parse_args()
    if args.latency:
        return latency(args)

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
