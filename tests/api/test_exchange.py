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
from portal.archive import ingest_file
from portal.auth import accounts
from portal.dicom import open_dataset, samples
from portal.exchange import csvformat, export, import_file, runs, sync
from portal.exchange.importer import ImportRefused
from portal.review import decisions
from portal.tables import AuditEvent, Decision, FormSubmission, Instance, Series, SyncRun
from tests.conftest import fresh_env
from tests.helpers import creds, make_project, readable, stored_keys

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
                assert readable(frame["file_location"])  # every frame points at a real file
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
    assert mine[0]["subject_id"] == "P-1" and readable(mine[0]["file_location"])


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
    assert readable(row["file_location"]) and row["subject_id"] == "UP-1"


# --- import -----------------------------------------------------------------------------------------


def _write_csv(path: Path, rows: list[dict], header=csvformat.COLUMNS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([r.get(c, "") for c in header])
    return path


def _repo_rows(folder: Path, project="chest", n=2, **decision) -> list[dict]:
    """What another repository writes: new frames with paths relative to the CSV, maybe a decision."""
    files = samples.make_series(samples.sample_path("MR_small.dcm"), folder / "scans" / "s1", n, patient_id="EXT-1")
    return [{"project_name": project, "experiment_name": "exp-1", "scan_name": "scan-1", "scan_type": "T1",
             "frame_number": i, "file_location": f.relative_to(folder).as_posix(), **decision}
            for i, f in enumerate(files)]


async def _counts():
    return (await Instance.count(), await Decision.count(), await FormSubmission.count(), await Series.count())


async def test_csv_import_ingests_new_frames_and_merges_decisions_without_duplicates(app, tmp_path):
    p = await _project()
    repo = tmp_path / "repo"
    rows = _repo_rows(repo, last_decision="U", last_decision_creator="sen", last_decision_note="fine",
                      last_decision_created="2026-03-01T10:15:42+02:00", identified_artifacts="lesions")
    path = _write_csv(repo / "import.csv", rows)
    counts = await import_file(path, p)
    assert counts["frames_added"] == 2 and counts["decisions_added"] == 1 and counts["format"] == "csv"
    series = await Series.objects().get(Series.project == p.id)
    assert series.review_status == "complete"  # a senior reviewer's decision settles it
    d = await Decision.objects().get(Decision.series == series.id)
    # The seconds and the zone survive: 10:15:42 at +02:00 is 08:15:42 UTC.
    assert clock.iso(d.created_at) == "2026-03-01T08:15:42Z"
    assert d.username == "sen" and d.role == "senior_reviewer" and d.note == "fine"
    assert (json.loads(d.artifacts) if isinstance(d.artifacts, str) else d.artifacts) == {"lesions": 1}
    again = await import_file(path, p)  # the same file again: nothing new
    assert again["frames_added"] == 0 and again["frames_existing"] == 2
    assert again["decisions_added"] == 0 and again["decisions_existing"] == 1
    assert await Decision.count() == 1 and await Instance.count() == 2
    assert await AuditEvent.count().where(AuditEvent.action == "import") == 2


async def test_json_import_merges_history_into_existing_decisions(app, tmp_path):
    p, s1, _ = await _populated(tmp_path)
    result = await export(p, to=tmp_path / "e.json")
    doc = _doc(result.path)
    scan = next(s for e in doc["projects"]["chest"]["experiments"].values() for uid, s in e["scans"].items()
                if uid == s1.series_instance_uid)
    scan["decisions"].append({"decision": "U", "creator": "rev", "role": "reviewer", "note": "", "created":
                              "2030-01-01T00:00:00Z", "user_identified_artifacts": {}, "location": None})
    Path(result.path).write_text(json.dumps(doc))
    before = await _counts()
    counts = await import_file(result.path, p)
    assert counts["decisions_added"] == 1 and counts["decisions_existing"] == 3 and counts["frames_added"] == 0
    assert await _counts() == (before[0], before[1] + 1, before[2], before[3])
    assert (await Series.objects().get(Series.id == s1.id)).review_status == "complete"  # latest: U


BAD_INPUTS = {
    "wrong_header": lambda d: _write_csv(d / "f.csv", [{"project_name": "chest"}],
                                         header=("project", "experiment", "scan", "file")),
    "other_project": lambda d: _write_csv(d / "f.csv", _repo_rows(d, project="elsewhere")),
    "missing_file": lambda d: _write_csv(d / "f.csv", [{**r, "file_location": "nope/" + r["file_location"]}
                                                       for r in _repo_rows(d)]),
    "bad_date": lambda d: _write_csv(d / "f.csv", _repo_rows(d, last_decision="U", last_decision_creator="rev",
                                                             last_decision_created="yesterday at noon")),
    "unknown_code": lambda d: _write_csv(d / "f.csv", _repo_rows(d, last_decision="MAYBE", last_decision_creator="rev",
                                                                 last_decision_created="2026-01-01T00:00:00Z")),
    "duplicated_rows": lambda d: _write_csv(d / "f.csv", (lambda rs: rs + [rs[1]])(_repo_rows(d))),
    "not_csv_or_json": lambda d: (d / "f.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR" + bytes(200)) and d / "f.csv",
    "plain_text": lambda d: (d / "f.txt").write_text("hello world\nthis is not a table\n") and d / "f.txt",
    "bad_json": lambda d: (d / "f.json").write_text('{"projects": {"chest": {"experiments": [1, 2}}') and d / "f.json",
    "not_dicom": lambda d: (d / "x.dcm").write_text("not an image") and _write_csv(d / "f.csv", [
        {"project_name": "chest", "experiment_name": "e", "scan_name": "s", "frame_number": 0, "file_location": "x.dcm"}]),
    "same_image_twice": lambda d: _write_csv(d / "f.csv", (lambda rs: rs + [{**rs[0], "frame_number": 9,
        "file_location": _copy_of(d / rs[0]["file_location"])}])(_repo_rows(d))),
}
EXPECT = {"wrong_header": ("1", "Wrong header"), "other_project": ("2", "not 'chest'"),
          "missing_file": ("2", "File not found"), "bad_date": ("2", "Bad date"),
          "unknown_code": ("2", "Unknown decision code 'MAYBE'"), "duplicated_rows": ("4", "Duplicate row"),
          "not_csv_or_json": ("", "not a CSV or JSON"), "plain_text": ("1", "not a CSV or JSON"),
          "bad_json": ("line 1", "Not valid JSON"), "not_dicom": ("2", "x.dcm"),
          "same_image_twice": ("4", "has the SOP Instance UID of")}


def _copy_of(path: Path) -> str:
    import shutil

    return str(shutil.copy(path, path.with_name("copy.dcm")))


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
async def test_bad_input_is_reported_with_its_row_and_changes_nothing(app, tmp_path, case):
    p, _, _ = await _populated(tmp_path)
    before = await _counts()
    path = BAD_INPUTS[case](tmp_path)
    with pytest.raises(ImportRefused) as caught:
        await import_file(path, p)
    row, text = EXPECT[case]
    assert any(pr.row == row and text in pr.problem for pr in caught.value.problems), caught.value.as_dict()
    assert "nothing was changed" in caught.value.detail
    assert await _counts() == before


async def test_every_problem_is_reported_not_just_the_first(app, tmp_path):
    p = await _project()
    rows = _repo_rows(tmp_path, n=3)
    rows[0]["project_name"] = "other"
    rows[1]["file_location"] = "missing.dcm"
    rows[2].update(last_decision="ZZ", last_decision_creator="rev", last_decision_created="2026-13-45")
    with pytest.raises(ImportRefused) as caught:
        await import_file(_write_csv(tmp_path / "f.csv", rows), p)
    found = {(pr.row, pr.field) for pr in caught.value.problems}
    assert {("2", "project_name"), ("3", "file_location"), ("4", "last_decision_created")} <= found
    assert await Instance.count() == 0


async def test_a_huge_file_is_refused_before_it_is_read(app, tmp_path, monkeypatch):
    from portal.exchange import importer

    p = await _project()
    monkeypatch.setattr(importer, "MAX_BYTES", 1000)
    path = _write_csv(tmp_path / "big.csv", _repo_rows(tmp_path, n=2) * 20)
    with pytest.raises(ImportRefused) as caught:
        await import_file(path, p)
    assert "limited to" in caught.value.problems[0].problem and await Instance.count() == 0


def _stored_files(settings) -> list:
    return stored_keys(".dcm")


async def test_a_failure_while_applying_rolls_everything_back(app, settings, tmp_path, monkeypatch):
    """The images are placed before the transaction; a failure after that leaves no rows and no files."""
    from portal.archive import ingest as ingest_mod
    from portal.exchange import importer

    p = await _project()
    path = _write_csv(tmp_path / "f.csv", _repo_rows(tmp_path, n=3, last_decision="U", last_decision_creator="rev",
                                                     last_decision_created="2026-01-01T00:00:00Z"))
    real, calls, placed = ingest_mod.record_placed, [], []

    async def flaky(project, archive, parsed, file_key, *args, **kw):
        calls.append(file_key)
        placed.append(ingest_mod.storage().exists(file_key))  # every image is in the store before its rows
        if len(calls) == 3:
            return ingest_mod.IngestResult(status="rejected", reason="disk full")
        return await real(project, archive, parsed, file_key, *args, **kw)

    monkeypatch.setattr(importer.ingest_mod, "record_placed", flaky)
    with pytest.raises(ImportRefused):
        await import_file(path, p)
    assert placed == [True, True, True]
    assert await _counts() == (0, 0, 0, 0)  # the two frames recorded before the failure were rolled back
    assert _stored_files(settings) == []  # and the three images placed for them are gone


async def test_an_error_after_the_rows_leaves_no_rows_and_no_files(app, settings, tmp_path, monkeypatch):
    from portal.exchange import importer

    p = await _project()
    path = _write_csv(tmp_path / "f.csv", _repo_rows(tmp_path, n=2, last_decision="U", last_decision_creator="rev",
                                                     last_decision_created="2026-01-01T00:00:00Z"))

    async def broken(*args, **kw):
        raise RuntimeError("database went away")

    monkeypatch.setattr(importer, "_review_status", broken)
    with pytest.raises(RuntimeError):
        await import_file(path, p)
    assert await _counts() == (0, 0, 0, 0) and _stored_files(settings) == []
    monkeypatch.undo()
    counts = await import_file(path, p)  # and the same file imports whole afterwards
    assert counts["frames_added"] == 2 and len(_stored_files(settings)) == 2


# --- de-identified export ------------------------------------------------------------------------------


@pytest.mark.parametrize("remap", [False, True])
async def test_deidentified_export_follows_the_basic_profile(app, tmp_path, remap):
    p, s1, _ = await _populated(tmp_path)
    result = await export(p, fmt="json", deidentify=True, remap_uids=remap)
    assert "deidentified" in result.path and result.deidentified
    text = Path(result.path).read_text()
    assert "P-1" not in text and "motion?" not in text and "@example.org" not in text and '"rev"' not in text
    doc = json.loads(text)
    experiments = doc["projects"]["chest"]["experiments"]
    subjects = {e["subject_id"] for e in experiments.values()}
    assert len(subjects) == 2 and all(s.startswith("ANON-") for s in subjects)
    scans = {uid: s for e in experiments.values() for uid, s in e["scans"].items()}
    assert (s1.series_instance_uid in scans) is (not remap)
    for scan in scans.values():
        for frame in scan["frames"].values():
            ds = open_dataset(Path(result.path).parent / frame["file_location"], stop_before_pixels=True)
            assert ds.PatientIdentityRemoved == "YES" and ds.PatientID.startswith("ANON-")
            assert "PatientBirthDate" not in ds or not ds.PatientBirthDate
            assert "InstitutionName" not in ds and not any(e.tag.is_private for e in ds)
            assert ds.SOPInstanceUID == frame["sop_instance_uid"]
            assert ds.SeriesInstanceUID in scans
    again = await export(p, fmt="json", deidentify=True, remap_uids=remap)  # consistent from one export to the next
    assert set(json.loads(Path(again.path).read_text())["projects"]["chest"]["experiments"]) == set(experiments)


# --- scheduled sync ----------------------------------------------------------------------------------------


async def test_scheduled_sync_imports_what_the_other_side_wrote_then_exports(app, tmp_path):
    p, s1, _ = await _populated(tmp_path)
    exchange_file = tmp_path / "exchange" / "chest.csv"
    await projects.update_settings(p, {"sync_every_minutes": 5, "export_path": str(exchange_file)})
    p = await projects.get("chest")
    assert [x.name for x in await sync.due()] == ["chest"]
    [run_id] = await sync.start_due()
    assert await sync.due() == []  # one run at a time
    run = await runs.execute(run_id)
    assert run["state"] == "done", run["message"]
    assert run["summary"]["incoming"] is None and run["summary"]["import"]["decisions_added"] == 0
    assert await sync.due() == []  # not due again for 5 minutes
    later = clock.now() + dt.timedelta(minutes=6)
    assert [x.name for x in await sync.due(later)] == ["chest"]

    # The other repository adds a new scan and a decision on an existing one, in the same file.
    rows = list(csv.DictReader(open(exchange_file)))
    for r in rows:
        if r["scan_name"] == s1.series_instance_uid:
            r.update(last_decision="U", last_decision_creator="external", last_decision_note="ok from PACS",
                     last_decision_created="2031-05-05T05:05:05Z")
    rows += _repo_rows(exchange_file.parent)
    _write_csv(exchange_file, rows)
    run = await runs.execute((await runs.create(p, "sync", trigger="schedule"))["id"])
    assert run["state"] == "done", (run["message"], run["problems"])
    assert run["summary"]["incoming"]["frames_added"] == 2 and run["summary"]["incoming"]["decisions_added"] == 1
    assert Path(run["summary"]["incoming_backup"]).is_file()
    history = await decisions.history(await Series.objects().get(Series.id == s1.id))
    assert [d["decision"] for d in history] == ["U", "UN", "Q?"]  # nothing lost, the new one on top
    assert len(list(csv.DictReader(open(exchange_file)))) == 7  # the export now has the new frames too


async def test_a_sync_that_cannot_read_the_other_sides_file_does_not_overwrite_it(app, tmp_path):
    p, _, _ = await _populated(tmp_path)
    exchange_file = tmp_path / "chest.csv"
    await projects.update_settings(p, {"export_path": str(exchange_file)})
    _write_csv(exchange_file, _repo_rows(tmp_path, last_decision="??", last_decision_creator="x",
                                         last_decision_created="2026-01-01T00:00:00Z"))
    before = exchange_file.read_bytes()
    run = await runs.execute((await runs.create(await projects.get("chest"), "sync", trigger="schedule"))["id"])
    assert run["state"] == "failed" and "not overwritten" in run["message"]
    assert any("Unknown decision code" in pr["problem"] for pr in run["problems"])
    assert exchange_file.read_bytes() == before


# --- API --------------------------------------------------------------------------------------------------


async def _wait(client, url, user="mgr", timeout=60):
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = (await client.get(url, headers=creds(user))).json()
        if run["state"] in ("done", "failed"):
            return run
        await asyncio.sleep(0.2)
    raise AssertionError(run)


async def test_api_export_and_import_are_tasks_with_a_status(client, consumer, tmp_path):
    p, _, _ = await _populated(tmp_path)
    await projects.update_settings(p, {"export_path": str(tmp_path / "api" / "chest.json")})
    r = await client.post("/api/v1/projects/chest/export", headers=creds("mgr"), json={"format": "csv"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["run"]["state"] == "queued" and body["status_url"] == f"/api/v1/projects/chest/runs/{body['run']['id']}"
    run = await _wait(client, body["status_url"])
    assert run["state"] == "done" and run["format"] == "csv" and Path(run["path"]).is_file(), run
    assert run["summary"]["frames"] == 5

    # Import by upload: a refused file reports its problems on the run.
    bad = _write_csv(tmp_path / "bad.csv", _repo_rows(tmp_path / "r", project="other"))
    with open(bad, "rb") as fh:
        r = await client.post("/api/v1/projects/chest/import", headers=creds("mgr"), files={"file": ("bad.csv", fh)})
    assert r.status_code == 202, r.text
    run = await _wait(client, r.json()["status_url"])
    assert run["state"] == "failed" and run["problems"][0]["row"] == "2" and "not 'chest'" in run["problems"][0]["problem"]

    good = _write_csv(tmp_path / "r" / "good.csv", _repo_rows(tmp_path / "r"))
    with open(good, "rb") as fh:
        r = await client.post("/api/v1/projects/chest/import", headers=creds("mgr"), files={"file": ("good.csv", fh)})
    run = await _wait(client, r.json()["status_url"])
    # Uploaded on its own, its relative paths cannot resolve: reported, nothing changed.
    assert run["state"] == "failed" and "File not found" in run["problems"][0]["problem"]

    r = await client.post("/api/v1/projects/chest/import", headers=creds("mgr"))  # the project's import path
    run = await _wait(client, r.json()["status_url"])
    assert run["state"] == "done" and run["summary"]["frames_existing"] == 5, run
    listed = (await client.get("/api/v1/projects/chest/runs", headers=creds("mgr"))).json()
    assert [x["kind"] for x in listed] == ["import", "import", "import", "export"]


async def test_api_import_export_is_for_managers_and_paths_for_admins(client, app, tmp_path):
    await _project()
    for user, status in (("rev", 403), ("sen", 403), ("view", 403)):
        assert (await client.post("/api/v1/projects/chest/export", headers=creds(user))).status_code == status
        assert (await client.post("/api/v1/projects/chest/import", headers=creds(user))).status_code == status
        assert (await client.get("/api/v1/projects/chest/runs", headers=creds(user))).status_code == status
    from tests.helpers import make_user

    await make_user("stranger")
    r = await client.post("/api/v1/projects/chest/export", headers=creds("stranger"))
    assert r.status_code == 404
    r = await client.post("/api/v1/projects/chest/export", headers=creds("mgr"), json={"to": "/etc/evil.json"})
    assert r.status_code == 403 and r.json()["suberror"] == "admin_required"
    r = await client.post("/api/v1/projects/chest/import", headers=creds("mgr"), json={"path": "/etc/passwd"})
    assert r.status_code == 403
    assert await SyncRun.count() == 0
    r = await client.get("/api/v1/projects/chest/runs/999", headers=creds("mgr"))
    assert r.status_code == 404


# --- round trip into an empty install ----------------------------------------------------------------------


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


def _content(doc: dict) -> dict:
    """What must survive a round trip: everything but the export time and where the files happen to live."""
    doc = json.loads(json.dumps(doc))
    doc.pop("exported")
    for e in doc["projects"]["chest"]["experiments"].values():
        for s in e["scans"].values():
            for f in s["frames"].values():
                f.pop("file_location")
    return doc


async def test_round_trip_into_an_empty_install_keeps_everything(app, tmp_path, template):
    p, s1, _ = await _populated(tmp_path)
    await forms.submit(s1, p, await accounts.get("sen"), "mri-qc", {**MRI_ENTRY, "quality_score": 2})
    from portal.tables import InferenceJob, Result

    when = clock.now()
    job = InferenceJob(project=p.id, series=s1.id, model_name="lightbox-quality", model_version="1.0.0",
                       state="done", attempts=1, queued_at=when, finished_at=when)
    await job.save()
    await Result.insert(Result(job=job.id, series=s1.id, name="quality", algorithm="lightbox-quality", value=0.25,
                               type="probability", model_name="lightbox-quality", model_version="1.0.0",
                               created_at=when))
    conf = projects.settings_of(p)
    await projects.update_settings(p, {"decisions": conf["decisions"] + [
        {"code": "RE", "label": "Repeat", "colour": "#6a1b9a", "key": "e", "roles": ["manager"]}],
        "artifacts": conf["artifacts"] + ["bed_in_view"]})
    await decisions.record(p, s1, await accounts.get("mgr"), "RE", artifacts={"bed_in_view": 1})
    first = await export(p, fmt="json", to=tmp_path / "one" / "chest.json")
    assert sum(len(s["ai_results"]) for e in _doc(first.path)["projects"]["chest"]["experiments"].values()
               for s in e["scans"].values()) == 1

    other = fresh_env(template, tmp_path / "other-install")
    out = _cli(other, "import", "chest", "--from", first.path)
    assert out.returncode == 1 and "--create" in out.stderr
    out = _cli(other, "import", "chest", "--from", first.path, "--create")
    assert out.returncode == 0, out.stderr
    assert "5 new frame(s), 4 new decision(s), 2 new form submission(s)" in out.stdout
    second_path = tmp_path / "two" / "chest.json"
    out = _cli(other, "export", "chest", "--to", str(second_path))
    assert out.returncode == 0, out.stderr
    assert _content(_doc(second_path)) == _content(_doc(first.path))
    # Its files are its own copies, not the first install's.
    frame = next(iter(next(iter(_doc(second_path)["projects"]["chest"]["experiments"].values()))["scans"].values()))
    own = other["LIGHTBOX_STORAGE_URL"].split("?")[0] if "LIGHTBOX_STORAGE_URL" in other else str(tmp_path / "other-install")
    assert own in next(iter(frame["frames"].values()))["file_location"]

    # And CSV: the same frames and last decisions.
    csv_one = await export(p, fmt="csv", to=tmp_path / "one" / "chest.csv")
    out = _cli(other, "export", "chest", "--format", "csv", "--to", str(tmp_path / "two" / "chest.csv"))
    assert out.returncode == 0, out.stderr
    strip = lambda path: sorted(tuple(v for k, v in r.items() if k != "file_location")  # noqa: E731
                                for r in csv.DictReader(open(path)))
    assert strip(tmp_path / "two" / "chest.csv") == strip(csv_one.path)


async def test_cli_import_reports_every_problem_and_exits_1(app, tmp_path, lb_env):
    await _project()
    rows = _repo_rows(tmp_path, n=2)
    rows[0]["frame_number"] = "first"
    rows[1]["file_location"] = "gone.dcm"
    out = _cli(lb_env, "import", "chest", "--from", str(_write_csv(tmp_path / "f.csv", rows)))
    assert out.returncode == 1
    assert "row 2 (frame_number)" in out.stderr and "row 3 (file_location): File not found" in out.stderr
    assert await Instance.count() == 0
    assert (await SyncRun.objects().first()).trigger == "cli"


# --- portal -------------------------------------------------------------------------------------------------


async def test_portal_panel_run_status_history_and_settings(client, app, tmp_path):
    from tests.helpers import form_post, login

    await _populated(tmp_path)
    await login(client, "rev")
    page = (await client.get("/projects/chest")).text
    assert 'id="exchange"' not in page  # reviewers do not import or export
    assert (await form_post(client, "/projects/chest/export", {})).status_code == 403
    client.cookies.clear()
    await login(client, "mgr")
    assert 'id="exchange"' in (await client.get("/projects/chest")).text
    r = await form_post(client, "/projects/chest/export", {"format": "csv"}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and 'hx-trigger="load delay:1s"' in r.text and 'data-state="queued"' in r.text
    run = (await SyncRun.objects().first())
    await runs.execute(run.id)
    r = await client.get(f"/projects/chest/sync/runs/{run.id}", headers={"HX-Request": "true"})
    assert 'data-state="done"' in r.text and "hx-trigger" not in r.text and "Exported 5 frame(s)" in r.text
    history = await client.get("/projects/chest/sync")
    assert history.status_code == 200 and f'data-run="{run.id}"' in history.text

    r = await form_post(client, "/projects/chest/settings/exchange", {"sync_every_minutes": "15", "export_format": "csv",
                                                                      "export_backups": "3"})
    assert r.status_code == 303
    conf = projects.settings_of(await projects.get("chest"))
    assert (conf["sync_every_minutes"], conf["export_format"], conf["export_backups"]) == (15, "csv", 3)
    r = await form_post(client, "/projects/chest/settings/exchange", {"export_path": "/etc/x.csv"})
    assert projects.settings_of(await projects.get("chest"))["export_path"] == ""  # managers cannot set server paths
    assert 'id="exchange"' in (await client.get("/projects/chest/settings")).text


async def test_a_run_whose_worker_went_away_does_not_block_the_schedule(app, tmp_path):
    p = await _project()
    await projects.update_settings(p, {"sync_every_minutes": 1, "export_path": str(tmp_path / "s.json")})
    p = await projects.get("chest")
    run = await runs.create(p, "sync", trigger="schedule")
    await SyncRun.update({SyncRun.state: "running", SyncRun.queued_at: clock.now() - dt.timedelta(hours=3)}).where(
        SyncRun.id == run["id"])
    assert await sync.due() == []
    [new] = await sync.start_due()
    assert (await runs.get(p, run["id"]))["state"] == "failed" and new != run["id"]


async def test_progress_inside_the_import_transaction_is_visible(app, tmp_path):
    from portal import db

    p = await _project()
    run = await runs.create(p, "import", trigger="cli")
    await SyncRun.update({SyncRun.state: "running"}).where(SyncRun.id == run["id"])
    progress = runs.Progress(run["id"])
    async with db.write_transaction():
        await progress("adding images", 5, 10)
    got = await runs.get(p, run["id"])
    assert (got["phase"], got["done"], got["total"]) == ("adding images", 5, 10)


async def test_a_week_of_scheduled_syncs_loses_nothing(app, tmp_path):
    """Both sides change things between cycles: Lightbox users decide, fill forms and upload; the other
    repository adds decisions and new images to the JSON file. After every cycle, nothing is missing."""
    p, s1, s2 = await _populated(tmp_path)
    exchange_file = tmp_path / "exchange" / "chest.json"
    await projects.update_settings(p, {"export_path": str(exchange_file), "sync_every_minutes": 60})
    p = await projects.get("chest")
    rev = await accounts.get("rev")
    expected_decisions, expected_images = 3, 5
    for day in range(5):
        # In Lightbox: a decision, a form, an upload.
        await decisions.record(p, s2, rev, "Q?", note=f"day {day}")
        await forms.submit(s2, p, rev, "mri-qc", {**MRI_ENTRY, "quality_score": 1 + day % 5})
        await _series(p, tmp_path, 1, patient_id=f"UP-{day}", sub=f"up{day}")
        expected_decisions += 1
        expected_images += 1
        if day:  # the other side edits the file Lightbox wrote in the last cycle
            doc = _doc(exchange_file)
            experiments = doc["projects"]["chest"]["experiments"]
            scan = experiments[next(iter(experiments))]["scans"]
            next(iter(scan.values()))["decisions"].append(
                {"decision": "U", "creator": "pacs", "created": f"2031-01-0{day}T12:00:0{day}+01:00", "note": ""})
            new = samples.make_series(samples.sample_path("MR_small.dcm"), exchange_file.parent / f"new{day}", 2,
                                      patient_id=f"EXT-{day}")
            experiments[f"ext-{day}"] = {"scans": {"s": {"type": "MR", "frames": {
                str(i): f.relative_to(exchange_file.parent).as_posix() for i, f in enumerate(new)}}}}
            exchange_file.write_text(json.dumps(doc))
            expected_decisions += 1
            expected_images += 2
        run = await runs.execute((await runs.create(p, "sync", trigger="schedule"))["id"])
        assert run["state"] == "done", (run["message"], run["problems"])
        assert await Decision.count() == expected_decisions and await Instance.count() == expected_images
        final = _doc(exchange_file)["projects"]["chest"]["experiments"]
        scans = [s for e in final.values() for s in e["scans"].values()]
        assert sum(len(s["decisions"]) for s in scans) == expected_decisions
        assert sum(len(s["frames"]) for s in scans) == expected_images
        assert sum(len(s["form_submissions"]) for s in scans) == 1 + day + 1
        assert all(readable(f["file_location"]) for s in scans for f in s["frames"].values())
    assert await FormSubmission.count() == 6
    assert len(list((exchange_file.parent / "backups").iterdir())) == 9  # 5 exports + 4 incoming copies


async def test_two_decisions_by_one_person_in_one_second_both_survive(app, tmp_path):
    p, s1, _ = await _populated(tmp_path)
    rev = await accounts.get("rev")
    await decisions.record(p, s1, rev, "U", note="first")
    await decisions.record(p, s1, rev, "Q?", note="second thoughts")
    moment = clock.now().replace(microsecond=0)
    await Decision.update({Decision.created_at: moment}).where(
        (Decision.series == s1.id) & Decision.note.is_in(["first", "second thoughts"]))
    result = await export(p, to=tmp_path / "e.json")
    again = await import_file(result.path, p)
    assert again["decisions_added"] == 0 and await Decision.count() == 5
    await Decision.delete().where(Decision.note == "second thoughts")
    back = await import_file(result.path, p)
    assert back["decisions_added"] == 1 and await Decision.count() == 5
    assert await Decision.count().where((Decision.note == "second thoughts") & (Decision.code == "Q?")) == 1


async def test_miqa_style_json_with_last_decision_and_relative_frames(app, tmp_path):
    p = await _project()
    files = samples.make_series(samples.sample_path("MR_small.dcm"), tmp_path / "data" / "scan", 2)
    doc = {"projects": {"chest": {"experiments": {"Experiment One": {"scans": {"Scan One": {
        "type": "T1", "frames": {str(i): f"data/scan/{f.name}" for i, f in enumerate(files)},
        "last_decision": {"decision": "Q?", "creator": "rev", "note": "check", "created": "2025-06-01T09:30:15-04:00",
                          "user_identified_artifacts": {"lesions": 1, "ghosting_motion": 0}, "location": None}}}}}}}}
    path = tmp_path / "import.json"
    path.write_text(json.dumps(doc))
    counts = await import_file(path, p)
    assert (counts["format"], counts["frames_added"], counts["decisions_added"]) == ("json", 2, 1)
    d = await Decision.objects().first()
    assert clock.iso(d.created_at) == "2025-06-01T13:30:15Z" and d.role == "reviewer"
    assert (await Series.objects().first()).review_status == "needs_senior_review"


async def test_new_series_are_announced_only_after_the_import_commits(app, tmp_path, monkeypatch):
    from portal.archive import ingest as ingest_mod
    from portal.exchange import importer

    p = await _project()
    seen = []

    def hook(project, series_id):
        seen.append((series_id, importer._DEFERRED.get()))

    monkeypatch.setattr(ingest_mod, "new_series_hooks", [hook])
    rows = _repo_rows(tmp_path, n=2)
    await import_file(_write_csv(tmp_path / "f.csv", rows), p)
    series = await Series.objects().first()
    assert seen == [(series.id, None)]  # once, after the commit (outside the deferral)

    seen.clear()
    real = ingest_mod.record_placed
    calls = []

    async def failing_second(*args, **kw):
        calls.append(args)
        return await real(*args, **kw) if len(calls) == 1 else ingest_mod.IngestResult(
            status="rejected", reason="disk full")

    monkeypatch.setattr(importer.ingest_mod, "record_placed", failing_second)
    more = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "more", 1)
    more += samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "more2", 1)
    bad = [{**rows[0], "scan_name": f"s{i}", "file_location": str(f)} for i, f in enumerate(more)]
    with pytest.raises(ImportRefused):
        await import_file(_write_csv(tmp_path / "g.csv", bad), p)
    assert seen == []  # rolled back: nobody hears of the series


async def test_import_create_leaves_nothing_behind_when_refused(app, tmp_path, lb_env):
    from portal.tables import Project

    path = _write_csv(tmp_path / "f.csv", _repo_rows(tmp_path, project="fresh", last_decision="NOPE",
                                                      last_decision_creator="x",
                                                      last_decision_created="2026-01-01T00:00:00Z"))
    out = _cli(lb_env, "import", "fresh", "--from", str(path), "--create")
    assert out.returncode == 1 and "Unknown decision code 'NOPE'" in out.stderr
    assert not await Project.exists().where(Project.name == "fresh")
    path = _write_csv(tmp_path / "g.csv", _repo_rows(tmp_path / "g", project="fresh"))
    out = _cli(lb_env, "import", "fresh", "--from", str(path), "--create")
    assert out.returncode == 0, out.stderr
    assert await Instance.count() == 2


async def test_an_export_says_when_stored_files_are_missing(app, tmp_path):
    from portal.archive import storage

    p, _, _ = await _populated(tmp_path)
    gone = await Instance.objects().first()
    storage().delete(gone.file_key)
    run = await runs.execute((await runs.create(p, "export", trigger="cli", path=str(tmp_path / "e.json")))["id"])
    assert run["state"] == "done" and "1 stored file(s) are missing" in run["message"]
    assert _doc(tmp_path / "e.json")["missing_files"] == [storage().uri(gone.file_key)]


# --- review fixes ---------------------------------------------------------------------------------------------


def _upload_of(path: Path) -> str:
    """Where the import routes keep an uploaded file: data/imports/<uuid>/<name>."""
    import shutil
    import uuid

    from portal import settings as settings_mod

    folder = settings_mod.current().data_dir / "imports" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return str(shutil.copy(path, folder / path.name))


async def test_an_uploaded_import_reads_no_file_outside_its_folders(app, tmp_path):
    from portal.archive import storage
    from portal.exchange.importer import NOT_ALLOWED
    from tests.helpers import make_project

    p, _, _ = await _populated(tmp_path)
    other = await make_project("other")
    theirs = samples.make_series(samples.sample_path("MR_small.dcm"), tmp_path / "theirs", 1, patient_id="SECRET")
    assert (await ingest_file(theirs[0], other)).ok
    stored = storage().uri((await Instance.objects().get(Instance.project == other.id)).file_key)
    outside = samples.make_series(samples.sample_path("MR_small.dcm"), tmp_path / "outside", 1)[0]
    locations = [str(stored), str(outside), "../../../" + str(outside).lstrip("/"), str(tmp_path / "nope.dcm"),
                 "/etc/passwd"]
    rows = [{"project_name": "chest", "experiment_name": "e", "scan_name": f"s{i}", "frame_number": 0,
             "file_location": loc} for i, loc in enumerate(locations)]
    before = await _counts()
    run = await runs.create(p, "import", trigger="api", user=await accounts.get("mgr"),
                            path=_upload_of(_write_csv(tmp_path / "up" / "f.csv", rows)), options={"upload": True})
    run = await runs.execute(run["id"])
    assert run["state"] == "failed" and await _counts() == before
    # One message whatever is there: a stored file, a DICOM file, a missing file and a system file look alike.
    assert [pr["problem"] for pr in run["problems"]] == [f"{NOT_ALLOWED}: {loc}." for loc in locations]
    assert not Path(run["path"]).parent.exists()  # the upload's own folder is removed afterwards

    # Even unconfined (an administrator's import), another project's stored file is refused.
    with pytest.raises(ImportRefused) as caught:
        await import_file(_write_csv(tmp_path / "adm" / "f.csv", rows[:1]), p)
    assert "not one of this project's stored files" in caught.value.problems[0].problem

    # A manager uploading the project's own export (stored files, store mode) still merges it.
    mine = await export(p, fmt="csv")
    run = await runs.execute((await runs.create(p, "import", trigger="api", user=await accounts.get("mgr"),
                                                path=_upload_of(Path(mine.path)), options={"upload": True}))["id"])
    assert run["state"] == "done" and run["summary"]["frames_existing"] == 5, run


async def test_a_managers_import_may_not_read_another_projects_export_folder(app, tmp_path):
    from tests.helpers import make_project

    p, _, _ = await _populated(tmp_path)
    other = await make_project("other")
    await projects.update_settings(other, {"export_path": str(tmp_path / "other-share" / "other.json")})
    await projects.update_settings(p, {"import_path": str(tmp_path / "chest-share" / "chest.csv")})
    theirs = samples.make_series(samples.sample_path("MR_small.dcm"), tmp_path / "other-share" / "images", 1)[0]
    rows = [{"project_name": "chest", "experiment_name": "e", "scan_name": "s", "frame_number": 0,
             "file_location": str(theirs)}]
    _write_csv(tmp_path / "chest-share" / "chest.csv", rows)
    run = await runs.execute((await runs.create(await projects.get("chest"), "import", trigger="api",
                                                user=await accounts.get("mgr")))["id"])
    assert run["state"] == "failed" and "not in a folder this import may read" in run["problems"][0]["problem"]
    assert await Instance.count().where(Instance.project == p.id) == 5


async def test_a_rolled_back_import_keeps_the_file_an_overwrite_replaced(app, tmp_path, monkeypatch):
    from portal.archive import ingest as ingest_mod, storage
    from portal.exchange import importer

    p = await _project()
    await projects.update_settings(p, {"allow_overwrite": True})
    p = await projects.get("chest")
    [first] = samples.make_series(samples.sample_path("MR_small.dcm"), tmp_path / "a", 1)
    assert (await ingest_file(first, p)).ok
    ds = open_dataset(first, stop_before_pixels=True)
    changed = samples.restamp(first, tmp_path / "b" / "same-sop.dcm", study_uid=ds.StudyInstanceUID,
                              series_uid=ds.SeriesInstanceUID, sop_uid=ds.SOPInstanceUID, position_z=99.0)
    [new] = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "c", 1)
    rows = [{"project_name": "chest", "experiment_name": "e", "scan_name": f"s{i}", "frame_number": 0,
             "file_location": str(f)} for i, f in enumerate((changed, new))]
    real, calls = ingest_mod.record_placed, []

    async def failing_second(*args, **kw):
        calls.append(args)
        return await real(*args, **kw) if len(calls) == 1 else ingest_mod.IngestResult(
            status="rejected", reason="disk full")

    monkeypatch.setattr(importer.ingest_mod, "record_placed", failing_second)
    with pytest.raises(ImportRefused):
        await import_file(_write_csv(tmp_path / "f.csv", rows), p)
    assert len(calls) == 2  # the overwrite happened, then the import rolled back
    kept = await Instance.objects().first()
    assert storage().exists(kept.file_key)  # the row still points at a file that exists
    assert stored_keys(".dcm") == [kept.file_key]  # the placed ones are gone
    monkeypatch.setattr(importer.ingest_mod, "record_placed", real)
    counts = await import_file(_write_csv(tmp_path / "f.csv", rows), p)  # committed: now the old file goes
    assert counts["frames_added"] == 2 and not storage().exists(kept.file_key)


async def test_an_image_the_project_would_reject_is_reported_before_anything_is_applied(app, tmp_path, monkeypatch):
    from portal.exchange import importer

    p = await _project()
    await projects.update_settings(p, {"missing_patient_id": "reject"})
    p = await projects.get("chest")
    rows = _repo_rows(tmp_path, n=2)
    samples.restamp(tmp_path / rows[1]["file_location"], tmp_path / rows[1]["file_location"], patient_id="")
    calls = []
    monkeypatch.setattr(importer.ingest_mod, "ingest_file", lambda *a, **kw: calls.append(a))
    monkeypatch.setattr(importer.ingest_mod, "record_placed", lambda *a, **kw: calls.append(a))
    monkeypatch.setattr(importer, "_place", lambda *a, **kw: calls.append(a))
    with pytest.raises(ImportRefused) as caught:
        await import_file(_write_csv(tmp_path / "f.csv", rows), p)
    assert [(pr.row, "no PatientID" in pr.problem) for pr in caught.value.problems] == [("3", True)]
    assert calls == []


async def test_a_deidentified_export_beside_a_copy_mode_export_writes_its_own_images(app, tmp_path):
    p, _, _ = await _populated(tmp_path)
    await projects.update_settings(p, {"export_images": "copy"})
    p = await projects.get("chest")
    share = tmp_path / "share"
    await export(p, to=share / "chest.json")  # identified copies under share/images
    result = await export(p, to=share / "chest-public.json", deidentify=True)
    frames = [f for e in _doc(result.path)["projects"]["chest"]["experiments"].values()
              for s in e["scans"].values() for f in s["frames"].values()]
    assert frames and all(f["file_location"].startswith("deidentified/") for f in frames)
    for f in frames:
        ds = open_dataset(share / f["file_location"], stop_before_pixels=True)
        assert ds.PatientIdentityRemoved == "YES" and ds.PatientID.startswith("ANON-")
    identified = [open_dataset(x, stop_before_pixels=True) for x in (share / "images").rglob("*.dcm")]
    assert len(identified) == 5 and {d.PatientID for d in identified} == {"P-1", "P-2"}


async def test_an_export_keeps_what_the_other_side_wrote_since_the_last_one(app, tmp_path):
    p, _, _ = await _populated(tmp_path)
    shared = tmp_path / "exchange" / "chest.csv"
    await projects.update_settings(p, {"export_path": str(shared), "export_backups": 1})
    p = await projects.get("chest")
    first = await runs.execute((await runs.create(p, "export", trigger="portal"))["id"])
    assert first["state"] == "done" and not first["summary"]["incoming_backup"]
    theirs = shared.read_text() + "chest,exp-9,scan-9,T1,0,x.dcm,,,,,U,pacs,,2031-01-01T00:00:00Z,,\n"
    shared.write_text(theirs)  # the other repository adds a row; Lightbox has not imported it
    run = await runs.execute((await runs.create(p, "export", trigger="portal"))["id"])
    assert run["state"] == "done" and "changed since Lightbox last wrote it" in run["message"]
    assert Path(run["summary"]["incoming_backup"]).read_text() == theirs  # kept, not lost
    again = await export(p)  # nothing changed on the other side since: no copy
    assert not again.incoming_backup
    assert len(list((shared.parent / "backups").iterdir())) == 2  # one export, one incoming (keep=1 each)


async def test_imports_into_one_project_run_one_at_a_time(app, tmp_path):
    from portal.errors import Conflict

    p = await _project()
    path = _write_csv(tmp_path / "f.csv", _repo_rows(tmp_path, n=2))
    sync_run = await runs.create(p, "sync", trigger="schedule")
    with pytest.raises(Conflict) as caught:
        await runs.create(p, "import", trigger="api", path=str(path))
    assert "is queued" in caught.value.detail
    assert (await runs.create(p, "export", trigger="api"))["state"] == "queued"  # exports are not merges
    # Two runs that were both queued (created before either started): the later one to start is refused.
    await SyncRun.update({SyncRun.state: "running", SyncRun.started_at: clock.now()}).where(
        SyncRun.id == sync_run["id"])
    late = SyncRun(project=p.id, kind="import", trigger="api", state="queued", path=str(path), options={},
                   queued_at=clock.now())
    await late.save()
    run = await runs.execute(late.id)
    assert run["state"] == "failed" and "one at a time" in run["message"] and await Instance.count() == 0


async def test_two_imports_at_once_add_a_decision_once(app, tmp_path):
    import asyncio

    p = await _project()
    rows = _repo_rows(tmp_path, n=2)
    await import_file(_write_csv(tmp_path / "frames.csv", rows), p)  # the frames are here: nothing to ingest
    decided = [{**r, "last_decision": "U", "last_decision_creator": "rev",
                "last_decision_created": "2026-01-01T00:00:00Z"} for r in rows]
    path = _write_csv(tmp_path / "f.csv", decided)
    results = await asyncio.gather(import_file(path, p), import_file(path, p))
    assert sorted(r["decisions_added"] for r in results) == [0, 1]
    assert await Decision.count() == 1 and await Instance.count() == 2


async def test_removing_an_upload_removes_only_the_folder_made_for_it(app, tmp_path):
    from portal import settings as settings_mod

    p = await _project()
    imports = settings_mod.current().data_dir / "imports"
    other = Path(_upload_of(_write_csv(tmp_path / "o.csv", _repo_rows(tmp_path / "o"))))  # another run's upload
    loose = _write_csv(imports / "loose.csv", _repo_rows(tmp_path / "l"))  # not in a folder of its own
    run = await runs.create(p, "import", trigger="api", user=await accounts.get("mgr"), path=str(loose),
                            options={"upload": True})
    await runs.execute(run["id"])
    assert loose.is_file() and other.is_file()  # data/imports itself is never removed
    mine = _upload_of(tmp_path / "o.csv")
    await runs.execute((await runs.create(p, "import", trigger="api", user=await accounts.get("mgr"), path=mine,
                                          options={"upload": True}))["id"])
    assert not Path(mine).parent.exists() and other.is_file()


async def test_a_deidentified_export_leaves_out_and_lists_burned_in_instances(app, tmp_path):
    import pydicom

    p = await _project()
    marked, clean = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "in", 2, patient_id="P-9")
    ds = pydicom.dcmread(marked)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(marked)
    for f in (marked, clean):
        assert (await ingest_file(f, p)).ok
    result = await export(p, fmt="json", deidentify=True, shift_dates=True, clean_descriptors=True)
    doc = json.loads(Path(result.path).read_text())
    assert result.withheld_burned_in == 1
    (withheld,) = doc["withheld_burned_in"]
    assert withheld["sop_instance_uid"] == ds.SOPInstanceUID and "BurnedInAnnotation" in withheld["reason"]
    frames = [f for e in doc["projects"]["chest"]["experiments"].values() for s in e["scans"].values()
              for f in s["frames"].values()]
    assert [f["sop_instance_uid"] for f in frames] == [pydicom.dcmread(clean).SOPInstanceUID]
    out = open_dataset(Path(result.path).parent / frames[0]["file_location"], stop_before_pixels=True)
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
