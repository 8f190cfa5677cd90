"""The studies table's search reads an indexed text per study (patient ID and name, accession, description,
the series' descriptions) that triggers keep true through every write: ingest, edits of the patient, the
study or a series, deletes; the migration back-fills it; one project never finds another's studies."""

from __future__ import annotations

import importlib

import pydicom
import pytest

from portal.archive import browse, queries
from portal.dicom import samples
from portal.tables import Patient, Series, Study
from tests.helpers import creds, make_project

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(params=["per-study", "trigram index", "common word"])
async def projects_ab(app, request, monkeypatch):
    # The ways a search runs on SQLite (a small project checks its own studies; a big one counts from the
    # index, then pages through the index's matches or, when very many match, walks the sort's order checking
    # each study's text); on PostgreSQL the planner chooses, so every param runs the same query there.
    if request.param != "per-study":
        monkeypatch.setattr(browse, "SMALL_PROJECT", 0)
    if request.param == "common word":
        monkeypatch.setattr(browse, "SQLITE_WALK_FROM", 0)
    a = await make_project("finda", {"rev": "reviewer"})
    b = await make_project("findb", {"rev": "reviewer"})
    return a, b


async def _upload(client, tmp_path, project: str, patient: str, n_series: int = 1) -> str:
    study_uid = pydicom.uid.generate_uid()
    for k in range(n_series):
        f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / f"{project}-{patient}-{k}.dcm",
                            study_uid=study_uid, patient_id=patient)
        with open(f, "rb") as fh:
            r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), data={"Project": project},
                                  files={"file": (f.name, fh)})
        assert r.status_code == 200, r.text
    return study_uid


async def _found(project, q: str) -> set[str]:
    page = await browse.search_studies(project, browse.StudyQuery(q=q))
    assert page.total == len(page.rows)
    return {r["study_instance_uid"] for r in page.rows}


async def test_search_follows_every_write(client, tmp_path, projects_ab):
    a, b = projects_ab
    one = await _upload(client, tmp_path, "finda", "FIND-ALPHA-001", n_series=2)
    two = await _upload(client, tmp_path, "finda", "FIND-BETA-002")
    other = await _upload(client, tmp_path, "findb", "FIND-ALPHA-009")

    assert await _found(a, "alpha") == {one}  # case-insensitive; project B's ALPHA is not A's
    assert await _found(b, "ALPHA") == {other}
    assert await _found(a, "find-") == {one, two}
    assert await _found(a, "001") == {one}  # three characters: the trigram index
    assert await _found(a, "02") == {two}  # two: by scan, the same answer
    assert await _found(a, "nothing-like-this") == set()

    study = await Study.objects().get(Study.study_instance_uid == one)
    await Study.update({Study.accession_number: "ACC-77321", Study.description: "Thorax Low Dose"}).where(
        Study.id == study.id)
    assert await _found(a, "77321") == {one}
    assert await _found(a, "low dose") == {one}

    await Patient.update({Patient.patient_name: "MÜLLER^Anna"}).where(Patient.id == study.patient)
    assert await _found(a, "anna") == {one}
    # Case folds beyond ASCII, as a site's names need (SQLite's own lower() kept "mÜller").
    assert await _found(a, "müller") == {one}
    assert await _found(a, "Müller^anna") == {one}

    series = await Series.objects().where(Series.study == study.id).order_by(Series.id)
    await Series.update({Series.description: "FMRI resting state"}).where(Series.id == series[0].id)
    assert await _found(a, "fmri") == {one}
    # A field's end and the next one's start never make a match together.
    assert await _found(a, "dose" + "fmri") == set()

    # The series moves to the other study of the patient's project: the text follows it.
    second = await Study.objects().get(Study.study_instance_uid == two)
    await Series.update({Series.study: second.id}).where(Series.id == series[0].id)
    assert await _found(a, "resting") == {two}

    await queries.delete_series(await Series.objects().get(Series.id == series[0].id))
    assert await _found(a, "resting") == set()
    await queries.delete_study(await Study.objects().get(Study.id == study.id))
    assert await _found(a, "alpha") == set()
    assert await _found(b, "alpha") == {other}


async def test_search_is_back_filled_by_its_migration(client, tmp_path, projects_ab):
    a, _ = projects_ab
    one = await _upload(client, tmp_path, "finda", "FILL-ME-1")
    if Study._meta.db.engine_type == "postgres":
        await Study.raw("UPDATE lb_study SET search_text = ''")
    else:
        await Study.raw("DELETE FROM lb_study_text")
    assert await _found(a, "fill-me") == set()
    migration = importlib.import_module("migrations.portal.portal_2026_12_03t16_40_00_000000")
    await (await migration.forwards()).run()  # idempotent: the index and triggers if missing, then the back-fill
    assert await _found(a, "fill-me") == {one}


async def test_search_text_kept_before_unicode_folding_is_rewritten(client, tmp_path, projects_ab):
    a, _ = projects_ab
    one = await _upload(client, tmp_path, "finda", "ÅSA-ÖRN-1")
    if Study._meta.db.engine_type == "sqlite":  # as SQLite's own ASCII-only lower() had kept it
        await Study.raw("UPDATE lb_study_text SET search_text = 'Åsa-Örn-1'")
        assert await _found(a, "åsa-örn") == set()
    migration = importlib.import_module("migrations.portal.portal_2026_12_05t08_10_00_000000")
    await (await migration.forwards()).run()
    assert await _found(a, "åsa-örn") == {one}
    assert await _found(a, "ÅSA-ÖRN") == {one}
