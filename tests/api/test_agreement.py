"""The progress dashboard's agreement: Cohen's kappa between reviewers, and decisions per day."""

import pytest

from portal.dicom import samples
from portal.review.agreement import cohen_kappa
from tests.helpers import creds, login, make_project


def test_cohen_kappa():
    assert cohen_kappa([]) is None
    assert cohen_kappa([("U", "U"), ("Q?", "Q?")]) == 1.0
    assert cohen_kappa([("U", "U"), ("U", "Q?")]) == 0.0
    # 20 items: 15 agree; marginals 10/10 and 10/10 → po .75, pe .5, kappa .5
    pairs = [("U", "U")] * 8 + [("UN", "UN")] * 7 + [("U", "UN")] * 2 + [("UN", "U")] * 3
    assert cohen_kappa(pairs) == pytest.approx((0.75 - 0.5) / 0.5)
    assert cohen_kappa([("U", "U")] * 3) == 1.0


async def test_dashboard_shows_kappa_and_decisions_per_day(app, client, tmp_path):
    await make_project("p", {"ann": "reviewer", "bob": "reviewer", "max": "manager"})
    uids = []
    for i in range(2):
        f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / f"{i}.dcm", patient_id=f"K-{i}")
        with open(f, "rb") as fh:
            r = await client.post("/api/v1/instance/upload/", headers=creds("max"), data={"Project": "p"},
                                  files={"file": ("x.dcm", fh)})
        uids.append(r.json()["SeriesInstanceUID"])
    for who, uid, code in (("ann", uids[0], "U"), ("bob", uids[0], "U"), ("ann", uids[1], "U"),
                           ("bob", uids[1], "Q?")):
        r = await client.post("/api/v1/scan-decisions", headers=creds(who), json={"series": uid, "decision": code})
        assert r.status_code == 201, r.text
    await login(client, "max")
    page = (await client.get("/projects/p/dashboard")).text
    row = page.split('data-pair="ann:bob"')[1].split("</tr>")[0]
    assert "<td>2</td>" in row and "50%" in row and "0.00" in row
    assert "4 decisions" in page and "<title>" in page and "3 × U" in page and "1 × Q?" in page


async def test_dashboard_shows_the_models_call_against_the_final_decision(app, client, tmp_path):
    """Per model version: critical (quality below the threshold) or not, against each series' latest code."""
    from portal import clock
    from portal.tables import InferenceJob, Project, Result, Series

    await make_project("p", {"ann": "reviewer", "sen": "senior_reviewer", "max": "manager"})
    uids = []
    for i in range(3):
        f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / f"{i}.dcm", patient_id=f"A-{i}")
        with open(f, "rb") as fh:
            r = await client.post("/api/v1/instance/upload/", headers=creds("max"), data={"Project": "p"},
                                  files={"file": ("x.dcm", fh)})
        uids.append(r.json()["SeriesInstanceUID"])
    p = await Project.objects().where(Project.name == "p").first()
    when = clock.now()
    # series 0: critical (0.1) then rescored by a later job of the same version (0.9, not critical): the later counts
    for uid, version, quality in ((uids[0], "1.0.0", 0.1), (uids[0], "1.0.0", 0.9), (uids[1], "1.0.0", 0.2),
                                  (uids[2], "1.0.0", 0.8), (uids[1], "1.1.0", 0.6)):
        s = await Series.objects().where(Series.series_instance_uid == uid).first()
        job = InferenceJob(project=p.id, series=s.id, model_name="lightbox-quality", model_version=version,
                           state="done", attempts=1, queued_at=when, finished_at=when)
        await job.save()
        await Result.insert(Result(job=job.id, series=s.id, name="quality", algorithm="lightbox-quality",
                                   value=quality, type="probability", model_name="lightbox-quality",
                                   model_version=version, created_at=when))
    for who, uid, code in (("ann", uids[0], "U"), ("ann", uids[1], "Q?"), ("sen", uids[1], "UN"),
                           ("ann", uids[2], "U")):
        r = await client.post("/api/v1/scan-decisions", headers=creds(who), json={"series": uid, "decision": code})
        assert r.status_code == 201, r.text
    await login(client, "max")
    page = (await client.get("/projects/p/dashboard")).text
    old = page.split('data-model="lightbox-quality:1.0.0"')[1].split("</figure>")[0]
    assert "3 series" in old
    critical = old.split('data-call="critical"')[1].split("</tr>")[0]
    clear = old.split('data-call="not critical"')[1].split("</tr>")[0]
    cell = lambda row, code: row.split(f'data-code="{code}"')[1].split("</td>")[0].rsplit(">", 1)[1]  # noqa: E731
    assert (cell(critical, "UN"), cell(critical, "U"), cell(critical, "Q?")) == ("1", "0", "0")
    assert (cell(clear, "U"), cell(clear, "UN")) == ("2", "0")
    new = page.split('data-model="lightbox-quality:1.1.0"')[1].split("</figure>")[0]
    assert "1 series" in new and cell(new.split('data-call="not critical"')[1].split("</tr>")[0], "UN") == "1"


async def test_the_models_call_is_counted_in_the_database_with_the_projects_threshold(app, client, tmp_path,
                                                                                      monkeypatch):
    """The dashboard reads a row per (version, call, code), not every decision and result of the project; a
    project's own critical threshold moves the call; unfinished jobs do not count."""
    from portal import clock, projects
    from portal.review import agreement
    from portal.tables import InferenceJob, Project, Result, Series

    await make_project("p", {"ann": "reviewer", "max": "manager"})
    p = await Project.objects().where(Project.name == "p").first()
    when = clock.now()
    for i in range(12):
        f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / f"{i}.dcm", patient_id=f"T-{i}")
        with open(f, "rb") as fh:
            r = await client.post("/api/v1/instance/upload/", headers=creds("max"), data={"Project": "p"},
                                  files={"file": ("x.dcm", fh)})
        uid = r.json()["SeriesInstanceUID"]
        s = await Series.objects().where(Series.series_instance_uid == uid).first()
        # quality 0.05, 0.1 ... 0.6; the last series' job is still running (its low score must not count)
        state = "running" if i == 11 else "done"
        job = InferenceJob(project=p.id, series=s.id, model_name="lightbox-quality", model_version="1.0.0",
                           state=state, attempts=1, queued_at=when, finished_at=when)
        await job.save()
        await Result.insert(Result(job=job.id, series=s.id, name="quality", algorithm="lightbox-quality",
                                   value=0.05 * (i + 1) if i < 11 else 0.01, type="probability",
                                   model_name="lightbox-quality", model_version="1.0.0", created_at=when))
        r = await client.post("/api/v1/scan-decisions", headers=creds("ann"),
                              json={"series": uid, "decision": "U" if i % 2 else "Q?"})
        assert r.status_code == 201, r.text

    engine, fetched = Result._meta.db, []
    real = engine.run_querystring

    async def counting(querystring, *args, **kw):
        rows = await real(querystring, *args, **kw)
        fetched.append(len(rows or []))
        return rows

    monkeypatch.setattr(engine, "run_querystring", counting)
    conf = projects.settings_of(p)
    (table,) = await agreement.ai_agreement(p, conf)
    assert sum(fetched) <= 4, fetched  # critical/not × U/Q?
    # Built-in threshold 0.3: quality 0.05-0.25 (series 0-4) critical, 0.3-0.55 (series 5-10) not.
    rows = {r["call"]: r["counts"] for r in table["rows"]}
    assert table["n"] == 11 and rows == {"critical": {"Q?": 3, "U": 2}, "not critical": {"U": 3, "Q?": 3}}
    # The project's own threshold (0.42): series 0-7 critical.
    (table,) = await agreement.ai_agreement(p, {**conf, "ai_critical_thresholds": {"lightbox-quality": 0.42}})
    rows = {r["call"]: r["counts"] for r in table["rows"]}
    assert rows == {"critical": {"Q?": 4, "U": 4}, "not critical": {"Q?": 2, "U": 1}}
