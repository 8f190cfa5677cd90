"""The project's AI page: each model in use with its evaluation figures, and the alert window, critical
thresholds and artifact mapping saved and checked."""

from __future__ import annotations

import pytest

import json

from portal import projects
from portal.ai.registry import builtin_model_dir
from tests.helpers import form_post, login, make_project

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _form(**extra) -> dict:
    base = {"rows": "1", "rule-0-modality": "CT", "rule-0-model": "lightbox-quality", "quiet": "5", "threshold": "0.5",
            "alert_window": "12", "critical-lightbox-quality": "0.2", "map-present": "1",
            "map-motion": "ghosting_motion", "map-gibbs": "", "map-noise": "lesions"}
    return {**base, **extra}


async def test_the_ai_page_shows_how_good_the_model_in_use_is(client, app):
    await make_project("ev", {"man": "manager"})
    await login(client, "man")
    html = (await client.get("/projects/ev/ai")).text
    assert "How good the models are" in html
    # 1.4.0 is in use: its own held-out figures (EVALUATION.md), and 1.3.0's on the same samples beside them
    ev = json.loads((builtin_model_dir() / "evaluation.json").read_text())
    assert builtin_model_dir().name == "1.4.0"
    assert f"{ev['test_B']['macro_auc']:.3f}" in html and "its own held-out evaluation" in html
    assert f"fires on <strong>{100 * ev['critical']['false_alert_rate']:.1f}%</strong>" in html
    assert f"catches <strong>{100 * ev['critical']['severe_detection']:.0f}%</strong>" in html
    assert "Against 1.3.0 on the same samples: macro AUC" in html
    assert 'name="alert_window"' in html and 'name="critical-lightbox-quality"' in html
    assert '<option value="ghosting_motion" selected>' in html  # motion → MIQA's name by default
    # Blank unless the project set its own: saving the page must not pin today's model default.
    assert 'name="critical-lightbox-quality" step="0.01" value=""' in html


async def test_alert_and_suggestion_settings_are_saved_and_checked(client, app):
    p = await make_project("ev", {"man": "manager"})
    await login(client, "man")
    r = await form_post(client, "/projects/ev/ai/settings", _form())
    assert r.status_code in (200, 303), r.text
    conf = projects.settings_of(await projects.get("ev"))
    assert conf["ai_alert_window_hours"] == 12
    assert conf["ai_critical_thresholds"] == {"lightbox-quality": 0.2}
    assert 'value="0.2"' in (await client.get("/projects/ev/ai")).text
    r = await form_post(client, "/projects/ev/ai/settings", _form(**{"critical-lightbox-quality": ""}))
    assert projects.settings_of(await projects.get("ev"))["ai_critical_thresholds"] == {}  # back to the model's
    r = await form_post(client, "/projects/ev/ai/settings", _form())
    assert conf["ai_artifact_map"] == {"motion": "ghosting_motion", "noise": "lesions"}
    r = await form_post(client, "/projects/ev/ai/settings", _form(**{"map-motion": "no_such_artifact"}))
    assert r.status_code == 400 and "not one of this project" in r.text
    r = await form_post(client, "/projects/ev/ai/settings", _form(alert_window="-1"))
    assert r.status_code == 400
    r = await form_post(client, "/projects/ev/ai/settings", _form(**{"critical-lightbox-quality": "low"}))
    assert r.status_code == 400
    assert projects.settings_of(await projects.get("ev"))["ai_alert_window_hours"] == 12  # refused: unchanged
    del p
