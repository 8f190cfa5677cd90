"""The per-study summary (series count, review tallies and status, worst AI score) stays true through every
write: ingest, decisions and their undo, AI results, deleting a series or a study; the migration back-fills
existing rows; the studies table filters, sorts and counts (capped) by it."""

from __future__ import annotations

import datetime as dt
import importlib

import pydicom
import pytest

from portal import projects
from portal.archive import browse, queries
from portal.dicom import samples
from portal.inference import jobs, retrain
from portal.review import agreement, decisions, progress
from portal.tables import Decision, Series, Study, User
from tests.helpers import creds, login, make_project

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


async def _upload(client, tmp_path, study_uid: str, n_series: int, patient: str) -> list[str]:
    uids = []
    for k in range(n_series):
        f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / f"{patient}-{k}.dcm", study_uid=study_uid,
                            patient_id=patient)
        with open(f, "rb") as fh:
            r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), data={"Project": "sum"},
                                  files={"file": (f.name, fh)})
        assert r.status_code == 200, r.text
        uids.append(r.json()["SeriesInstanceUID"])
    return uids


async def _summary(study_uid: str) -> dict:
    row = await Study.select(Study.n_series, Study.n_unreviewed, Study.n_senior, Study.review_status,
                             Study.ai_min).where(Study.study_instance_uid == study_uid).first()
    if row and row["ai_min"] is not None:
        row["ai_min"] = round(row["ai_min"], 3)
    return row


async def _score(project, uid: str, quality: float) -> None:
    series = await Series.objects().get(Series.series_instance_uid == uid)
    job, _ = await jobs.request(project, series, force=True)
    await jobs.start(job["id"])
    await jobs.finish(job["id"], {"scores": {"quality": quality, "noise": 0.1, "motion": 0.1}, "report": "",
                                  "heatmap_png": b""})


@pytest.fixture
async def project(app):
    p = await make_project("sum", {"rev": "reviewer", "senior": "senior_reviewer", "boss": "manager"})
    await projects.update_settings(p, {"ai_quiet_seconds": 3600})
    return p


async def test_summary_follows_ingest_decisions_ai_and_deletes(client, tmp_path, project):
    study_uid = pydicom.uid.generate_uid()
    a, b, c = await _upload(client, tmp_path, study_uid, 3, "SUM-1")
    assert await _summary(study_uid) == {"n_series": 3, "n_unreviewed": 3, "n_senior": 0,
                                         "review_status": "unreviewed", "ai_min": None}
    rev = await User.objects().get(User.username == "rev")
    senior = await User.objects().get(User.username == "senior")
    series = {u: await Series.objects().get(Series.series_instance_uid == u) for u in (a, b, c)}

    await decisions.record(project, series[a], rev, "Q?")  # a reviewer's doubt: needs a senior
    await decisions.record(project, series[b], rev, "U")
    assert await _summary(study_uid) == {"n_series": 3, "n_unreviewed": 1, "n_senior": 1,
                                         "review_status": "unreviewed", "ai_min": None}
    last = await decisions.record(project, series[c], rev, "U")
    assert (await _summary(study_uid))["review_status"] == "needs_senior_review"
    await decisions.undo(project, series[c], rev, last["id"])
    assert (await _summary(study_uid))["review_status"] == "unreviewed"
    await decisions.record(project, series[c], rev, "U")
    await decisions.record(project, series[a], senior, "UN")
    assert await _summary(study_uid) == {"n_series": 3, "n_unreviewed": 0, "n_senior": 0,
                                         "review_status": "complete", "ai_min": None}

    await _score(project, a, 0.8)
    await _score(project, b, 0.2)
    assert (await _summary(study_uid))["ai_min"] == 0.2
    await _score(project, b, 0.6)  # a re-run replaces the score: the minimum rises again
    assert (await _summary(study_uid))["ai_min"] == 0.6

    await queries.delete_series(series[b])
    s = await _summary(study_uid)
    assert (s["n_series"], s["ai_min"], s["review_status"]) == (2, 0.8, "complete")
    # A new series arriving in a complete study makes it unreviewed again.
    other = await _upload(client, tmp_path, study_uid, 1, "SUM-1")
    assert await _summary(study_uid) == {"n_series": 3, "n_unreviewed": 1, "n_senior": 0,
                                         "review_status": "unreviewed", "ai_min": 0.8}
    assert other
    await queries.delete_study(await Study.objects().get(Study.study_instance_uid == study_uid))
    assert await _summary(study_uid) is None


async def test_migration_back_fills_existing_rows(client, tmp_path, project):
    study_uid = pydicom.uid.generate_uid()
    await _upload(client, tmp_path, study_uid, 2, "SUM-2")
    expected = await _summary(study_uid)
    # Rows written before the summary existed carry the columns' defaults.
    await Study.raw("UPDATE lb_study SET n_series = 0, n_unreviewed = 0, n_senior = 0, review_status = 'complete', "
                    "ai_min = NULL")
    migration = importlib.import_module("migrations.portal.portal_2026_12_03t11_31_00_000000")
    await (await migration.forwards()).run()  # idempotent: triggers and indexes if missing, then the back-fill
    assert await _summary(study_uid) == expected == {"n_series": 2, "n_unreviewed": 2, "n_senior": 0,
                                                     "review_status": "unreviewed", "ai_min": None}


async def test_studies_table_filters_sorts_and_caps_by_the_summary(client, tmp_path, project, monkeypatch):
    studies = {}
    for i, n in enumerate((1, 3, 2)):
        uid = pydicom.uid.generate_uid()
        studies[uid] = await _upload(client, tmp_path, uid, n, f"TAB-{i}")
    by_count = [uid for uid, _ in sorted(studies.items(), key=lambda kv: -len(kv[1]))]
    page = await browse.search_studies(project, browse.StudyQuery(sort="series", desc=True))
    assert [r["study_instance_uid"] for r in page.rows] == by_count and [r["n_series"] for r in page.rows] == [3, 2, 1]
    assert (page.total, page.capped, page.has_next) == (3, False, False)

    rev = await User.objects().get(User.username == "rev")
    two = by_count[1]
    for uid in studies[two]:
        await decisions.record(project, await Series.objects().get(Series.series_instance_uid == uid), rev, "Q?")
    await _score(project, studies[two][0], 0.1)
    await _score(project, studies[by_count[0]][0], 0.9)
    senior = await browse.search_studies(project, browse.StudyQuery(status="needs_senior_review"))
    assert [r["study_instance_uid"] for r in senior.rows] == [two]
    assert senior.rows[0]["review_status"] == "needs_senior_review"
    critical = await browse.search_studies(project, browse.StudyQuery(ai="critical"))
    assert [r["study_instance_uid"] for r in critical.rows] == [two]
    by_ai = await browse.search_studies(project, browse.StudyQuery(sort="ai", desc=False))
    assert [r["study_instance_uid"] for r in by_ai.rows] == [two, by_count[0], by_count[2]]  # unscored last
    unscored = await browse.search_studies(project, browse.StudyQuery(ai="unscored"))
    assert [r["study_instance_uid"] for r in unscored.rows] == [by_count[2]]

    monkeypatch.setattr(browse, "COUNT_CAP", 2)
    monkeypatch.setattr(browse, "PER_PAGE", 2)
    capped = await browse.search_studies(project, browse.StudyQuery())
    assert (capped.total, capped.capped, capped.has_next, len(capped.rows)) == (2, True, True, 2)
    last = await browse.search_studies(project, browse.StudyQuery(page=2))
    assert (len(last.rows), last.has_next) == (1, False)
    await login(client, "rev")
    r = await client.get("/projects/sum")
    assert r.status_code == 200 and "2+ studies" in r.text and 'rel="next"' in r.text


async def _recounted(project) -> dict:
    """The dashboard's and the AI page's figures counted from the rows themselves, as they were before tallies."""
    from collections import Counter

    series = await Series.select(Series.id, Series.review_status).where(Series.project == project.id)
    rows = await Decision.select().where(Decision.project == project.id).order_by(Decision.created_at).order_by(
        Decision.id)
    latest = {d["series"]: d for d in rows}
    labels: Counter = Counter()
    for d in latest.values():
        for name in retrain.labels_of(d["code"], d["artifacts"]):
            labels[name] += 1
    reviewers = Counter((d["role"], d["username"]) for d in rows)
    distinct = Counter(k for k in {(d["role"], d["username"], d["series"]) for d in rows} for k in [k[:2]])
    days = Counter((d["created_at"].astimezone(dt.timezone.utc).date().isoformat(), d["code"]) for d in rows)
    return {"status": dict(Counter(s["review_status"] for s in series)),
            "decision": dict(Counter(d["code"] for d in latest.values())), "labels": dict(labels),
            "reviewers": sorted((u, r, n, distinct[(r, u)]) for (r, u), n in reviewers.items()),
            "days": {k: v for k, v in days.items()}}


async def _tallied(project) -> dict:
    summary = await progress.summary(project)
    days = {}
    for d in await agreement.per_day(project):
        for code, n in d["codes"].items():
            days[(d["day"], code)] = n
    return {"status": summary["by_status"], "decision": summary["by_decision"],
            "labels": await retrain.label_counts(project),
            "reviewers": sorted((r["username"], r["role"], r["n"], r["series"]) for r in summary["reviewers"]),
            "days": days}


async def test_dashboard_and_ai_page_tallies_follow_every_write(client, tmp_path, project):
    s1, s2 = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    a, b = await _upload(client, tmp_path, s1, 2, "TAL-1")
    (c,) = await _upload(client, tmp_path, s2, 1, "TAL-2")
    users = {u: await User.objects().get(User.username == u) for u in ("rev", "senior", "boss")}
    series = {u: await Series.objects().get(Series.series_instance_uid == u) for u in (a, b, c)}
    assert await _tallied(project) == await _recounted(project)

    await decisions.record(project, series[a], users["rev"], "Q?", artifacts={"ghosting_motion": 1})
    await decisions.record(project, series[a], users["rev"], "U")  # the reviewer changes their mind
    await decisions.record(project, series[a], users["senior"], "UN", artifacts={"ghosting_motion": 1})
    await decisions.record(project, series[b], users["senior"], "U")
    undone = await decisions.record(project, series[c], users["rev"], "Q?")
    assert await _tallied(project) == await _recounted(project)
    await decisions.undo(project, series[c], users["rev"], undone["id"])  # back to no decision on c
    tallied = await _tallied(project)
    assert tallied == await _recounted(project)
    assert tallied["decision"] == {"UN": 1, "U": 1} and tallied["status"] == {"complete": 2, "unreviewed": 1}
    # rev and senior both decided a: one pair, disagreeing (U against UN)
    pairs = await agreement.reviewer_agreement(project)
    assert [(p["a"], p["b"], p["n"], p["agree"]) for p in pairs] == [("rev", "senior", 1, 0)]

    await queries.delete_series(series[a])  # its decisions go with it
    assert await _tallied(project) == await _recounted(project)
    assert await agreement.reviewer_agreement(project) == []
    await queries.delete_study(await Study.objects().get(Study.study_instance_uid == s2))
    tallied = await _tallied(project)
    assert tallied == await _recounted(project) and tallied["status"] == {"complete": 1}

    # The back-fill gives the same figures as the triggers did.
    await Study.raw("DELETE FROM lb_tally")
    migration = importlib.import_module("migrations.portal.portal_2026_12_03t11_31_00_000000")
    await (await migration.forwards()).run()
    assert await _tallied(project) == tallied

    # A project's delete takes its counters with it (its series' triggers do not write them again).
    from portal.tables import Project, Tally

    await Project.delete().where(Project.id == project.id)
    assert await Tally.count().where(Tally.project == project.id) == 0


async def test_tallies_hold_when_one_statement_inserts_many_decisions(client, tmp_path, project):
    """An import or a bulk load inserts many decisions in one statement (PostgreSQL's statement trigger
    counts distinct series per reviewer from the whole statement)."""
    a, b = await _upload(client, tmp_path, pydicom.uid.generate_uid(), 2, "BULK-1")
    series = [await Series.objects().get(Series.series_instance_uid == u) for u in (a, b)]
    rev = await User.objects().get(User.username == "rev")
    now = dt.datetime.now(dt.timezone.utc)

    def row(s, code, username="rev", role="reviewer"):
        return Decision(project=project.id, series=s.id, user=rev.id, username=username, role=role, code=code,
                        created_at=now)

    await Decision.insert(row(series[0], "Q?"), row(series[0], "U"), row(series[1], "U"))
    tallied = await _tallied(project)
    assert tallied == await _recounted(project)
    # Again on a series the reviewer already decided (not a new one for them), and a new reviewer.
    await Decision.insert(row(series[0], "UN"), row(series[1], "UE"), row(series[1], "U", "other", "reviewer"))
    assert await _tallied(project) == await _recounted(project)


async def test_summaries_and_search_hold_when_one_statement_inserts_many_series(client, tmp_path, project):
    """A bulk load or an import inserts many series of several studies in one statement (PostgreSQL
    summarises them per statement): each study's counts, the tallies and the search text as if one by one."""
    s1, s2 = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    await _upload(client, tmp_path, s1, 1, "MANY-1")
    await _upload(client, tmp_path, s2, 1, "MANY-2")
    studies = {uid: await Study.objects().get(Study.study_instance_uid == uid) for uid in (s1, s2)}
    now = dt.datetime.now(dt.timezone.utc)

    def row(study, status, description=""):
        uid = pydicom.uid.generate_uid()
        return Series(key=f"{project.id}:{uid}", project=project.id, study=study.id, series_instance_uid=uid,
                      modality="CT", description=description, review_status=status, last_instance_at=now,
                      created_at=now)

    await Series.insert(row(studies[s1], "complete", "Zebrafinch localiser"), row(studies[s1], "needs_senior_review"),
                        row(studies[s2], "complete"), row(studies[s2], "complete", "zebrafinch axial"))
    assert await _summary(s1) == {"n_series": 3, "n_unreviewed": 1, "n_senior": 1, "review_status": "unreviewed",
                                  "ai_min": None}
    assert await _summary(s2) == {"n_series": 3, "n_unreviewed": 1, "n_senior": 0, "review_status": "unreviewed",
                                  "ai_min": None}
    assert await _tallied(project) == await _recounted(project)
    found = await browse.search_studies(project, browse.StudyQuery(q="zebrafinch"))
    assert sorted(r["study_instance_uid"] for r in found.rows) == sorted([s1, s2])
    found = await browse.search_studies(project, browse.StudyQuery(q="localiser"))
    assert [r["study_instance_uid"] for r in found.rows] == [s1]
