"""Report forms over HTTP: the forms API, the CAD4TB-style reporting commands with their errors, and the portal panel."""

import json

import pytest

from portal import forms
from portal.dicom import samples
from portal.forms import applicability
from portal.tables import AuditEvent, FormSubmission
from tests.helpers import creds, form_post, login, make_project, make_user

Q = {"Project": "p", "Archive": "default"}
ADD = "/api/v1/patient/study/series/forms/add/"
LIST = "/api/v1/patient/study/series/forms/list/"
CXR_OK = {"projection": "PA", "image_quality": "Adequate", "abnormal": True, "findings": ["Consolidation"],
          "tb_likelihood": 70, "recommendation": "Clinical review"}


@pytest.fixture
async def project(app):
    p = await make_project("p", {"rev": "reviewer", "view": "viewer", "boss": "manager"})
    await forms.assign_builtin_forms(p)
    # The fixture's series is a CT; let both built-in forms apply to it (test_form_applicability.py tests the rules).
    for name in ("cxr-tb-screening", "mri-qc"):
        await applicability.set_rule(p, name, {})
    return p


@pytest.fixture
async def series(client, project, tmp_path) -> dict:
    """One uploaded series; the CAD4TB parameters that locate it."""
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 1, patient_id="PAT-F")
    with open(f, "rb") as fh:
        r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), data=Q,
                              files={"file": (f.name, fh, "application/dicom")})
    assert r.status_code == 200, r.text
    body = r.json()
    return {**Q, "PatientID": "PAT-F", "StudyInstanceUID": body["StudyInstanceUID"],
            "SeriesInstanceUID": body["SeriesInstanceUID"]}


async def add(client, series, entry, user="rev", form="cxr-tb-screening", **kw):
    return await client.post(ADD, headers=creds(user), data={**series, "FormName": form,
                                                             "FormSubmission": json.dumps(entry)}, **kw)


# --- JSON: the forms of a project -------------------------------------------------------------


async def test_list_and_get_forms(client, project):
    r = await client.get("/api/v1/forms", params={"Project": "p"}, headers=creds("view"))
    assert r.status_code == 200, r.text
    assert [(f["name"], f["version"]) for f in r.json()] == [("cxr-tb-screening", 1), ("mri-qc", 1)]
    assert r.json()[0]["title"] == "Chest X-ray TB screening"

    r = await client.get("/api/v1/forms/mri-qc", params={"Project": "p"}, headers=creds("view"))
    body = r.json()
    assert set(body) == {"name", "version", "title", "description", "fields"}
    score = next(f for f in body["fields"] if f["name"] == "quality_score")
    assert score == {"name": "quality_score", "type": "score", "label": "Overall quality", "required": True,
                     "help": score["help"], "options": None, "min": 1, "max": 5, "step": 1, "unit": None,
                     "visible_if": None}
    reason = next(f for f in body["fields"] if f["name"] == "repeat_reason")
    assert reason["visible_if"] == {"field": "repeat_recommended", "equals": True}

    # The caller's only project is the default; a name in any case or the title finds the form.
    r = await client.get("/api/v1/forms/MRI-QC", headers=creds("view"))
    assert r.status_code == 200 and r.json()["name"] == "mri-qc"
    r = await client.get("/api/v1/forms/MRI quality control", params={"Project": "p"}, headers=creds("view"))
    assert r.json()["name"] == "mri-qc"


async def test_forms_api_errors(client, project):
    r = await client.get("/api/v1/forms/nope", params={"Project": "p"}, headers=creds("view"))
    assert r.status_code == 404 and r.json()["suberror"] == "form_not_found"
    assert "cxr-tb-screening" in r.json()["detail"]
    r = await client.get("/api/v1/forms/mri-qc", params={"Project": "p", "Version": "7"}, headers=creds("view"))
    assert r.status_code == 404
    await make_user("outsider")
    r = await client.get("/api/v1/forms", params={"Project": "p"}, headers=creds("outsider"))
    assert r.status_code == 404 and r.json()["suberror"] == "project_not_found"
    assert (await client.get("/api/v1/forms", params={"Project": "p"})).status_code == 401


async def test_a_client_builds_a_valid_submission_from_the_definition(client, project, series):
    """What the issue promises: the definition says enough to fill the form without reading docs."""
    definition = (await client.get("/api/v1/forms/mri-qc", params={"Project": "p"}, headers=creds("rev"))).json()
    entry = {}
    for f in definition["fields"]:
        if f["type"] == "section" or not f["required"] or f["visible_if"]:
            continue
        entry[f["name"]] = {"single_choice": (f["options"] or [""])[0], "yes_no": False,
                            "score": f["min"]}.get(f["type"], "x")
    r = await add(client, series, entry, form="mri-qc")
    assert r.status_code == 200, r.text


# --- CAD4TB-style: add and list ---------------------------------------------------------------


async def test_add_then_list(client, project, series):
    r = await add(client, series, {**CXR_OK, "projection": "pa"})
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["form"] == "cxr-tb-screening" and created["form_version"] == 1
    assert created["user"] == "rev@example.org" and created["series"] == series["SeriesInstanceUID"]
    assert created["entry"]["projection"] == "PA"
    assert "Findings: Consolidation" in created["entry_formatted"]
    assert created["created"].endswith("Z")

    # JSON body with FormSubmission as an object works too; so does a form picked by its title.
    r = await client.post(ADD, headers=creds("rev"), json={**series, "FormName": "Chest X-ray TB screening",
                                                           "FormSubmission": {**CXR_OK, "tb_likelihood": 20}})
    assert r.status_code == 200, r.text

    r = await client.get(LIST, params=series, headers=creds("view"))
    assert r.status_code == 200
    listed = r.json()
    assert [s["entry"]["tb_likelihood"] for s in listed] == [20, 70]  # newest first
    assert set(listed[0]) >= {"id", "entry", "entry_formatted", "user", "series", "form"}
    assert listed[1]["id"] == created["id"]
    assert await AuditEvent.count().where(AuditEvent.action == "form_submitted") == 2


async def test_validation_error_names_the_wrong_fields(client, project, series):
    r = await add(client, series, {**CXR_OK, "tb_likelihood": 150, "findings": ["Spots"]})
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "invalid_post_value" and body["suberror"] == "invalid_form_submission"
    assert "tb_likelihood: must be at most 100" in body["detail"] and "findings" in body["detail"]
    assert set(body["fields"]) == {"tb_likelihood", "findings"}

    r = await client.post(ADD, headers=creds("rev"), data={**series, "FormName": "mri-qc", "FormSubmission": "{oops"})
    assert r.status_code == 400 and r.json()["suberror"] == "invalid_json"
    r = await client.post(ADD, headers=creds("rev"), data={**series, "FormName": "mri-qc"})
    assert r.status_code == 400 and r.json()["fields"] == {"FormSubmission": "required"}
    r = await add(client, series, {"unknown_field": 1})
    assert r.status_code == 400 and r.json()["fields"]["unknown_field"] == "is not a field of this form"
    assert await FormSubmission.count() == 0


async def test_not_found_errors(client, project, series):
    r = await add(client, series, CXR_OK, form="no-such-form")
    assert r.status_code == 404
    assert (r.json()["error"], r.json()["suberror"]) == ("object_not_found", "form_not_found")
    for params in ({**series, "SeriesInstanceUID": "1.2.3.999"}, {**series, "StudyInstanceUID": "1.2.3.998"}):
        r = await add(client, params, CXR_OK)
        assert r.status_code == 404 and r.json()["suberror"] == "series_not_found"
        r = await client.get(LIST, params=params, headers=creds("view"))
        assert r.status_code == 404 and r.json()["suberror"] == "series_not_found"
    r = await client.get(ADD, params=series, headers=creds("rev"))
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


async def test_multiple_objects_found_when_a_name_is_ambiguous(client, project, series):
    # Two forms that share a title: the title alone cannot say which one is meant.
    for name in ("cxr-site-a", "cxr-site-b"):
        await forms.save_definition(project, {**forms.public(await forms.latest("cxr-tb-screening")), "name": name},
                                    by=await make_user(f"maker-{name}", admin=True))
    r = await add(client, series, CXR_OK, form="Chest X-ray TB screening")
    assert r.status_code == 409
    assert (r.json()["error"], r.json()["suberror"]) == ("multiple_objects_found", "multiple_forms_found")
    assert "cxr-site-a" in r.json()["detail"]
    r = await add(client, series, CXR_OK, form="cxr-site-a")  # the exact name always works
    assert r.status_code == 200 and r.json()["form"] == "cxr-site-a"


async def test_who_may_add_and_list(client, project, series):
    r = await add(client, series, CXR_OK, user="view")
    assert r.status_code == 403 and r.json()["error"] == "api_call_not_allowed"
    await make_user("outsider")
    r = await add(client, series, CXR_OK, user="outsider")
    assert r.status_code == 404 and r.json()["suberror"] == "project_not_found"
    r = await client.get(LIST, params=series, headers=creds("outsider"))
    assert r.status_code == 404
    assert (await add(client, series, CXR_OK, user="boss")).status_code == 200
    assert await FormSubmission.count() == 1


async def test_a_submission_keeps_its_version_after_an_edit(client, project, series):
    first = (await add(client, series, CXR_OK)).json()
    definition = forms.public(await forms.latest("cxr-tb-screening"))
    definition["fields"].append({"name": "hiv_status", "type": "single_choice", "label": "HIV status",
                                 "options": ["Positive", "Negative", "Unknown"]})
    saved, created = await forms.save_definition(project, definition, by=await make_user("root", admin=True))
    assert created and saved["version"] == 2
    second = (await add(client, series, {**CXR_OK, "hiv_status": "unknown"})).json()
    assert second["form_version"] == 2 and "HIV status: Unknown" in second["entry_formatted"]
    listed = (await client.get(LIST, params=series, headers=creds("rev"))).json()
    assert [(s["id"], s["form_version"]) for s in listed] == [(second["id"], 2), (first["id"], 1)]
    r = await client.get("/api/v1/forms/cxr-tb-screening", params={"Project": "p", "Version": "1"},
                         headers=creds("rev"))
    assert r.json()["version"] == 1 and "hiv_status" not in [f["name"] for f in r.json()["fields"]]


# --- portal: the series' forms panel ----------------------------------------------------------


def panel_url(series):
    return f"/projects/p/series/{series['SeriesInstanceUID']}/forms"


async def test_panel_renders_whole_or_as_a_partial(client, project, series):
    await login(client, "rev")
    r = await client.get(panel_url(series))
    assert r.status_code == 200 and "<html" in r.text
    assert 'id="form-cxr-tb-screening"' in r.text and 'id="form-mri-qc"' in r.text
    r = await client.get(panel_url(series), headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<html" not in r.text and 'id="report-forms"' in r.text


async def test_portal_submit_shows_inline_errors_then_saves(client, project, series):
    await login(client, "rev")
    url = panel_url(series) + "/cxr-tb-screening"
    htmx = {"HX-Request": "true"}
    r = await form_post(client, url, {"projection": "PA", "abnormal": "yes", "tb_likelihood": "150"}, headers=htmx)
    assert r.status_code == 400
    assert "Must be at most 100" in r.text and 'value="150"' in r.text  # the value is kept
    assert r.text.count('class="lb-error"') == 4  # image_quality, findings, tb_likelihood, recommendation
    assert "<html" not in r.text and 'id="form-cxr-tb-screening"' in r.text

    data = {"projection": "PA", "image_quality": "Good", "abnormal": "no", "tb_likelihood": "10",
            "recommendation": "No further action", "findings": "Nodules"}  # findings is hidden: dropped
    r = await form_post(client, url, data, headers=htmx)
    assert r.status_code == 200, r.text
    assert "Saved at" in r.text and "Abnormal findings present: No" in r.text and "Nodules" not in r.text.split(
        "lb-history")[1]
    assert (await FormSubmission.count()) == 1

    # An edit is a new submission; both stay.
    r = await form_post(client, url, {**data, "tb_likelihood": "15"}, headers=htmx)
    assert r.status_code == 200 and r.text.count('class="lb-submission"') == 2
    assert await AuditEvent.count().where(AuditEvent.action == "form_submitted") == 2

    # Without htmx: a redirect back to the panel on success, the whole page with 400 on error.
    r = await form_post(client, url, data)
    assert r.status_code == 303
    r = await form_post(client, url, {})
    assert r.status_code == 400 and "<html" in r.text and "Required" in r.text


async def test_viewer_sees_forms_read_only_and_cannot_submit(client, project, series):
    await add(client, series, CXR_OK)
    await login(client, "view")
    r = await client.get(panel_url(series))
    assert r.status_code == 200 and "Submit report" not in r.text and "can read reports" in r.text
    assert "Findings: Consolidation" in r.text
    r = await form_post(client, panel_url(series) + "/cxr-tb-screening", CXR_OK, headers={"HX-Request": "true"})
    assert r.status_code == 403


async def test_outsider_gets_404_on_the_panel(client, project, series):
    await make_user("outsider")
    await login(client, "outsider")
    assert (await client.get(panel_url(series))).status_code == 404


# --- portal: the builder ----------------------------------------------------------------------


async def test_builder_is_for_managers(client, project):
    await login(client, "rev")
    assert (await client.get("/projects/p/forms")).status_code == 403
    await login(client, "boss")
    r = await client.get("/projects/p/forms")
    assert r.status_code == 200 and "Chest X-ray TB screening" in r.text


async def test_builder_assigns_reorders_and_removes(client, project):
    await login(client, "boss")
    htmx = {"HX-Request": "true"}
    r = await form_post(client, "/projects/p/forms/mri-qc/move", {"direction": "up"}, headers=htmx)
    assert r.status_code == 200 and r.text.index("assigned-mri-qc") < r.text.index("assigned-cxr-tb-screening")
    assert [f["name"] for f in await forms.forms_of(project)] == ["mri-qc", "cxr-tb-screening"]
    r = await form_post(client, "/projects/p/forms/mri-qc/unassign", {}, headers=htmx)
    assert "Add MRI quality control" in r.text
    r = await form_post(client, "/projects/p/forms/mri-qc/assign", {}, headers=htmx)
    assert [f["name"] for f in await forms.forms_of(project)] == ["cxr-tb-screening", "mri-qc"]


def draft_post(definition_draft: dict, **extra) -> dict:
    data = {"title": definition_draft["title"], "description": definition_draft["description"],
            "field_count": str(len(definition_draft["fields"]))}
    for i, f in enumerate(definition_draft["fields"]):
        for key, value in f.items():
            if key == "required":
                if value:
                    data[f"fields-{i}-required"] = "1"
            elif key == "vif_values":
                if value:
                    data[f"fields-{i}-vif_values"] = value
            else:
                data[f"fields-{i}-{key}"] = value
    return {**data, **extra}


async def test_builder_edits_and_saves_a_new_version(client, project):
    from portal.forms import draft as drafts

    await login(client, "boss")
    htmx = {"HX-Request": "true"}
    r = await client.get("/projects/p/forms/mri-qc")
    assert r.status_code == 200 and "Save as version 2" in r.text
    draft = drafts.from_definition(await forms.latest("mri-qc"))
    r = await form_post(client, "/projects/p/forms/mri-qc/draft", draft_post(draft, op="add", new_type="number",
                                                                             base_version="1"), headers=htmx)
    assert r.status_code == 200 and 'id="bf-12"' in r.text and "A label is required" in r.text
    draft["fields"].append({**drafts.blank_field("number"), "label": "Slice thickness", "unit": "mm", "min": "0.5"})
    r = await form_post(client, "/projects/p/forms/mri-qc", draft_post(draft, base_version="1"), headers=htmx)
    assert r.status_code == 200 and r.headers.get("hx-redirect") == "/projects/p/forms/mri-qc"
    latest = await forms.latest("mri-qc")
    assert latest["version"] == 2 and latest["fields"][-1]["name"] == "slice_thickness"
    assert await AuditEvent.count().where(AuditEvent.action == "form_saved") == 1

    # Saving again from the old version is refused; an unchanged draft saves nothing.
    r = await form_post(client, "/projects/p/forms/mri-qc", draft_post(draft, base_version="1"), headers=htmx)
    assert r.status_code == 409 and "saved version 2" in r.text
    r = await form_post(client, "/projects/p/forms/mri-qc", draft_post(draft, base_version="2"), headers=htmx)
    assert r.status_code == 200 and "Nothing changed" in r.text

    # A broken draft comes back with its problems next to the fields.
    draft["fields"][-1]["min"] = "lots"
    r = await form_post(client, "/projects/p/forms/mri-qc", draft_post(draft, base_version="2"), headers=htmx)
    assert r.status_code == 400 and "Min must be a number" in r.text
    assert (await forms.latest("mri-qc"))["version"] == 2


async def test_a_shared_form_is_saved_under_a_new_name(client, project):
    """A manager of one project cannot change a form that projects they do not manage use too."""
    from portal.forms import draft as drafts

    other = await make_project("other", {"boss2": "manager"})
    await forms.assign_builtin_forms(other)
    await login(client, "boss")
    htmx = {"HX-Request": "true"}
    draft = drafts.from_definition(await forms.latest("cxr-tb-screening"))
    draft["title"] = "Chest X-ray TB screening (site A)"
    r = await form_post(client, "/projects/p/forms/cxr-tb-screening", draft_post(draft, base_version="1"),
                        headers=htmx)
    assert r.status_code == 403 and "also used by 1 other project" in r.text
    r = await form_post(client, "/projects/p/forms/cxr-tb-screening",
                        draft_post(draft, base_version="1", save_as="cxr-tb-site-a"), headers=htmx)
    assert r.headers.get("hx-redirect") == "/projects/p/forms/cxr-tb-site-a", r.text
    assert [f["name"] for f in await forms.forms_of(project)] == ["cxr-tb-site-a", "mri-qc"]
    assert [f["name"] for f in await forms.forms_of(other)] == ["cxr-tb-screening", "mri-qc"]
    assert (await forms.latest("cxr-tb-screening"))["version"] == 1


async def test_new_form_from_the_builder(client, project):
    from portal.forms import draft as drafts

    await login(client, "boss")
    r = await form_post(client, "/projects/p/forms", {"name": "mri-qc", "title": "x"})
    assert r.status_code == 400 and "exists already" in r.text
    r = await form_post(client, "/projects/p/forms", {"name": "ct-nodules", "title": "CT nodules"})
    assert r.status_code == 303 and r.headers["location"] == "/projects/p/forms/ct-nodules?title=CT+nodules"
    r = await client.get("/projects/p/forms/ct-nodules", params={"title": "CT nodules"})
    assert r.status_code == 200 and "New form" in r.text and 'value="CT nodules"' in r.text
    draft = {"title": "CT nodules", "description": "",
             "fields": [{**drafts.blank_field("number"), "label": "Largest nodule", "unit": "mm"}]}
    r = await form_post(client, "/projects/p/forms/ct-nodules", draft_post(draft, base_version="0"),
                        headers={"HX-Request": "true"})
    assert r.headers.get("hx-redirect") == "/projects/p/forms/ct-nodules", r.text
    assert [f["name"] for f in await forms.forms_of(project)] == ["cxr-tb-screening", "mri-qc", "ct-nodules"]
