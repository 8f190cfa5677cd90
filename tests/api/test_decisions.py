"""Scan decisions over the API: tiers, shapes, history, review status; and the portal's decision panel."""

import pytest

from portal.dicom import samples
from portal.tables import Decision, Series
from tests.helpers import creds, form_post, login, make_project, make_user

ROLES = ["viewer", "reviewer", "senior_reviewer", "manager"]
# Exactly the codes each role may give by default (admins: all).
TIERS = {"viewer": set(), "reviewer": {"U", "Q?"}, "senior_reviewer": {"U", "UE", "Q?", "UN"},
         "manager": {"U", "UE", "Q?", "UN"}, "admin": {"U", "UE", "Q?", "UN"}}


@pytest.fixture
async def series_uid(app, client, tmp_path):
    await make_project("p", {r: r for r in ROLES})
    await make_user("admin", admin=True)
    f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "a.dcm")
    with open(f, "rb") as fh:
        r = await client.post("/api/v1/instance/upload/", headers=creds("reviewer"), data={"Project": "p"},
                              files={"file": ("a.dcm", fh)})
    return r.json()["SeriesInstanceUID"]


@pytest.mark.parametrize("role", ROLES + ["admin"])
async def test_tier_matrix(client, series_uid, role):
    for code in ("U", "UE", "Q?", "UN"):
        r = await client.post("/api/v1/scan-decisions", json={"series": series_uid, "decision": code},
                              headers=creds(role))
        assert r.status_code == (201 if code in TIERS[role] else 403), (role, code, r.text)
    assert await Decision.count() == len(TIERS[role])


async def test_history_and_review_status(client, series_uid):
    series = lambda: Series.objects().get(Series.series_instance_uid == series_uid)  # noqa: E731
    assert (await series()).review_status == "unreviewed"
    r = await client.post("/api/v1/scan-decisions", headers=creds("reviewer"), json={
        "series": series_uid, "decision": "Q?", "note": "motion?",
        "artifacts": {"present": ["ghosting_motion"], "absent": ["lesions"]}, "location": {"x": 1, "y": 2.5, "z": -3}})
    assert r.status_code == 201, r.text
    assert (await series()).review_status == "needs_senior_review"
    await client.post("/api/v1/scan-decisions", headers=creds("senior_reviewer"),
                      json={"series": series_uid, "decision": "UN"})
    assert (await series()).review_status == "complete"
    await client.post("/api/v1/scan-decisions", headers=creds("reviewer"), json={"series": series_uid, "decision": "U"})
    assert (await series()).review_status == "complete"

    history = (await client.get("/api/v1/scan-decisions", params={"series": series_uid}, headers=creds("viewer"))).json()
    assert [h["decision"] for h in history] == ["U", "UN", "Q?"]
    first = history[-1]
    assert first["creator"] == "reviewer" and first["note"] == "motion?"
    assert first["artifacts"] == {"present": ["ghosting_motion"], "absent": ["lesions"]}
    assert first["location"] == {"x": 1.0, "y": 2.5, "z": -3.0}
    assert first["created"].endswith("Z") and len(first["created"]) == 20  # UTC with seconds


@pytest.mark.parametrize("body,status", [
    ({"decision": "U"}, 400),
    ({"decision": "MAYBE"}, 400),
    ({"decision": "U", "artifacts": {"present": ["dragons"]}}, 400),
    ({"decision": "U", "artifacts": {"present": "lesions"}}, 400),
    ({"decision": "U", "artifacts": {"maybe": []}}, 400),
    ({"decision": "U", "location": {"x": 1, "y": 2}}, 400),
    ({"decision": "U", "location": {"x": "a", "y": 2, "z": 3}}, 400),
    ({"decision": "U", "extra": 1}, 400),
    ({"decision": "U", "note": 5}, 400),
])
async def test_bad_shapes_are_rejected_and_never_stored(client, series_uid, body, status):
    if "decision" in body and "series" not in body and body != {"decision": "U"}:
        body = {"series": series_uid, **body}
    r = await client.post("/api/v1/scan-decisions", json=body, headers=creds("senior_reviewer"))
    assert r.status_code == status, r.text
    assert r.json()["detail"]
    assert await Decision.count() == 0


async def test_series_outside_my_projects_is_404(client, series_uid):
    await make_user("outsider")
    r = await client.post("/api/v1/scan-decisions", json={"series": series_uid, "decision": "U"},
                          headers=creds("outsider"))
    assert r.status_code == 404
    r = await client.get("/api/v1/scan-decisions", params={"series": series_uid}, headers=creds("outsider"))
    assert r.status_code == 404
    assert await Decision.count() == 0


async def test_vocabulary_is_a_project_setting(client, series_uid):
    await login(client, "manager")
    r = await form_post(client, "/projects/p/settings/review", {
        "rows": "1", "code.0": "OK", "label.0": "Fine", "colour.0": "#2e7d32", "key.0": "u",
        "role.0.reviewer": "on", "code.1": "BAD", "label.1": "Bad", "colour.1": "#c62828", "key.1": "p",
        "role.1.senior_reviewer": "on", "artifacts": "motion\nnoise\n"})
    assert r.status_code == 303, r.text
    ok = await client.post("/api/v1/scan-decisions", headers=creds("reviewer"),
                           json={"series": series_uid, "decision": "OK", "artifacts": {"present": ["noise"]}})
    assert ok.status_code == 201, ok.text
    assert (await client.post("/api/v1/scan-decisions", headers=creds("reviewer"),
                              json={"series": series_uid, "decision": "BAD"})).status_code == 403
    assert (await client.post("/api/v1/scan-decisions", headers=creds("reviewer"),
                              json={"series": series_uid, "decision": "U"})).status_code == 400
    bad = await form_post(client, "/projects/p/settings/review", {"rows": "0", "code.0": "A B", "artifacts": ""})
    assert bad.status_code == 400


async def test_queue_walks_what_needs_my_tier(client, series_uid, tmp_path):
    await login(client, "reviewer")
    r = await client.get("/projects/p/queue")
    assert r.status_code == 303 and r.headers["location"] == f"/projects/p/series/{series_uid}?queue=1"
    await client.post("/api/v1/scan-decisions", headers=creds("reviewer"), json={"series": series_uid, "decision": "Q?"})
    r = await client.get("/projects/p/queue")
    assert r.headers["location"] == "/projects/p"  # nothing left for a reviewer
    client.cookies.clear()
    await login(client, "senior_reviewer")
    r = await client.get("/projects/p/queue")
    assert r.headers["location"].startswith(f"/projects/p/series/{series_uid}")
    page = await client.get("/projects/p/dashboard")
    assert page.status_code == 200 and 'data-status="needs_senior_review">1<' in page.text


async def test_undo_over_the_api_is_the_makers_own_latest_within_the_window(client, series_uid):
    """POST /api/v1/scan-decisions/{id}/undo: the maker's latest decision, within the window; status goes back."""
    import datetime as dt

    from portal.review import decisions as decisions_mod

    first = (await client.post("/api/v1/scan-decisions", headers=creds("reviewer"),
                               json={"series": series_uid, "decision": "Q?"})).json()
    second = (await client.post("/api/v1/scan-decisions", headers=creds("senior_reviewer"),
                                json={"series": series_uid, "decision": "UN"})).json()
    status = lambda: Series.objects().get(Series.series_instance_uid == series_uid)  # noqa: E731
    assert (await status()).review_status == "complete"
    r = await client.post(f"/api/v1/scan-decisions/{first['id']}/undo", headers=creds("reviewer"))
    assert r.status_code == 409 and r.json()["suberror"] == "not_latest_decision"
    r = await client.post(f"/api/v1/scan-decisions/{second['id']}/undo", headers=creds("reviewer"))
    assert r.status_code == 403 and r.json()["suberror"] == "not_your_decision"
    r = await client.post(f"/api/v1/scan-decisions/{second['id']}/undo", headers=creds("senior_reviewer"))
    assert r.status_code == 200, r.text
    assert r.json()["undone"]["decision"] == "UN" and r.json()["review_status"] == "needs_senior_review"
    assert [d["decision"] for d in (await client.get(f"/api/v1/scan-decisions?series={series_uid}",
                                                     headers=creds("reviewer"))).json()] == ["Q?"]
    # Too late: older than the window.
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=decisions_mod.UNDO_SECONDS + 5)
    await Decision.update({Decision.created_at: old}).where(Decision.id == first["id"])
    r = await client.post(f"/api/v1/scan-decisions/{first['id']}/undo", headers=creds("reviewer"))
    assert r.status_code == 409 and r.json()["suberror"] == "undo_too_late"
    r = await client.post("/api/v1/scan-decisions/999999/undo", headers=creds("reviewer"))
    assert r.status_code == 404
    r = await client.post(f"/api/v1/scan-decisions/{first['id']}/undo", headers=creds("admin", "wrong"))
    assert r.status_code == 401
