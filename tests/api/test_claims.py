"""Review claims (one reviewer per series at a time), undo of a decision, and decision keys that cannot collide."""

import datetime as dt
import re
from pathlib import Path

import pytest

from portal.dicom import samples
from portal.review.vocabulary import RESERVED_KEYS
from portal.tables import AuditEvent, Decision, ReviewClaim, Series
from tests.helpers import creds, form_post, login, make_project, make_user

MEMBERS = {"ann": "reviewer", "bob": "reviewer", "sue": "senior_reviewer", "max": "manager", "vic": "viewer"}


@pytest.fixture
async def uids(app, client, tmp_path):
    await make_project("p", MEMBERS)
    await make_user("admin", admin=True)
    out = []
    for i in range(2):
        f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / f"{i}.dcm", patient_id=f"C-{i}")
        with open(f, "rb") as fh:
            r = await client.post("/api/v1/instance/upload/", headers=creds("max"), data={"Project": "p"},
                                  files={"file": (f"{i}.dcm", fh)})
        out.append(r.json()["SeriesInstanceUID"])
    return out


async def claim(client, who, uid, **body):
    return await client.post("/api/v1/claims", headers=creds(who), json={"series": uid, **body})


async def test_one_reviewer_per_series_and_a_senior_takes_over(client, uids):
    uid = uids[0]
    r = await claim(client, "ann", uid)
    assert r.status_code == 201, r.text
    assert r.json()["claim"]["username"] == "ann" and r.json()["claim"]["mine"] is True
    assert r.json()["claim"]["expires"].endswith("Z")
    again = await claim(client, "ann", uid)  # renewal
    assert again.status_code == 201 and await ReviewClaim.count() == 1

    r = await claim(client, "bob", uid)
    assert r.status_code == 409 and r.json()["suberror"] == "claimed_by_other" and "ann" in r.json()["detail"]
    seen = (await client.get("/api/v1/claims", params={"series": uid}, headers=creds("vic"))).json()
    assert seen["claim"]["username"] == "ann" and seen["claim"]["mine"] is False
    assert (await claim(client, "vic", uid)).status_code == 403  # viewers do not review
    r = await claim(client, "bob", uid, take_over=True)
    assert r.status_code == 403 and r.json()["suberror"] == "take_over_not_allowed"

    r = await claim(client, "sue", uid, take_over=True)
    assert r.status_code == 201 and r.json()["claim"]["username"] == "sue"
    assert await AuditEvent.count().where(AuditEvent.action == "claim_taken_over") == 1
    # Ann's late release does not drop Sue's claim; Sue's does.
    assert (await client.delete("/api/v1/claims", params={"series": uid}, headers=creds("ann"))).status_code == 204
    assert (await client.get("/api/v1/claims", params={"series": uid}, headers=creds("ann"))).json()["claim"][
        "username"] == "sue"
    assert (await client.delete("/api/v1/claims", params={"series": uid}, headers=creds("sue"))).status_code == 204
    assert (await client.get("/api/v1/claims", params={"series": uid}, headers=creds("ann"))).json()["claim"] is None
    assert (await client.post("/api/v1/claims", headers=creds("ann"), json={"take_over": 1})).status_code == 400


async def test_a_lapsed_claim_is_anyones(client, uids):
    assert (await claim(client, "ann", uids[0])).status_code == 201
    await ReviewClaim.update({ReviewClaim.expires_at: dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)}
                             ).where(ReviewClaim.username == "ann")
    assert (await client.get("/api/v1/claims", params={"series": uids[0]}, headers=creds("bob"))).json()["claim"] is None
    r = await claim(client, "bob", uids[0])
    assert r.status_code == 201 and r.json()["claim"]["username"] == "bob"
    assert await ReviewClaim.count() == 1


async def test_queue_skips_series_claimed_by_others_and_deciding_releases(client, uids):
    await login(client, "ann")
    first = (await client.get("/projects/p/queue")).headers["location"]
    assert first.endswith("?queue=1")
    ann_uid = first.split("/series/")[1].split("?")[0]
    page = await client.get(first)
    assert 'id="claim-bar"' in page.text and "You are reviewing this series" in page.text
    client.cookies.clear()
    await login(client, "bob")
    bob_uid = (await client.get("/projects/p/queue")).headers["location"].split("/series/")[1].split("?")[0]
    assert {ann_uid, bob_uid} == set(uids)  # not the same case
    page = await client.get(f"/projects/p/series/{ann_uid}")
    assert "<strong>ann</strong> is reviewing this" in page.text and 'id="take-over"' not in page.text
    # Past his own, Bob's queue has nothing else for him: the other series is Ann's for now.
    r = await client.get(f"/projects/p/queue?after={bob_uid}")
    assert r.headers["location"] == "/projects/p"
    assert "1 being reviewed by others" in (await client.get("/projects/p")).text

    # Ann decides (portal): her claim goes, and Bob's page no longer says she is reviewing it.
    client.cookies.clear()
    await login(client, "ann")
    r = await form_post(client, f"/projects/p/series/{ann_uid}/decisions", {"code": "Q?"})
    assert r.status_code == 200, r.text
    assert await ReviewClaim.count().where(ReviewClaim.username == "ann") == 0
    # A senior sees Bob's claim with a take-over button, and takes it over in the portal.
    client.cookies.clear()
    await login(client, "sue")
    page = await client.get(f"/projects/p/series/{bob_uid}")
    assert "<strong>bob</strong> is reviewing this" in page.text and 'id="take-over"' in page.text
    bar = await form_post(client, f"/projects/p/series/{bob_uid}/claim", {"take_over": "1"})
    assert "You are reviewing this series" in bar.text
    r = await form_post(client, f"/projects/p/series/{bob_uid}/claim/release", {})
    assert r.status_code == 204 and await ReviewClaim.count() == 0


async def test_undo_takes_back_my_latest_decision_for_a_few_seconds(client, uids):
    uid = uids[0]
    await login(client, "ann")
    r = await form_post(client, f"/projects/p/series/{uid}/decisions",
                        {"code": "Q?", "location": '{"x": 1, "y": 2, "z": 3}'})
    assert "Recorded Q?" in r.text and "at (1.0, 2.0, 3.0) mm" in r.text
    decision_id = int(re.search(r"/decisions/(\d+)/undo", r.text).group(1))
    assert (await Series.objects().get(Series.series_instance_uid == uid)).review_status == "needs_senior_review"

    # Someone else cannot undo it.
    client.cookies.clear()
    await login(client, "bob")
    r = await form_post(client, f"/projects/p/series/{uid}/decisions/{decision_id}/undo", {})
    assert "Only the reviewer who made a decision" in r.text and await Decision.count() == 1

    client.cookies.clear()
    await login(client, "ann")
    r = await form_post(client, f"/projects/p/series/{uid}/decisions/{decision_id}/undo", {})
    assert "Undid Q?" in r.text and await Decision.count() == 0
    assert (await Series.objects().get(Series.series_instance_uid == uid)).review_status == "unreviewed"
    assert await AuditEvent.count().where(AuditEvent.action == "decision_undone") == 1

    # Too late: after the window the history stays as it is.
    r = await form_post(client, f"/projects/p/series/{uid}/decisions", {"code": "U"})
    late_id = int(re.search(r"/decisions/(\d+)/undo", r.text).group(1))
    await Decision.update({Decision.created_at: dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)}
                          ).where(Decision.id == late_id)
    r = await form_post(client, f"/projects/p/series/{uid}/decisions/{late_id}/undo", {})
    assert "only within" in r.text and await Decision.count() == 1
    assert (await Series.objects().get(Series.series_instance_uid == uid)).review_status == "complete"


@pytest.mark.parametrize("key", sorted(RESERVED_KEYS))
async def test_a_decision_key_the_viewer_uses_is_refused(client, uids, key):
    await login(client, "max")
    r = await form_post(client, "/projects/p/settings/review", {
        "rows": "0", "code.0": "OK", "label.0": "Fine", "colour.0": "#2e7d32", "key.0": key, "role.0.reviewer": "on",
        "artifacts": ""})
    assert r.status_code == 400
    assert f"the key &#39;{key}&#39; already means" in r.text or f"the key '{key}' already means" in r.text
    ok = await form_post(client, "/projects/p/settings/review", {
        "rows": "0", "code.0": "OK", "label.0": "Fine", "colour.0": "#2e7d32", "key.0": "k", "role.0.reviewer": "on",
        "artifacts": ""})
    assert ok.status_code == 303


def test_every_letter_the_series_page_uses_is_reserved():
    """The page's own shortcuts (series.js) and the undo key (review.js) must all be refused as decision keys."""
    static = Path(__file__).parents[2] / "portal" / "static" / "js"
    actions = re.search(r"const actions = \{(.*?)\};", (static / "series.js").read_text(), re.S).group(1)
    letters = set(re.findall(r"^\s*([a-z]):", actions, re.M)) | {"z"}
    assert letters and letters <= set(RESERVED_KEYS), letters - set(RESERVED_KEYS)
    assert 'key === "z"' in (static / "review.js").read_text()
