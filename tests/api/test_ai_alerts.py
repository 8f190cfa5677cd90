"""AI alerts people can trust: only series acquired within the project's window page anyone, once per study, with
patient, accession, study date and description and a link; older series go to the daily digest; the project's
threshold overrides the model's. Real uploads, real jobs.finish, the real outbox and notifications."""

from __future__ import annotations

import datetime as dt

import pydicom
import pytest

from portal import clock, notifications, projects
from portal.dicom import samples
from portal.inference import jobs
from portal.tables import AiAlert, EmailOutbox, Notification, Series, User
from tests.helpers import creds, make_project

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CRITICAL = {"scores": {"quality": 0.1, "noise": 0.9, "motion": 0.8}, "report": "bad", "heatmap_png": b""}


def _stamp(path, when: dt.datetime, *, accession="ACC-77", description="Head CT follow-up"):
    ds = pydicom.dcmread(path)
    for tag in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        setattr(ds, tag, when.strftime("%Y%m%d"))
    for tag in ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime"):
        setattr(ds, tag, when.strftime("%H%M%S"))
    ds.PatientID, ds.AccessionNumber, ds.StudyDescription = "PAT-42", accession, description
    ds.save_as(path)


async def _study(client, tmp_path, when: dt.datetime, n_series: int = 2) -> list[Series]:
    """One study of `n_series` one-instance CT series acquired at `when`."""
    study_uid = pydicom.uid.generate_uid()
    uids = []
    for k in range(n_series):
        f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / f"s{k}.dcm", study_uid=study_uid)
        _stamp(f, when)
        with open(f, "rb") as fh:
            r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), data={"Project": "al"},
                                  files={"file": (f.name, fh)})
        assert r.status_code == 200, r.text
        uids.append(r.json()["SeriesInstanceUID"])
    return [await Series.objects().get(Series.series_instance_uid == u) for u in uids]


async def _score(project, series: Series, outcome=CRITICAL) -> None:
    job, _ = await jobs.request(project, series)
    await jobs.start(job["id"])
    await jobs.finish(job["id"], outcome)


@pytest.fixture
async def project(app):
    p = await make_project("al", {"rev": "reviewer", "senior": "senior_reviewer", "view": "viewer"})
    await projects.update_settings(p, {"ai_quiet_seconds": 3600})
    return p


async def _alert_mails() -> list[dict]:
    return await EmailOutbox.select().where(EmailOutbox.kind == "alert")


async def test_a_recent_study_alerts_once_naming_patient_accession_date_and_description(client, tmp_path, project):
    acquired = clock.now() - dt.timedelta(hours=2)  # just after midnight this is yesterday: compare with it, not today
    a, b = await _study(client, tmp_path, acquired)
    await _score(project, a)
    await _score(project, b)  # a second critical series of the same study: no second alert
    assert await AiAlert.count() == 1
    rows = await _alert_mails()
    assert len(rows) == 1
    body, subject = rows[0]["body"], rows[0]["subject"]
    for needed in ("PAT-42", "ACC-77", "Head CT follow-up", acquired.strftime("%Y-%m-%d"),
                   f"/projects/al/series/{a.series_instance_uid}", "repeat the scan while the patient is there"):
        assert needed in body, needed
    assert "PAT-42" in subject and "ACC-77" in subject
    senior = await User.objects().get(User.username == "senior")
    bell = await notifications.for_user(senior)
    assert [n["kind"] for n in bell] == ["alert"] and not bell[0]["digest_due"]
    r = (await client.get(f"/api/v1/results/{b.series_instance_uid}", headers=creds("view"))).json()
    assert r["triage_status"] == "Critical"  # the series is critical even though its study's alert names the other


async def test_an_old_study_goes_to_the_daily_digest_not_to_a_page(client, tmp_path, project):
    [old] = await _study(client, tmp_path, dt.datetime(2019, 5, 4, 9, 30, tzinfo=dt.timezone.utc), n_series=1)
    await _score(project, old)
    assert await AiAlert.count() == 1  # recorded ...
    assert await _alert_mails() == []  # ... but nobody is mailed now
    senior = await User.objects().get(User.username == "senior")
    [note] = await notifications.for_user(senior)
    assert note["digest_due"] and "review it when convenient" in note["text"]
    assert "repeat the scan" not in note["text"]
    assert await notifications.send_digests() == 1
    [digest] = await EmailOutbox.select().where(EmailOutbox.kind == "digest")
    assert f"/projects/al/series/{old.series_instance_uid}" in digest["body"] and "2019-05-04" in digest["body"]


async def test_many_old_studies_are_one_digest_not_many_mails(client, tmp_path, project):
    for k in range(4):
        [s] = await _study(client, tmp_path / str(k), dt.datetime(2018, 1, 1 + k, tzinfo=dt.timezone.utc), n_series=1)
        await _score(project, s)
    assert await _alert_mails() == []
    assert await notifications.send_digests() == 1
    assert await Notification.count().where(Notification.digest_due == True) == 0  # noqa: E712


async def test_the_window_and_the_threshold_are_the_projects(client, tmp_path, project):
    a, b = await _study(client, tmp_path, clock.now() - dt.timedelta(hours=30))
    await projects.update_settings(project, {"ai_alert_window_hours": 48,
                                             "ai_critical_thresholds": {"lightbox-quality": 0.05}})
    await _score(project, a)  # quality 0.1 is not below this project's 0.05
    assert await AiAlert.count() == 0
    r = (await client.get(f"/api/v1/results/{a.series_instance_uid}", headers=creds("view"))).json()
    assert r["triage_status"] == "Routine"
    await _score(project, b, {**CRITICAL, "scores": {**CRITICAL["scores"], "quality": 0.01}})
    assert await AiAlert.count() == 1 and len(await _alert_mails()) == 1  # 30 h old, inside the 48 h window
