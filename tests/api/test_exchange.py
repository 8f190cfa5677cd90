"""Import/export (issue 7): JSON and MIQA CSV exports with every decision and submission, atomic writes and
backups, validate-then-merge imports that report every problem and change nothing, de-identified exports,
scheduled sync, the API (managers only, runs with a status) and a round trip into an empty install."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from portal import clock, forms, projects
from portal.archive import ingest_file, storage
from portal.auth import accounts
from portal.dicom import open_dataset, samples
from portal.exchange import csvformat, export, import_file, runs, sync
from portal.exchange.importer import ImportRefused
from portal.review import decisions
from portal.tables import AuditEvent, Decision, FormSubmission, Instance, Series, SyncRun
from tests.conftest import fresh_env
from tests.helpers import creds, make_project

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

MRI_ENTRY = {"sequence": "T1-weighted", "coverage_complete": True, "motion": "None", "snr_adequate": True,
             "quality_score": 4, "repeat_recommended": False}


async def _project(name="chest"):
    p = await make_project(name, {"mgr": "manager", "rev": "reviewer", "sen": "senior_reviewer", "view": "viewer"})
    await projects.update_settings(p, {"ai_routing": []})  # no AI jobs in these tests
    return await projects.get(name)


async def _series(p, tmp_path, n=3, patient_id="P-1", sample="CT_small.dcm", sub="src"):
    files = samples.make_series(samples.sample_path(sample), tmp_path / sub, n, patient_id=patient_id)
    for f in files:
        assert (await ingest_file(f, p)).ok
    uid = open_dataset(files[0], stop_before_pixels=True).SeriesInstanceUID
    return await Series.objects().get(Series.key == f"{p.id}:{uid}"), files


async def _populated(tmp_path):
    """A project with two series, a decision history on one, and a form submission."""
    p = await _project()
    s1, _ = await _series(p, tmp_path, 3, sub="a")
    s2, _ = await _series(p, tmp_path, 2, patient_id="P-2", sub="b")
    rev, sen = await accounts.get("rev"), await accounts.get("sen")
    await decisions.record(p, s1, rev, "Q?", note="motion?", artifacts={"ghosting_motion": 1, "lesions": 0})
    await decisions.record(p, s1, sen, "UN", note="repeat", location={"x": 1.5, "y": 2, "z": -3})
    await decisions.record(p, s2, rev, "U")
    await forms.submit(s1, p, rev, "mri-qc", MRI_ENTRY)
    return p, s1, s2


def _doc(path) -> dict:
    return json.loads(Path(path).read_text())


# --- export ---------------------------------------------------------------------------------------


async def test_json_export_has_every_decision_submission_and_real_files(app, tmp_path):
    p, s1, s2 = await _populated(tmp_path)
    result = await export(p, fmt="json", to=tmp_path / "out" / "chest.json")
    doc = _doc(result.path)
    exp = doc["projects"]["chest"]["experiments"]
    scans = {uid: scan for e in exp.values() for uid, scan in e["scans"].items()}
    scan = scans[s1.series_instance_uid]
    assert [d["decision"] for d in scan["decisions"]] == ["Q?", "UN"]  # the whole history, oldest first
    assert scan["last_decision"]["decision"] == "UN" and scan["last_decision"]["creator"] == "sen"
    assert scan["decisions"][0]["user_identified_artifacts"] == {"ghosting_motion": 1, "lesions": 0}
    assert scan["decisions"][1]["location"] == {"x": 1.5, "y": 2.0, "z": -3.0}
    assert scan["decisions"][0]["created"].endswith("Z") and len(scan["decisions"][0]["created"]) == 20
    assert scan["form_submissions"][0]["form"] == "mri-qc" and scan["form_submissions"][0]["entry"] == MRI_ENTRY
    assert len(scan["frames"]) == 3 and list(scan["frames"]) == ["0", "1", "2"]
    for e in exp.values():
        for sc in e["scans"].values():
            for frame in sc["frames"].values():
                assert Path(frame["file_location"]).is_file()  # every frame points at a real file
    assert result.frames == 5 and result.decisions == 3 and result.submissions == 1
    assert await AuditEvent.count().where(AuditEvent.action == "export") == 1


async def test_csv_export_has_miqa_columns_in_order_and_the_last_decision(app, tmp_path):
    p, s1, _ = await _populated(tmp_path)
    result = await export(p, fmt="csv", to=tmp_path / "chest.csv")
    rows = list(csv.reader(open(result.path)))
    assert tuple(rows[0]) == ("project_name", "experiment_name", "scan_name", "scan_type", "frame_number",
                              "file_location", "experiment_notes", "subject_id", "session_id", "scan_link",
                              "last_decision", "last_decision_creator", "last_decision_note", "last_decision_created",
                              "identified_artifacts", "location_of_interest")
    assert len(rows) == 1 + 5  # one row per frame
    mine = [dict(zip(rows[0], r)) for r in rows[1:] if r[2] == s1.series_instance_uid]
    assert [r["frame_number"] for r in mine] == ["0", "1", "2"]
    assert {r["last_decision"] for r in mine} == {"UN"} and mine[0]["last_decision_creator"] == "sen"
    assert mine[0]["scan_link"].endswith(f"/projects/chest/series/{s1.series_instance_uid}")
    assert json.loads(mine[0]["location_of_interest"]) == {"x": 1.5, "y": 2.0, "z": -3.0}
    assert mine[0]["subject_id"] == "P-1" and Path(mine[0]["file_location"]).is_file()


async def test_export_is_atomic_and_keeps_the_last_n_backups(app, tmp_path):
    p, _, _ = await _populated(tmp_path)
    await projects.update_settings(p, {"export_backups": 2, "export_path": str(tmp_path / "x" / "chest.json")})
    p = await projects.get("chest")
    for _ in range(4):
        await export(p)
    folder = tmp_path / "x"
    assert sorted(x.name for x in folder.iterdir()) == ["backups", "chest.json"]  # no temp file left behind
    backups = sorted((folder / "backups").iterdir())
    assert len(backups) == 2 and all(b.name.startswith("chest.") for b in backups)
    assert _doc(backups[-1])["projects"] == _doc(folder / "chest.json")["projects"]


async def test_copy_mode_puts_images_under_the_export_folder(app, tmp_path):
    p, s1, _ = await _populated(tmp_path)
    await projects.update_settings(p, {"export_images": "copy"})
    result = await export(await projects.get("chest"), to=tmp_path / "share" / "chest.json")
    doc = _doc(result.path)
    frame = next(iter(doc["projects"]["chest"]["experiments"].values()))["scans"]
    location = next(iter(next(iter(frame.values()))["frames"].values()))["file_location"]
    assert not Path(location).is_absolute() and (tmp_path / "share" / location).is_file()


async def test_images_uploaded_through_the_portal_are_exported(client, app, tmp_path):
    await _project()
    f = samples.restamp(samples.sample_path("MR_small.dcm"), tmp_path / "up.dcm", patient_id="UP-1")
    with open(f, "rb") as fh:
        r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), data={"Project": "chest"},
                              files={"file": ("up.dcm", fh)})
    assert r.status_code == 200, r.text
    f.unlink()  # the uploader's copy is gone: only Lightbox has it
    result = await export(await projects.get("chest"), fmt="csv", to=tmp_path / "e.csv")
    row = list(csv.DictReader(open(result.path)))[0]
    assert Path(row["file_location"]).is_file() and row["subject_id"] == "UP-1"
