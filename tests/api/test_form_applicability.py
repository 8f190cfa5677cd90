"""Report forms apply by modality / body part / SOP class: defaults that fit for a new project, a manager's rule."""

import pydicom
import pytest

from portal.dicom import samples
from portal.forms import applicability
from portal.tables import AuditEvent
from tests.helpers import creds, form_post, login, make_project

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
async def series(app, client, tmp_path):
    """A CT (head), an MR and a chest CR in project p."""
    await make_project("p", {"rev": "reviewer", "boss": "manager"})
    out = {}
    for key, sample, modality, part in (("ct", "CT_small.dcm", "CT", "HEAD"), ("mr", "MR_small.dcm", "MR", ""),
                                        ("cr", "CT_small.dcm", "CR", "CHEST")):
        f = samples.restamp(samples.sample_path(sample), tmp_path / f"{key}.dcm", patient_id=f"A-{key}")
        ds = pydicom.dcmread(f)
        ds.Modality, ds.BodyPartExamined = modality, part
        ds.save_as(f)
        with open(f, "rb") as fh:
            r = await client.post("/api/v1/instance/upload/", headers=creds("boss"), data={"Project": "p"},
                                  files={"file": (f.name, fh)})
        out[key] = r.json()["SeriesInstanceUID"]
    return out


async def panel(client, uid):
    r = await client.get(f"/projects/p/series/{uid}/forms", headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text
    return r.text


async def test_a_new_project_shows_the_forms_that_fit(client, series):
    await login(client, "rev")
    head_ct = await panel(client, series["ct"])
    assert 'id="form-cxr-tb-screening"' not in head_ct and 'id="form-mri-qc"' not in head_ct
    assert "lb-req" not in head_ct  # no required questions on a head CT
    mr = await panel(client, series["mr"])
    assert 'id="form-mri-qc"' in mr and 'id="form-cxr-tb-screening"' not in mr
    cr = await panel(client, series["cr"])
    assert 'id="form-cxr-tb-screening"' in cr and 'id="form-mri-qc"' not in cr


async def test_a_manager_sets_where_a_form_applies(client, series):
    await login(client, "boss")
    table = await client.get("/projects/p/forms/applicability")
    assert table.status_code == 200 and "CR, DX · CHEST" in table.text
    r = await form_post(client, "/projects/p/forms/mri-qc/applies",
                        {"modalities": "mr, ct", "body_parts": "", "sop_classes": f"{CT_IMAGE} 1.2.840.10008.5.1.4.1.1.4"},
                        headers={"HX-Request": "true"})
    assert r.status_code == 200 and "mri-qc applies to CT, MR" in r.text
    assert await AuditEvent.count().where(AuditEvent.action == "project_settings_changed") == 1
    assert 'id="form-mri-qc"' in await panel(client, series["ct"])  # CT now, with the CT image SOP class
    r = await form_post(client, "/projects/p/forms/mri-qc/applies", {"modalities": "CT", "sop_classes": "1.2.3.4"})
    assert r.status_code == 200
    assert 'id="form-mri-qc"' not in await panel(client, series["ct"])  # the SOP class rules it out
    # Bad values are refused with the reason; an unknown form is 404; a reviewer may not change rules.
    bad = await form_post(client, "/projects/p/forms/mri-qc/applies", {"modalities": "C T!"})
    assert bad.status_code == 400 and "is not a DICOM modality" in bad.text
    bad = await form_post(client, "/projects/p/forms/mri-qc/applies", {"sop_classes": "1.2.x"})
    assert bad.status_code == 400 and "SOP Class UID" in bad.text
    assert (await form_post(client, "/projects/p/forms/nope/applies", {})).status_code == 404
    client.cookies.clear()
    await login(client, "rev")
    assert (await form_post(client, "/projects/p/forms/mri-qc/applies", {"modalities": ""})).status_code == 403


def test_rules():
    rule = applicability.check_rule({"modalities": "cr,DX", "body_parts": ["chest"]})
    assert rule == {"modalities": ["CR", "DX"], "body_parts": ["CHEST"], "sop_classes": []}
    assert applicability.applies(rule, "CR", "CHEST", set())
    assert applicability.applies(rule, "DX", "", set())  # an unrecorded body part does not rule a form out
    assert not applicability.applies(rule, "DX", "HAND", set())
    assert not applicability.applies(rule, "CT", "CHEST", set())
    assert applicability.applies(applicability.ANY, "XA", "HEART", {"1.2"})
    with pytest.raises(Exception):
        applicability.check_rule({"colour": "red"})
