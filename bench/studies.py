"""Studies table speed at scale: 10,000 studies (30,000 series) in one project, then the project page's queries.

    .venv/bin/python bench/studies.py [-n 10000] [--postgres postgres://postgres@127.0.0.1:5432/postgres]

Rows are inserted directly (no files: this measures the table, not ingest). Prints milliseconds per
query for the default view, a search, a modality filter, a date range, a status filter, a sort and a
far page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def run(n: int) -> None:
    from portal import clock, db, projects
    from portal.archive import browse
    from portal.tables import Patient, Series, Study

    await db.migrate()
    project = await projects.create(f"bench{random.randint(0, 10**6)}")
    archive = await projects.archive(project, None)
    now = clock.now()
    rnd = random.Random(1)
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        patients = [Patient(key=f"{archive.id}:B{i}", project=project.id, archive=archive.id, patient_id=f"B{i:06d}",
                            patient_name=f"Doe^Pat{i}", created_at=now) for i in range(start, min(n, start + 1000))]
        rows = await Patient.insert(*patients).returning(Patient.id)
        studies = [Study(key=f"{project.id}:1.2.{i}", project=project.id, patient=r["id"],
                         study_instance_uid=f"1.2.{i}", study_date=f"20{rnd.randint(10, 25)}0{rnd.randint(1, 9)}1{rnd.randint(0, 9)}",
                         description=rnd.choice(["CHEST PA", "BRAIN MRI", "ABDOMEN CT", "KNEE"]),
                         accession_number=f"A{i}", modalities=rnd.choice(["CR", "MR", "CT"]), created_at=now, updated_at=now)
                   for i, r in zip(range(start, start + 1000), rows)]
        srows = await Study.insert(*studies).returning(Study.id)
        series = [Series(key=f"{project.id}:1.3.{i}.{k}", project=project.id, study=s["id"],
                         series_instance_uid=f"1.3.{i}.{k}", modality=rnd.choice(["CR", "MR", "CT"]),
                         review_status=rnd.choice(["unreviewed", "needs_senior_review", "complete"]),
                         last_instance_at=now, created_at=now)
                  for i, s in zip(range(start, start + 1000), srows) for k in range(3)]
        for k in range(0, len(series), 500):  # PostgreSQL takes at most 32767 parameters per query
            await Series.insert(*series[k:k + 500])
    print(f"inserted {n} studies / {3 * n} series in {time.perf_counter() - t0:.1f} s")
    if Study._meta.db.engine_type == "postgres":
        await Study.raw("ANALYZE")  # what autovacuum would do after a bulk load
    cases = {
        "default (date, newest first)": {},
        "search 'B0042'": {"q": "B0042"},
        "modality MR": {"modality": "MR"},
        "date range 2015-2018": {"from": "20150101", "to": "20181231"},
        "status needs senior review": {"status": "needs_senior_review"},
        "sort by patient": {"sort": "patient", "dir": "asc"},
        "page 300": {"page": "300"},
    }
    for label, params in cases.items():
        query = browse.StudyQuery.from_params(params)
        await browse.search_studies(project, query)  # warm
        t = time.perf_counter()
        for _ in range(5):
            page = await browse.search_studies(project, query)
        print(f"{label:32s} {1000 * (time.perf_counter() - t) / 5:7.1f} ms  ({page.total} matches)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--postgres", help="a PostgreSQL database URL to use instead of a scratch SQLite file")
    args = ap.parse_args()
    os.environ["LIGHTBOX_DATA_DIR"] = tempfile.mkdtemp(prefix="lightbox-bench-")
    if args.postgres:
        os.environ["LIGHTBOX_DATABASE_URL"] = args.postgres
    from portal import db, settings

    db.configure(settings.current())
    asyncio.run(run(args.n))


if __name__ == "__main__":
    main()
