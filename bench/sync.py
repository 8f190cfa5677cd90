"""Import of a 100,000-row MIQA CSV: validate + apply, frame metadata only.

    .venv/bin/python bench/sync.py                 # 100,000 frames in 1,000 scans, on SQLite in a temp dir
    .venv/bin/python bench/sync.py -n 20000 --per-scan 50

"Frame metadata only": the frames are already in the archive (the usual case in a sync cycle, where most
rows are what Lightbox exported last time), so no pixel data is copied. The import still does all of its
work on every row: parse, check the header, project name, frame numbers and duplicates, that each file
exists, decision codes and dates; then, in one transaction, merge one decision per scan. Setup (rows
written straight into the tables, every frame's file a hard link to one sample) is not timed.

Prints rows/s and seconds for validate, apply and the whole import, then the same for a second import of
the same file (everything already there). Target to measure (not asserted): < 60 s for 100,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def setup(n: int, per_scan: int, folder: Path):
    from portal import clock, db, projects
    from portal.archive import storage
    from portal.auth import accounts
    from portal.dicom import FileStore, samples
    from portal.exchange import csvformat
    from portal.tables import Instance, Patient, Series, Study

    await db.migrate()
    project = await projects.create("bench")
    await accounts.create("bench-rev", "bench-password-123")
    await projects.set_member(project, "bench-rev", "reviewer")
    archive = await projects.archive(project, None)
    store = storage()
    import shutil

    sources = []  # hard links to a copy of one sample; a file takes at most ~65,000 links

    def source(i: int) -> Path:
        while len(sources) <= i // 50_000:
            sources.append(Path(shutil.copy(samples.sample_path("CT_small.dcm"), folder / f"sample{len(sources)}.dcm")))
        return sources[i // 50_000]

    now = clock.now()
    rows = []
    scans = (n + per_scan - 1) // per_scan
    for s in range(scans):
        study_uid, series_uid = f"2.25.{10**6 + s}", f"2.25.{2 * 10**6 + s}"
        patient = Patient(key=f"{archive.id}:B{s}", project=project.id, archive=archive.id, patient_id=f"B{s}",
                          created_at=now)
        await patient.save()
        study = Study(key=f"{project.id}:{study_uid}", project=project.id, patient=patient.id,
                      study_instance_uid=study_uid, created_at=now, updated_at=now)
        await study.save()
        series = Series(key=f"{project.id}:{series_uid}", project=project.id, study=study.id,
                        series_instance_uid=series_uid, modality="CT", last_instance_at=now, created_at=now)
        await series.save()
        instances = []
        for i in range(min(per_scan, n - s * per_scan)):
            sop = f"2.25.{3 * 10**6 + s * per_scan + i}"
            key = FileStore.key_for(f"{project.id}/{sop}/bench")
            path = store.path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(source(s * per_scan + i), path)
            instances.append(Instance(key=f"{project.id}:{sop}", project=project.id, series=series.id,
                                      sop_instance_uid=sop, instance_number=i + 1, file_key=key, size=1, md5="0" * 32,
                                      created_at=now))
            rows.append([project.name, study_uid, series_uid, "CT", i, str(path), "", f"B{s}", "", "",
                         "U", "bench-rev", "", f"2026-01-01T00:{s // 60 % 60:02d}:{s % 60:02d}Z", "", ""])
        for start in range(0, len(instances), 500):
            await Instance.insert(*instances[start:start + 500])
    path = folder / "bench.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(csvformat.COLUMNS)
        w.writerows(rows)
    return project, path


async def measure(project, path: Path) -> dict:
    from portal.exchange import importer

    t0 = time.perf_counter()
    plan = await importer.validate(path, project)
    t1 = time.perf_counter()
    counts = await importer.apply(plan, project)
    t2 = time.perf_counter()
    return {"validate": t1 - t0, "apply": t2 - t1, "total": t2 - t0, "counts": counts}


async def main_async(args) -> None:
    from portal import db
    from portal.tables import Project

    folder = Path(os.environ["LIGHTBOX_DATA_DIR"])
    try:
        t = time.perf_counter()
        project, path = await setup(args.n, args.per_scan, folder)
        print(f"setup: {args.n:,} frames in {(args.n + args.per_scan - 1) // args.per_scan:,} scans, "
              f"CSV {path.stat().st_size / 1024**2:.1f} MB ({time.perf_counter() - t:.1f} s, not timed)")
        for label in ("first import", "second import (all there already)"):
            r = await measure(project, path)
            c = r["counts"]
            print(f"{label}: {args.n:,} rows in {r['total']:.1f} s ({args.n / r['total']:,.0f} rows/s): "
                  f"validate {r['validate']:.1f} s, apply {r['apply']:.1f} s; decisions added "
                  f"{c['decisions_added']:,}, already there {c['decisions_existing']:,}, frames already there "
                  f"{c['frames_existing']:,}")
        print(f"target: < 60 s for 100,000 rows ({'met' if r['total'] < 60 else 'NOT met'} on the last run)")
    finally:
        await db.close_pool(Project._meta.db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="frames (CSV rows)")
    parser.add_argument("--per-scan", type=int, default=100, help="frames per scan")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-sync-") as tmp:
        os.environ["LIGHTBOX_DATA_DIR"] = tmp
        from portal import db, settings as settings_mod

        settings = settings_mod.load()
        settings_mod.use(settings)
        db.configure(settings)
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
