"""Keyset walks: the series pages' prev/next, "next in my queue" and the studies table's pages, checked
against the same order worked out in Python; ties on equal study dates and missing series numbers included."""

import random

import pytest

from portal import clock, projects
from portal.archive import browse, navigation
from portal.review import queue
from portal.tables import Patient, Series, Study
from tests.helpers import make_project

STATUSES = ["unreviewed", "needs_senior_review", "complete"]


@pytest.fixture
async def walk(app):
    """A project of 12 studies on 4 dates (so most dates are shared) with 0-3 series each, some without a
    series number, beside another project whose series must never appear; returns (project, expected walk)."""
    rnd = random.Random(12)
    project, other = await make_project("nav"), await make_project("other")
    expected = []
    for p, n in ((project, 12), (other, 4)):
        archive = await projects.archive(p, None)
        now = clock.now()
        for i in range(n):
            patient = (await Patient.insert(Patient(key=f"{archive.id}:P{i}", project=p.id, archive=archive.id,
                                                    patient_id=f"P{i:02d}", created_at=now)).returning(Patient.id))[0]
            date = rnd.choice(["20200101", "20210505", "20210505", "20221212"])
            study = (await Study.insert(Study(key=f"{p.id}:1.{i}", project=p.id, patient=patient["id"],
                                              study_instance_uid=f"{p.id}.1.{i}", study_date=date,
                                              created_at=now, updated_at=now)).returning(Study.id))[0]["id"]
            rows = []
            for k in range(0 if i == 5 else rnd.randint(1, 3)):  # study 5 has no series: the walk skips it
                number = rnd.choice([None, 1, 2, 2])  # ties on the number too: the series id decides
                uid = f"{p.id}.1.{i}.{k}"
                status = rnd.choice(STATUSES)
                sid = (await Series.insert(Series(key=f"{p.id}:{uid}", project=p.id, study=study,
                                                  series_instance_uid=uid, series_number=number,
                                                  review_status=status, last_instance_at=now, created_at=now)
                                           ).returning(Series.id))[0]["id"]
                rows.append((date, study, number or 0, sid, uid, status))
            if p is project:
                expected += rows
    # The documented walk: newest study first (date, then id, descending), then series number, then id.
    expected.sort(key=lambda r: (-int(r[0]), -r[1], r[2], r[3]))
    return project, [(uid, status) for *_, uid, status in expected]


async def test_prev_next_follow_the_walk(walk):
    project, expected = walk
    uids = [uid for uid, _ in expected]
    assert len(uids) > 12
    for i, uid in enumerate(uids):
        prev_uid, next_uid = await navigation.neighbours(project, uid)
        assert prev_uid == (uids[i - 1] if i else None), (i, uid)
        assert next_uid == (uids[i + 1] if i + 1 < len(uids) else None), (i, uid)
    assert await navigation.neighbours(project, "not.a.series") == (None, None)


@pytest.mark.parametrize("role", ["reviewer", "senior_reviewer"])
async def test_queue_order_wraps_and_skips_other_tiers(walk, role):
    project, expected = walk
    tiers = queue.statuses_for(role)
    # The queue: tier by tier (a senior's own first), each in walk order.
    order = [uid for tier in tiers for uid, status in expected if status == tier]
    assert order and len(order) < len(expected)
    assert await queue.next_in_queue(project, role) == order[0]
    for i, uid in enumerate(order):  # "next" after each one, wrapping round at the end
        assert await queue.next_in_queue(project, role, uid) == order[(i + 1) % len(order)]
    # A series just decided (no longer in the queue) goes on from its place in the walk, in the first tier.
    first_tier = [uid for uid, status in expected if status == tiers[0]]
    walk_uids = [uid for uid, _ in expected]
    for uid, status in expected:
        if status in tiers:
            continue
        later = [u for u in first_tier if walk_uids.index(u) > walk_uids.index(uid)]
        want = later[0] if later else order[len(first_tier)] if len(order) > len(first_tier) else first_tier[0]
        assert await queue.next_in_queue(project, role, uid) == want, uid


async def test_queue_of_one_and_empty(walk):
    project, expected = walk
    await Series.update({Series.review_status: "complete"}).where(Series.project == project.id)
    assert await queue.next_in_queue(project, "reviewer") is None
    only = expected[3][0]
    await Series.update({Series.review_status: "unreviewed"}).where(Series.series_instance_uid == only)
    assert await queue.next_in_queue(project, "reviewer") == only
    assert await queue.next_in_queue(project, "reviewer", only) is None  # never "next" to itself


async def test_studies_pages_cover_each_study_once_with_its_own_counts(walk, monkeypatch):
    project, expected = walk
    monkeypatch.setattr(browse, "PER_PAGE", 5)
    seen, page = [], 1
    while True:
        result = await browse.search_studies(project, browse.StudyQuery(page=page))
        seen += result.rows
        if page >= result.pages:
            break
        page += 1
    assert result.total == 12 and len(seen) == 12 and len({r["id"] for r in seen}) == 12
    assert [(r["study_date"], r["id"]) for r in seen] == sorted(((r["study_date"], r["id"]) for r in seen), reverse=True)
    per_study = {}
    for uid, status in expected:
        per_study.setdefault(uid.rsplit(".", 1)[0], []).append(status)
    for r in seen:
        statuses = per_study.get(r["study_instance_uid"], [])
        assert r["n_series"] == len(statuses)
        assert r["n_unreviewed"] == statuses.count("unreviewed")
        assert r["review_status"] == ("unreviewed" if "unreviewed" in statuses else "needs_senior_review"
                                      if "needs_senior_review" in statuses else "complete")
    # Filters and sorts that need every study's counts agree with the page counts.
    senior = await browse.search_studies(project, browse.StudyQuery(status="needs_senior_review"))
    assert {r["id"] for r in senior.rows} == {r["id"] for r in seen if r["review_status"] == "needs_senior_review"}
    by_count = await browse.search_studies(project, browse.StudyQuery(sort="series", desc=True))
    assert [r["n_series"] for r in by_count.rows] == sorted((r["n_series"] for r in seen), reverse=True)[:5]
    assert result.modalities == []


async def test_prev_next_step_over_derived_series(walk):
    """The AI's own result series (SR, SC, PDF) are not walked by ↑/↓: the step lands on the next acquired series."""
    from portal.review.decisions import DERIVED

    project, expected = walk
    uids = [uid for uid, _ in expected]
    derived = set(uids[1::3])
    await Series.update({Series.review_status: DERIVED}).where(
        Series.series_instance_uid.is_in(list(derived)))
    acquired = [u for u in uids if u not in derived]
    for i, uid in enumerate(acquired):
        prev_uid, next_uid = await navigation.neighbours(project, uid)
        assert prev_uid == (acquired[i - 1] if i else None), (i, uid)
        assert next_uid == (acquired[i + 1] if i + 1 < len(acquired) else None), (i, uid)
    # From a derived series' own page the walk goes on to acquired ones.
    some = uids[1]
    prev_uid, next_uid = await navigation.neighbours(project, some)
    assert prev_uid not in derived and next_uid not in derived
