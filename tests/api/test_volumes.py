"""MIQA's own data (issue 18): NIfTI, MGZ and NRRD frames imported from MIQA CSV and JSON files, from `lightbox
ingest` and uploads; MIQA's names carried over; geometry checked against the affine; re-import already stored,
a changed file a new version; exports give MIQA back its files and its names; a round trip into an empty
install keeps every decision; bad volumes refused with their reason and nothing stored."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from portal import projects
from portal.archive import ingest_path, volumes
from portal.auth import accounts
from portal.dicom import open_dataset
from portal.dicom import volumes as V
from portal.exchange import export, import_file
from portal.exchange.csvformat import COLUMNS
from portal.exchange.importer import ImportRefused
from portal.review import decisions
from portal.tables import Decision, Instance, Patient, Series, Study, VolumeSource
from tests import volume_samples as vs
from tests.conftest import fresh_env
from tests.helpers import make_project

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


async def _project(name="miqa"):
    p = await make_project(name, {"mgr": "manager", "rev": "reviewer", "sen": "senior_reviewer"})
    await projects.update_settings(p, {"ai_routing": []})  # AI is its own test below
    return await projects.get(name)


def _miqa_files(root):
    """A MIQA project's files: T1 (oblique, int16 NIfTI), T2 (float NIfTI), a 4D fMRI, an MGZ and an NRRD."""
    data = vs.mr_pixels()
    return {
        ("NCANDA_E1", "t1", "T1"): vs.nifti(root / "E1" / "t1.nii.gz", data, vs.oblique_affine()),
        ("NCANDA_E1", "t2", "T2"): vs.nifti(root / "E1" / "t2.nii", data.astype(np.float32) / 3.1,
                                            vs.oblique_affine(35)),
        ("NCANDA_E1", "bold", "FMRI"): vs.nifti(root / "E1" / "bold.nii.gz",
                                                np.stack([data[:, :, :5] + t for t in range(3)], -1),
                                                np.diag([3.0, 3.0, 4.0, 1.0])),
        ("NCANDA_E2", "aseg", "T1"): vs.mgz(root / "E2" / "aseg.mgz", data, vs.oblique_affine(-15)),
        ("NCANDA_E2", "dwi", "DWI"): vs.nrrd_file(root / "E2" / "dwi.nrrd", data, vs.oblique_affine(10)),
    }


def _csv(path, files, decisions=None, project="miqa"):
    decisions = decisions or {}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for (exp, scan, kind), file in files.items():
            d = decisions.get(scan, {})
            w.writerow([project, exp, scan, kind, 0, os.path.relpath(file, path.parent), f"notes of {exp}",
                        f"SUBJ-{exp[-1]}", f"SES-{exp[-1]}", f"https://miqa.example/{scan}",
                        d.get("decision", ""), d.get("creator", ""), d.get("note", ""), d.get("created", ""),
                        d.get("artifacts", ""), ""])
    return path


async def test_csv_import_makes_series_with_miqa_names_and_the_affines_geometry(app, tmp_path):
    p = await _project()
    files = _miqa_files(tmp_path / "repo")
    counts = await import_file(_csv(tmp_path / "repo" / "miqa.csv", files, {
        "t1": {"decision": "U", "creator": "rev", "note": "fine", "created": "2026-11-02T10:00:00Z"}}), p)
    assert counts["frames_added"] == 5 and counts["decisions_added"] == 1
    assert await Series.count().where(Series.project == p.id) == 5
    assert await Study.count().where(Study.project == p.id) == 2
    t1 = await Series.objects().get(Series.series_instance_uid == V.series_uid("miqa", "NCANDA_E1", "t1"))
    assert (t1.description, t1.modality, t1.review_status) == ("T1", "MR", "complete")
    study = await Study.objects().get(Study.id == t1.study)
    assert (study.description, study.accession_number, study.study_id) == ("NCANDA_E1", "SES-1", "SES-1")
    assert (await Patient.objects().get(Patient.id == study.patient)).patient_id == "SUBJ-1"
    (src,) = await volumes.sources_of_series(t1.id)
    assert (src["experiment"], src["scan"], src["scan_type"], src["notes"], src["scan_link"]) == (
        "NCANDA_E1", "t1", "T1", "notes of NCANDA_E1", "https://miqa.example/t1")
    assert src["file_location"] == str(files[("NCANDA_E1", "t1", "T1")].resolve())

    # Geometry: a voxel's position from the stored DICOM equals nibabel's (and pynrrd's) world position.
    from portal.archive import storage

    for (exp, scan, kind), file in files.items():
        series = await Series.objects().get(Series.series_instance_uid == V.series_uid("miqa", exp, scan))
        rows = await Instance.select(Instance.file_key, Instance.instance_number).where(
            Instance.series == series.id).order_by(Instance.instance_number)
        with storage().local_copy(rows[2]["file_key"]) as stored:  # read through the seam: local disk or S3
            ds = open_dataset(stored)
        affine = {"t1": vs.oblique_affine(), "t2": vs.oblique_affine(35), "bold": np.diag([3.0, 3.0, 4.0, 1.0]),
                  "aseg": vs.oblique_affine(-15), "dwi": vs.oblique_affine(10)}[scan]
        np.testing.assert_allclose(vs.voxel_from_dicom(ds, 7, 11), vs.voxel_world_lps(affine, 7, 11, 2), atol=1e-4)
        assert len(rows) == (15 if scan == "bold" else 10)

    # MIQA's names are searchable: the scan type (series description), the experiment, the subject.
    from portal.archive.browse import StudyQuery, search_studies

    for q, found in (("fmri", ["NCANDA_E1"]), ("dwi", ["NCANDA_E2"]), ("ncanda_e2", ["NCANDA_E2"]),
                     ("subj-1", ["NCANDA_E1"]), ("t1", ["NCANDA_E1", "NCANDA_E2"])):
        page = await search_studies(p, StudyQuery(q=q))
        assert sorted(r["description"] for r in page.rows) == found, q

    # The same file again: already stored, nothing new.
    again = await import_file(tmp_path / "repo" / "miqa.csv", p)
    assert again["frames_added"] == 0 and again["frames_existing"] == 5 and again["decisions_added"] == 0
    assert await VolumeSource.count() == 5


async def test_a_changed_file_is_a_new_version_of_the_same_series(app, tmp_path):
    p = await _project()
    files = _miqa_files(tmp_path / "repo")
    path = _csv(tmp_path / "repo" / "miqa.csv", files)
    await import_file(path, p)
    t1 = await Series.objects().get(Series.series_instance_uid == V.series_uid("miqa", "NCANDA_E1", "t1"))
    await decisions.record(p, t1, await accounts.get("rev"), "Q?", note="motion")
    before = set(await Instance.select(Instance.sop_instance_uid).where(Instance.series == t1.id).output(
        as_list=True))
    changed = vs.mr_pixels()
    changed[10:20, 10:20, :] = 0
    vs.nifti(files[("NCANDA_E1", "t1", "T1")], changed, vs.oblique_affine())
    counts = await import_file(path, p)
    assert counts["frames_added"] == 1
    assert await Series.count().where(Series.project == p.id) == 5  # not a duplicate series
    after = set(await Instance.select(Instance.sop_instance_uid).where(Instance.series == t1.id).output(
        as_list=True))
    assert len(after) == 10 and not after & before  # the new version's images replace the old ones
    assert await Decision.count().where(Decision.series == t1.id) == 1  # the history stays with the series
    rows = await VolumeSource.select(VolumeSource.current).where(VolumeSource.series == t1.id)
    assert sorted(r["current"] for r in rows) == [False, True]


async def test_deleting_a_volumes_series_removes_the_stored_volume_once_no_series_keeps_it(app, tmp_path):
    from portal.archive import queries, storage

    p = await _project()
    files = _miqa_files(tmp_path / "repo")
    # A copy of the T1 file is also a second scan of the experiment: one stored copy, kept by two series.
    copy = tmp_path / "repo" / "E1" / "t1-copy.nii.gz"
    copy.write_bytes(files[("NCANDA_E1", "t1", "T1")].read_bytes())
    files[("NCANDA_E1", "t1again", "T1")] = copy
    await import_file(_csv(tmp_path / "repo" / "miqa.csv", files), p)
    t1, again, t2 = [await Series.objects().get(Series.series_instance_uid == V.series_uid("miqa", "NCANDA_E1", s))
                     for s in ("t1", "t1again", "t2")]
    (shared,) = set(await VolumeSource.select(VolumeSource.file_key).where(
        VolumeSource.series.is_in([t1.id, again.id])).output(as_list=True))
    (own,) = await VolumeSource.select(VolumeSource.file_key).where(VolumeSource.series == t2.id).output(as_list=True)
    store = storage()
    assert store.exists(shared) and store.exists(own)

    await queries.delete_series(t1)
    assert store.exists(shared)  # the other scan still keeps it
    await queries.delete_series(again)
    assert not store.exists(shared)
    await queries.delete_study(await Study.objects().get(Study.id == t2.study))
    assert not store.exists(own)
    assert await VolumeSource.count().where(VolumeSource.project == p.id) == 2  # E2's volumes stay
    for key in await VolumeSource.select(VolumeSource.file_key).output(as_list=True):
        assert store.exists(key)


async def test_exports_give_miqa_back_its_files_and_a_round_trip_keeps_every_decision(app, tmp_path, template):
    p = await _project()
    files = _miqa_files(tmp_path / "repo")
    source = _csv(tmp_path / "repo" / "miqa.csv", files, {
        "t1": {"decision": "U", "creator": "rev", "note": "fine", "created": "2026-11-02T10:00:00Z"}})
    await import_file(source, p)
    t2 = await Series.objects().get(Series.series_instance_uid == V.series_uid("miqa", "NCANDA_E1", "t2"))
    await decisions.record(p, t2, await accounts.get("rev"), "Q?", note="ghosting?")
    await decisions.record(p, t2, await accounts.get("sen"), "UN", note="repeat")

    out = await export(p, fmt="csv", to=tmp_path / "out" / "miqa.csv")
    rows = {r["scan_name"]: r for r in csv.DictReader(open(out.path))}
    original = {r["scan_name"]: r for r in csv.DictReader(open(source))}
    assert set(rows) == set(original)
    for scan, row in rows.items():
        given = original[scan]
        assert row["file_location"] == str((source.parent / given["file_location"]).resolve())
        for col in ("project_name", "experiment_name", "scan_type", "frame_number", "experiment_notes", "subject_id",
                    "session_id", "scan_link"):
            assert row[col] == given[col], (scan, col)
    assert (rows["t2"]["last_decision"], rows["t2"]["last_decision_note"]) == ("UN", "repeat")
    assert rows["t1"]["last_decision"] == "U" and rows["aseg"]["last_decision"] == ""

    # JSON with copies beside the export (the project copies images): MIQA's files, byte for byte.
    await projects.update_settings(p, {"export_images": "copy"})
    first = await export(p, fmt="json", to=tmp_path / "one" / "miqa.json")
    doc = json.loads(open(first.path).read())
    frame = doc["projects"]["miqa"]["experiments"]["NCANDA_E1"]["scans"]["t1"]["frames"]["0"]
    copied = tmp_path / "one" / frame["file_location"]
    assert copied.read_bytes() == files[("NCANDA_E1", "t1", "T1")].read_bytes()
    assert len(doc["projects"]["miqa"]["experiments"]["NCANDA_E1"]["scans"]["t2"]["decisions"]) == 2

    # Into an empty install and out again: the same scans, files and history.
    other = fresh_env(template, tmp_path / "other-install")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "portal.cli", *args], env={**os.environ, **other},
                              capture_output=True, text=True, timeout=300)

    r = cli("import", "miqa", "--from", first.path, "--create")
    assert r.returncode == 0, r.stderr
    r = cli("export", "miqa", "--to", str(tmp_path / "two" / "miqa.json"))
    assert r.returncode == 0, r.stderr
    second = json.loads(open(tmp_path / "two" / "miqa.json").read())

    def content(d):
        d = json.loads(json.dumps(d))
        d.pop("exported")
        for e in d["projects"]["miqa"]["experiments"].values():
            for s in e["scans"].values():
                for f in s["frames"].values():
                    f.pop("file_location")
        return d

    assert content(second) == content(doc)
    for exp, e in second["projects"]["miqa"]["experiments"].items():
        for scan, s in e["scans"].items():
            a = open(s["frames"]["0"]["file_location"], "rb").read()
            b = (tmp_path / "one" / doc["projects"]["miqa"]["experiments"][exp]["scans"][scan]["frames"]["0"][
                "file_location"]).read_bytes()
            assert a == b


async def test_ingest_and_zips_take_volumes_and_refuse_bad_ones_storing_nothing(app, tmp_path, lb_env):
    import zipfile

    p = await _project()
    good = vs.nifti(tmp_path / "in" / "sub-01" / "T1w.nii.gz", vs.mr_pixels(), vs.oblique_affine())
    results = await ingest_path(tmp_path / "in", p)
    assert [r.status for r in results] == ["stored"] * 10
    series = await Series.objects().get(Series.series_instance_uid == V.series_uid("miqa", "sub-01", "T1w"))
    assert series.description == "T1w"
    assert [r.status for r in await ingest_path(good, p, filename="sub-01/T1w.nii.gz")] == ["already_stored"] * 10
    # `lightbox ingest` of the folder names the files as inside it, as ingest_path does: the same experiment
    # (never the server's absolute path), so the same UIDs: already stored.
    out = subprocess.run([sys.executable, "-m", "portal.cli", "ingest", str(tmp_path / "in"), "--project", "miqa"],
                         env={**os.environ, **lb_env}, capture_output=True, text=True)
    assert out.returncode == 0 and "10 already stored" in out.stdout, out.stdout + out.stderr

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cut.nii.gz").write_bytes(good.read_bytes()[:3000])
    import nibabel as nib

    nib.save(nib.Nifti1Image(vs.mr_pixels(), None), bad / "noaffine.nii")
    nib.save(nib.Nifti1Image(vs.mr_pixels().astype(np.complex64), np.eye(4)), bad / "complex.nii")
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as z:
        for f in bad.iterdir():
            z.write(f, f.name)
    before = (await Instance.count(), await VolumeSource.count())
    results = await ingest_path(tmp_path / "bad.zip", p)
    assert sorted(r.suberror for r in results) == ["no_affine", "truncated", "unsupported_datatype"]
    assert all(r.status == "rejected" and r.reason for r in results)
    assert (await Instance.count(), await VolumeSource.count()) == before


async def test_bad_volume_in_an_import_is_reported_with_its_row_and_nothing_changes(app, tmp_path):
    p = await _project()
    files = _miqa_files(tmp_path / "repo")
    t1 = files[("NCANDA_E1", "t1", "T1")]
    t1.write_bytes(t1.read_bytes()[:2000])
    with pytest.raises(ImportRefused) as exc:
        await import_file(_csv(tmp_path / "repo" / "miqa.csv", files), p)
    (problem,) = exc.value.problems
    assert problem.row == "2" and "truncated" in problem.problem
    assert await Instance.count() == 0 and await VolumeSource.count() == 0


async def test_json_import_of_a_miqa_export(app, tmp_path):
    p = await _project()
    t1 = vs.nifti(tmp_path / "t1.nii.gz", vs.mr_pixels(), vs.oblique_affine())
    doc = {"projects": {"miqa": {"experiments": {"E9": {"notes": "n", "subject_id": "S9", "session_id": "X9", "scans": {
        "t1": {"type": "T1", "scan_link": "https://miqa/x", "frames": {"0": {"file_location": str(t1)}},
               "decisions": [{"decision": "Q?", "creator": "rev", "note": "hm", "created": "2026-11-01T09:00:00Z"},
                             {"decision": "U", "creator": "sen", "note": "ok", "created": "2026-11-01T10:00:00Z"}]},
    }}}}}}
    (tmp_path / "m.json").write_text(json.dumps(doc))
    counts = await import_file(tmp_path / "m.json", p)
    assert counts["frames_added"] == 1 and counts["decisions_added"] == 2
    series = await Series.objects().get(Series.series_instance_uid == V.series_uid("miqa", "E9", "t1"))
    assert series.review_status == "complete"
    out = json.loads(open((await export(p, fmt="json", to=tmp_path / "o" / "m.json")).path).read())
    scan = out["projects"]["miqa"]["experiments"]["E9"]["scans"]["t1"]
    assert scan["frames"]["0"]["file_location"] == str(t1) and scan["scan_link"] == "https://miqa/x"
    assert [d["decision"] for d in scan["decisions"]] == ["Q?", "U"]


def _model_installed() -> bool:
    from portal.inference import models

    return models.manifest_for("lightbox-quality") is not None


@pytest.mark.skipif(not _model_installed(), reason="the built-in model's weights are not installed")
async def test_an_uploaded_nifti_is_scored_by_the_quality_model_and_served_over_dicomweb(client, consumer, tmp_path):
    import asyncio
    import time

    from portal.tables import InferenceJob
    from tests.helpers import creds

    p = await make_project("ai", {"rev": "reviewer", "view": "viewer"})
    await projects.update_settings(p, {"ai_quiet_seconds": 0.2})
    path = vs.nifti(tmp_path / "t1.nii.gz", vs.mr_pixels(), vs.oblique_affine())
    with open(path, "rb") as fh:
        r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), data={"Project": "ai"},
                              files={"file": (path.name, fh)})
    assert r.status_code == 200, r.text
    uid = V.series_uid("ai", "t1", "t1")
    deadline = time.monotonic() + 90
    job = None
    while time.monotonic() < deadline:
        job = await InferenceJob.select().where(InferenceJob.series.series_instance_uid == uid).first()
        if job and job["state"] in ("done", "failed"):
            break
        await asyncio.sleep(0.3)
    assert job and job["state"] == "done", job
    result = (await client.get(f"/api/v1/results/{uid}", headers=creds("view"))).json()
    assert 0 <= result["result"]["scores"]["quality"] <= 1

    study = V.study_uid("ai", "t1")
    listed = await client.get(f"/dicomweb/ai/studies/{study}/series", headers=creds("view"))
    assert listed.status_code == 200
    assert any(s["0020000E"]["Value"] == [uid] for s in listed.json())
    meta = (await client.get(f"/dicomweb/ai/studies/{study}/series/{uid}/metadata", headers=creds("view"))).json()
    assert len(meta) == 10 and all("00200037" in m for m in meta)
