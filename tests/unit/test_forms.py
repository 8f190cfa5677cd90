"""Report forms without a database: definitions, validation, visible_if, formatting, the builder's draft, built-ins."""

import copy

import pytest

from portal.errors import Conflict, Invalid
from portal.forms import check_definition, format_entry, validate_entry
from portal.forms import draft as drafts
from portal.forms.builtin import BUILTIN_FORMS, CXR_TB_SCREENING, MRI_QC
from portal.forms.webform import entry_from_post, post_from_entry

CXR = check_definition(CXR_TB_SCREENING)
MRI = check_definition(MRI_QC)

GOOD_CXR = {"projection": "PA", "image_quality": "Good", "abnormal": True, "findings": ["Cavitation", "Nodules"],
            "largest_cavity": 22, "affected_zones": ["Right upper"], "tb_likelihood": 85,
            "recommendation": "Sputum test (Xpert MTB/RIF)", "comments": "Thick-walled cavity.\nCompare with old films."}


def field(name, type, **kw):
    return {"name": name, "type": type, "label": kw.pop("label", name.title()), **kw}


def form(*fields):
    return check_definition({"name": "f", "title": "F", "fields": list(fields)})


def errors_of(definition, entry) -> dict:
    with pytest.raises(Invalid) as exc:
        validate_entry(definition, entry)
    assert exc.value.suberror == "invalid_form_submission"
    return exc.value.fields


# --- built-ins --------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", BUILTIN_FORMS, ids=lambda r: r["name"])
def test_builtin_forms_are_valid_and_canonical(raw):
    definition = check_definition(raw)
    assert definition == check_definition(definition)  # canonical form is a fixed point
    assert all(set(f) == {"name", "type", "label", "required", "help", "options", "min", "max", "step", "unit",
                          "visible_if"} for f in definition["fields"])


def test_builtin_content_is_what_a_clinic_expects():
    by_name = {f["name"]: f for f in CXR["fields"]}
    assert {"Cavitation", "Consolidation", "Nodules", "Pleural effusion", "Miliary pattern", "Fibrosis"} <= set(
        by_name["findings"]["options"])
    assert by_name["findings"]["visible_if"] == {"field": "abnormal", "equals": True}
    assert (by_name["tb_likelihood"]["min"], by_name["tb_likelihood"]["max"]) == (0, 100)
    mri = {f["name"]: f for f in MRI["fields"]}
    assert (mri["quality_score"]["min"], mri["quality_score"]["max"]) == (1, 5)
    assert {"sequence", "coverage_complete", "motion", "snr_adequate", "artifacts", "repeat_recommended",
            "notes"} <= set(mri)


# --- definitions ------------------------------------------------------------------------------


@pytest.mark.parametrize("fields,key,message", [
    ([field("Bad Name", "text")], "fields[0].name", "lowercase"),
    ([field("a", "text"), field("a", "number")], "fields[1].name", "used by another field"),
    ([field("a", "colour")], "fields[0].type", "choose one of"),
    ([field("a", "single_choice", options=["only"])], "fields[0].options", "at least 2"),
    ([field("a", "multiple_choice", options=["x", "X"])], "fields[0].options", "differ"),
    ([field("a", "text", options=["x", "y"])], "fields[0].options", "only choice fields"),
    ([field("a", "score", min=0)], "fields[0].max", "both min and max"),
    ([field("a", "number", min=5, max=1)], "fields[0].max", "greater than min"),
    ([field("a", "score", min=0, max=10, step=0)], "fields[0].step", "greater than 0"),
    ([field("a", "number", min="low")], "fields[0].min", "must be a number"),
    ([field("a", "text", label="")], "fields[0].label", "required"),
    ([field("a", "text", visible_if={"field": "b", "equals": "x"}), field("b", "text")],
     "fields[0].visible_if", "question above"),
    ([field("a", "yes_no"), field("b", "text", visible_if={"field": "a", "equals": "maybe"})],
     "fields[1].visible_if", "yes or no"),
    ([field("a", "single_choice", options=["x", "y"]), field("b", "text", visible_if={"field": "a", "equals": "z"})],
     "fields[1].visible_if", "not an option"),
    ([field("a", "text", visible_if={"field": "a"})], "fields[0].visible_if", "write"),
    ([field("a", "text", colour="red")], "fields[0]", "unknown key"),
    ([field("s", "section")], "fields", "at least one question"),
])
def test_bad_definitions_say_what_is_wrong(fields, key, message):
    with pytest.raises(Invalid) as exc:
        check_definition({"name": "f", "title": "F", "fields": fields})
    assert exc.value.suberror == "invalid_form_definition"
    assert message in exc.value.fields[key], exc.value.fields
    assert key in exc.value.detail


def test_form_name_and_title_are_checked():
    with pytest.raises(Invalid) as exc:
        check_definition({"name": "Has Spaces", "title": "", "fields": [field("a", "text")]})
    assert set(exc.value.fields) == {"name", "title"}


def test_visible_if_values_take_the_controllers_type():
    d = form(field("a", "yes_no"), field("b", "text", visible_if={"field": "a", "equals": "yes"}),
             field("c", "single_choice", options=["Left", "Right"]),
             field("d", "text", visible_if={"field": "c", "in": ["left", "RIGHT"]}),
             field("e", "number"), field("g", "text", visible_if={"field": "e", "equals": "3"}))
    conds = {f["name"]: f["visible_if"] for f in d["fields"]}
    assert conds["b"] == {"field": "a", "equals": True}
    assert conds["d"] == {"field": "c", "in": ["Left", "Right"]}
    assert conds["g"] == {"field": "e", "equals": 3}


# --- entries ----------------------------------------------------------------------------------


def test_a_good_entry_is_cleaned_to_canonical_values():
    entry = {**GOOD_CXR, "projection": "pa", "findings": ["nodules", "Cavitation", "nodules"], "tb_likelihood": "85"}
    cleaned = validate_entry(CXR, entry)
    assert cleaned["projection"] == "PA"
    assert cleaned["findings"] == ["Cavitation", "Nodules"]  # the form's order, once each
    assert cleaned["tb_likelihood"] == 85 and isinstance(cleaned["tb_likelihood"], int)


def test_every_problem_is_named_by_its_field():
    errors = errors_of(CXR, {"projection": "Oblique", "abnormal": "maybe", "tb_likelihood": 150, "colour": "red",
                             "image": "a heading", "comments": 12})
    assert errors == {
        "colour": "is not a field of this form", "image": "is a section heading and takes no value",
        "projection": "choose one of: PA, AP, Lateral, Other", "image_quality": "required",
        "abnormal": "must be yes or no (true or false)", "tb_likelihood": "must be at most 100",
        "recommendation": "required", "comments": "must be text"}


@pytest.mark.parametrize("f,value,message", [
    (field("n", "number", min=0, max=10, unit="mm"), -1, "must be at least 0 mm"),
    (field("n", "number", min=0, max=10, unit="mm"), 11, "must be at most 10 mm"),
    (field("n", "number"), "ten", "must be a number"),
    (field("n", "number"), True, "must be a number"),
    (field("n", "number"), float("nan"), "must be a number"),
    (field("n", "score", min=1, max=5), 2.5, "steps of 1 from 1"),
    (field("n", "score", min=0, max=1, step=0.25), 0.3, "steps of 0.25"),
    (field("n", "date"), "22/11/2026", "YYYY-MM-DD"),
    (field("n", "date"), "2026-02-30", "YYYY-MM-DD"),
    (field("n", "text"), "two\nlines", "single line"),
    (field("n", "text"), "x" * 1001, "at most 1000"),
    (field("n", "multiple_choice", options=["a", "b"]), "a", "list of options"),
    (field("n", "multiple_choice", options=["a", "b"]), ["a", "c"], "'c' is not one of"),
    (field("n", "yes_no"), 1, "yes or no"),
])
def test_types_and_ranges_are_checked(f, value, message):
    assert message in errors_of(form(f), {"n": value})["n"]


@pytest.mark.parametrize("f,value,cleaned", [
    (field("n", "score", min=0, max=1, step=0.25), "0.75", 0.75),
    (field("n", "number"), "12.0", 12),
    (field("n", "date"), " 2026-11-22 ", "2026-11-22"),
    (field("n", "yes_no"), "No", False),
    (field("n", "long_text"), "a\r\nb ", "a\nb"),
])
def test_values_from_browsers_and_scripts_are_accepted(f, value, cleaned):
    assert validate_entry(form(f), {"n": value}) == {"n": cleaned}


def test_blank_optional_answers_are_left_out():
    assert validate_entry(form(field("a", "text"), field("b", "multiple_choice", options=["x"])),
                          {"a": "  ", "b": []}) == {}


def test_hidden_questions_are_not_required_and_their_answers_are_dropped():
    normal = {"projection": "PA", "image_quality": "Good", "abnormal": False, "tb_likelihood": 5,
              "recommendation": "No further action"}
    # findings is required, but hidden while abnormal is "no"; answers sent anyway are dropped.
    assert validate_entry(CXR, {**normal, "findings": ["Nodules"], "largest_cavity": 4}) == normal
    # Shown (abnormal: yes) it is required.
    assert errors_of(CXR, {**normal, "abnormal": True}) == {"findings": "required"}
    # A chain: other_finding shows only when findings includes Other, which shows only when abnormal.
    assert errors_of(CXR, {**normal, "abnormal": True, "findings": ["Other"]}) == {"other_finding": "required"}
    cleaned = validate_entry(CXR, {**normal, "abnormal": True, "findings": ["Other"], "other_finding": "Bullae"})
    assert cleaned["other_finding"] == "Bullae"


def test_visible_if_in_a_list_and_on_yes_no():
    mri = {"sequence": "FLAIR", "coverage_complete": True, "motion": "Severe", "snr_adequate": True,
           "quality_score": 1, "repeat_recommended": True}
    assert errors_of(MRI, mri) == {"repeat_reason": "required"}
    assert "repeat_reason" not in validate_entry(MRI, {**mri, "repeat_recommended": False, "repeat_reason": "x"})
    d = form(field("a", "single_choice", options=["x", "y", "z"]),
             field("b", "text", required=True, visible_if={"field": "a", "in": ["x", "y"]}))
    assert errors_of(d, {"a": "y"}) == {"b": "required"}
    assert validate_entry(d, {"a": "z"}) == {"a": "z"}


def test_an_entry_must_be_an_object():
    assert "FormSubmission" in errors_of(CXR, ["not", "an", "object"])


# --- formatting -------------------------------------------------------------------------------


def test_entry_formatted_reads_like_a_report():
    text = format_entry(CXR, validate_entry(CXR, GOOD_CXR))
    assert text == (
        "Image\n"
        "  Projection: PA\n"
        "  Image quality: Good\n"
        "Findings\n"
        "  Abnormal findings present: Yes\n"
        "  Findings: Cavitation, Nodules\n"
        "  Largest cavity diameter: 22 mm\n"
        "  Affected lung zones: Right upper\n"
        "Assessment\n"
        "  TB likelihood: 85 (0–100)\n"
        "  Recommendation: Sputum test (Xpert MTB/RIF)\n"
        "  Comments: Thick-walled cavity.\n"
        "    Compare with old films.")


def test_formatting_leaves_out_empty_sections_and_works_without_sections():
    d = form(field("a", "text"), {"name": "s", "type": "section", "label": "Later"}, field("b", "text"))
    assert format_entry(d, {"a": "x"}) == "A: x"


# --- the builder's draft ----------------------------------------------------------------------


def test_a_definition_survives_the_round_trip_through_the_builder():
    for definition in (CXR, MRI):
        draft = drafts.from_definition(definition)
        assert check_definition(drafts.to_definition(definition["name"], draft)) == {
            k: definition[k] for k in ("name", "title", "description", "fields")}


def test_draft_from_a_post_and_its_operations():
    post = {"title": ["T"], "description": [""], "field_count": ["2"],
            "fields-0-label": ["Patient position"], "fields-0-name": [""], "fields-0-type": ["single_choice"],
            "fields-0-options": ["Supine\r\nProne\r\n"], "fields-0-required": ["1"],
            "fields-1-label": ["Why prone"], "fields-1-name": [""], "fields-1-type": ["text"],
            "fields-1-vif_field": ["patient_position"], "fields-1-vif_values": ["Prone"]}
    draft = drafts.from_post(post)
    assert [f["name"] for f in draft["fields"]] == ["patient_position", "why_prone"]  # named after their labels
    definition = check_definition(drafts.to_definition("t", draft))
    assert definition["fields"][0]["options"] == ["Supine", "Prone"] and definition["fields"][0]["required"]
    assert definition["fields"][1]["visible_if"] == {"field": "patient_position", "equals": "Prone"}

    added = drafts.apply(draft, "add", "score")
    assert added["fields"][-1]["type"] == "score" and len(added["fields"]) == 3
    moved = drafts.apply(added, "up:2")
    assert [f["type"] for f in moved["fields"]] == ["single_choice", "score", "text"]
    assert drafts.apply(moved, "down:2") == moved  # the last one cannot go down
    deleted = drafts.apply(draft, "delete:0")
    assert deleted["fields"][0]["vif_field"] == ""  # a condition on a deleted question goes with it


def test_moving_a_field_above_its_condition_is_an_error_in_the_builder():
    draft = drafts.apply(drafts.from_definition(MRI), "up:10")  # repeat_reason above repeat_recommended
    with pytest.raises(Invalid) as exc:
        check_definition(drafts.to_definition("mri-qc", draft))
    assert "fields[9].visible_if" in exc.value.fields


def test_browser_posts_become_entries_and_back():
    post = {"projection": ["PA"], "abnormal": ["yes"], "findings": ["Nodules", "Fibrosis"], "tb_likelihood": ["40"],
            "comments": [""]}
    entry = entry_from_post(CXR, post)
    assert entry == {"projection": "PA", "abnormal": "yes", "findings": ["Nodules", "Fibrosis"],
                     "tb_likelihood": "40", "comments": ""}
    cleaned = validate_entry(CXR, {**entry, "image_quality": "Good", "recommendation": "Clinical review"})
    assert post_from_entry(CXR, cleaned)["abnormal"] == ["yes"]
    assert post_from_entry(CXR, cleaned)["tb_likelihood"] == ["40"]


def test_checking_never_changes_what_it_was_given():
    raw = copy.deepcopy(CXR_TB_SCREENING)
    check_definition(raw)
    assert raw == CXR_TB_SCREENING


# --- versions and built-ins in the database ---------------------------------------------------


async def test_saving_a_changed_definition_creates_the_next_version(app):
    from portal import forms
    from tests.helpers import make_project, make_user

    await forms.ensure_builtin_forms()
    await forms.ensure_builtin_forms()  # idempotent
    assert [v["version"] for v in await forms.versions("mri-qc")] == [1]
    project = await make_project("v")
    await forms.assign_builtin_forms(project)
    await forms.assign_builtin_forms(project)
    assert [f["name"] for f in await forms.forms_of(project)] == ["cxr-tb-screening", "mri-qc"]

    admin = await make_user("root", admin=True)
    v1 = await forms.latest("mri-qc")
    changed = {**forms.public(v1), "title": "MRI QC (site protocol)"}
    saved, created = await forms.save_definition(project, changed, by=admin, base_version=1)
    assert created and saved["version"] == 2 and saved["created_by"] == "root"
    assert (await forms.version("mri-qc", 1))["title"] == "MRI quality control"  # never mutated
    same, created = await forms.save_definition(project, changed, by=admin)
    assert not created and same["version"] == 2
    assert (await forms.forms_of(project))[1]["version"] == 2  # a project shows the newest version
    with pytest.raises(Conflict) as exc:
        await forms.save_definition(project, {**changed, "title": "again"}, by=admin, base_version=1)
    assert exc.value.suberror == "stale_version"
