"""Demo data for a fresh install: a `demo` project with sample series from pydicom's test files."""

from __future__ import annotations

import tempfile
from pathlib import Path

from portal import projects
from portal.archive import ingest_path
from portal.dicom import samples
from portal.tables import Project

DEMO_PROJECT = "demo"


async def load(data_dir: Path, *, only_if_empty: bool = True) -> str:
    """Create the demo project and ingest sample images; returns what happened, for the console."""
    if only_if_empty and await Project.count() > 0:
        return "demo: projects exist already; nothing loaded"
    project = await projects.get(DEMO_PROJECT) or await projects.create(
        DEMO_PROJECT, description="Sample CT, MR and CR images from pydicom's test data")
    stored = 0
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        tmp = Path(tmp)
        sources = [
            # A 24-slice CT volume built from one sample slice, and single images of other kinds.
            *samples.make_series(samples.sample_path("CT_small.dcm"), tmp / "ct", 24, patient_id="DEMO-001"),
            samples.restamp(samples.sample_path("MR_small.dcm"), tmp / "mr.dcm", patient_id="DEMO-002"),
            samples.restamp(samples.sample_path("MR_small_RLE.dcm"), tmp / "mr_rle.dcm", patient_id="DEMO-002"),
            samples.restamp(samples.sample_path("JPEG2000.dcm"), tmp / "nm_j2k.dcm", patient_id="DEMO-003"),
            samples.restamp(samples.sample_path("SC_rgb_jpeg_dcmtk.dcm"), tmp / "sc.dcm", patient_id="DEMO-003"),
        ]
        try:
            sources.append(samples.restamp(samples.sample_path("RG1_UNCR.dcm"), tmp / "cr.dcm",
                                           patient_id="DEMO-004"))
        except Exception:  # pydicom-data absent: the demo still has CT and MR
            pass
        for path in sources:
            stored += sum(r.status == "stored" for r in await ingest_path(path, project))
    return f"demo: project '{DEMO_PROJECT}' with {stored} sample instance(s)"
