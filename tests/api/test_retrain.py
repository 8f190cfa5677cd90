"""Retraining from reviewers: labels from decisions, a fine-tuning that beats the built-in model on
a synthetic label set is registered for that project only, too few labels fail with a reason."""

import asyncio

import pytest

from portal.archive import ingest
from portal.auth import accounts
from portal.inference import models, retrain
from portal.review import decisions
from portal.tables import RetrainRun, Series
from tests.helpers import form_post, labelled_series, login, make_project


def test_labels_come_from_decision_codes_and_known_artifacts():
    assert retrain.labels_of("U", {"ghosting_motion": 1, "lesions": 1, "inhomogeneity": 0}) == {
        "quality": 1, "motion": 1, "bias_field": 0}
    assert retrain.labels_of("UN", '{"swap_wraparound": -1}') == {"quality": 0}
    assert retrain.labels_of("Q?", {}) == {}


async def _labelled_project(tmp_path, n=24):
    p = await make_project("rt", {"boss": "manager", "view": "viewer"})
    boss = await accounts.get("boss")
    for uid, files, bad in labelled_series(tmp_path, n):
        for f in files:
            assert (await ingest.ingest_file(f, p)).status == "stored"
        series = await Series.objects().get(Series.series_instance_uid == uid)
        await decisions.record(p, series, boss, "UN" if bad else "U")
    return p


async def test_retraining_beats_the_builtin_model_and_serves_only_its_project(app, client, tmp_path, monkeypatch):
    from portal.ai import finetune
    from portal.tasks.inference import run_retrain

    monkeypatch.setattr(finetune, "EPOCHS", 10)
    p = await _labelled_project(tmp_path)
    await make_project("other")
    assert (await retrain.label_counts(p)) == {"quality": 24}

    # The manager's button queues a run (no consumer here: we run it as a worker would).
    await login(client, "boss")
    r = await form_post(client, "/projects/rt/ai/retrain", {}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and 'data-state="queued"' in r.text
    again = await form_post(client, "/projects/rt/ai/retrain", {}, headers={"HX-Request": "true"})
    assert again.status_code == 409  # one at a time
    run = await RetrainRun.select().first()
    await asyncio.to_thread(run_retrain, run["id"])

    run = await retrain.get(run["id"])
    assert run["state"] == "done", run["error"]
    c = run["comparison"]
    assert c["better"] and run["registered"], c
    assert c["new"]["macro"] > c["base"]["macro"]
    assert c["held_out_series"] >= 6 and c["outputs"] == ["quality"]
    new = models.manifest_for("lightbox-quality", "rt")
    assert new["version"] == run["new_version"] != run["base_version"] and new["project"] == "rt"
    assert models.manifest_for("lightbox-quality", "other")["version"] == run["base_version"]

    # The AI page shows the comparison chart and the version in use.
    page = await client.get("/projects/rt/ai")
    assert page.status_code == 200
    assert 'id="retrain-chart"' in page.text and 'data-auc="new-quality"' in page.text
    assert f'data-version="{run["new_version"]}"' in page.text

    # New jobs of the project use the fine-tuned model, which loads and scores.
    from portal.ai.infer import score_series

    uid, files, _ = labelled_series(tmp_path / "more", 1)[0]
    outcome = score_series(files, new["dir"])
    assert outcome["model"]["version"] == run["new_version"]


async def test_too_few_labels_fail_with_a_reason(app, client, tmp_path):
    from portal.tasks.inference import run_retrain

    p = await _labelled_project(tmp_path, n=4)
    run = await retrain.request(p)
    await asyncio.to_thread(run_retrain, run["id"])
    run = await retrain.get(run["id"])
    assert run["state"] == "failed" and "at least 8 are needed" in run["error"]
    assert not run["registered"] and models.manifest_for("lightbox-quality", "rt")["version"] == run["base_version"]


async def test_only_managers_retrain_or_change_routing(app, client, tmp_path):
    await make_project("rt", {"view": "viewer", "boss": "manager"})
    await login(client, "view")
    assert (await client.get("/projects/rt/ai")).status_code == 200
    r = await form_post(client, "/projects/rt/ai/retrain", {})
    assert r.status_code == 403
    r = await form_post(client, "/projects/rt/ai/settings", {"rows": "1", "rule-0-model": "lightbox-quality",
                                                             "quiet": "2", "threshold": "0.5"})
    assert r.status_code == 403
    assert await RetrainRun.count() == 0


async def test_routing_settings_are_validated_and_saved(app, client):
    from portal import projects
    from portal.tables import Project

    await make_project("rt", {"boss": "manager"})
    await login(client, "boss")
    good = {"rows": "2", "rule-0-modality": "CT|MR", "rule-0-model": "lightbox-quality",
            "rule-1-description": "^loc", "rule-1-model": "", "quiet": "2.5", "threshold": "0.6"}
    r = await form_post(client, "/projects/rt/ai/settings", good)
    assert r.status_code == 303
    conf = projects.settings_of(await Project.objects().get(Project.name == "rt"))
    assert conf["ai_routing"] == [{"model": "lightbox-quality", "modality": "CT|MR"}]
    assert conf["ai_quiet_seconds"] == 2.5 and conf["ai_suggest_threshold"] == 0.6
    for bad, message in ((dict(good, **{"rule-0-model": "nonexistent"}), "No installed model"),
                         (dict(good, **{"rule-0-description": "(", "rule-0-model": "lightbox-quality"}), "regular expression"),
                         (dict(good, quiet="soon"), "must be numbers")):
        r = await form_post(client, "/projects/rt/ai/settings", bad)
        assert r.status_code == 400 and message in r.text
    conf = projects.settings_of(await Project.objects().get(Project.name == "rt"))
    assert conf["ai_quiet_seconds"] == 2.5  # nothing changed
