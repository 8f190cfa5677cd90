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
