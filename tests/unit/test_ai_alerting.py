"""Alert rules (portal/inference/alerting.py) and the artifact vocabulary mapping (portal/inference/suggestions.py)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from portal.errors import Invalid
from portal.inference import alerting, suggestions

UTC = dt.timezone.utc
MANIFEST = {"name": "lightbox-quality", "critical": {"output": "quality", "below": 0.3, "meaning": "likely unusable"}}


@pytest.mark.parametrize("date, time, expected", [
    ("20261203", "101500", dt.datetime(2026, 12, 3, 10, 15, tzinfo=UTC)),
    ("20261203", "101500.250", dt.datetime(2026, 12, 3, 10, 15, 0, 250000, tzinfo=UTC)),
    ("2026.12.03", "10:15:00", dt.datetime(2026, 12, 3, 10, 15, tzinfo=UTC)),
    ("20261203", "", dt.datetime(2026, 12, 3, tzinfo=UTC)),
    ("20261203", "99", dt.datetime(2026, 12, 3, tzinfo=UTC)),
    ("", "101500", None),
    ("20261340", "", None),
])
def test_dicom_date_and_time(date, time, expected):
    assert alerting.parse_dicom_datetime(date, time) == expected


def test_series_time_wins_over_the_study_time():
    study = SimpleNamespace(study_date="20200101", study_time="080000")
    assert alerting.acquired_at(study, SimpleNamespace(series_date="20261203", series_time="0930")) == \
        dt.datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    assert alerting.acquired_at(study, SimpleNamespace(series_date="", series_time="")) == \
        dt.datetime(2020, 1, 1, 8, tzinfo=UTC)
    assert alerting.acquired_at(SimpleNamespace(study_date="", study_time=""), SimpleNamespace()) is None


def test_recent_means_within_the_window_after_acquisition():
    acquired = dt.datetime(2026, 12, 3, 8, tzinfo=UTC)
    assert alerting.is_recent(acquired, acquired + dt.timedelta(hours=23, minutes=59), 24)
    assert not alerting.is_recent(acquired, acquired + dt.timedelta(hours=24, seconds=1), 24)
    assert alerting.is_recent(acquired, acquired + dt.timedelta(hours=47), 48)
    assert not alerting.is_recent(None, acquired, 24)  # unknown age: the digest, never a page
    assert alerting.window_hours({}) == 24 and alerting.window_hours({"ai_alert_window_hours": 2}) == 2


def test_critical_uses_the_projects_threshold_else_the_models():
    assert alerting.is_critical(MANIFEST, {"quality": 0.25}, {})
    assert not alerting.is_critical(MANIFEST, {"quality": 0.35}, {})
    conf = {"ai_critical_thresholds": {"lightbox-quality": 0.1}}
    assert not alerting.is_critical(MANIFEST, {"quality": 0.25}, conf)
    assert alerting.is_critical(MANIFEST, {"quality": 0.05}, conf)
    rule = alerting.critical_rule(MANIFEST, conf)
    assert rule["below"] == 0.1 and rule["default"] == 0.3
    assert not alerting.is_critical({"name": "x"}, {"quality": 0.0}, {})  # a model without a critical rule
    assert not alerting.is_critical(MANIFEST, {}, {})  # no score (no diagnostic content)


def test_one_alert_key_per_study_and_model_version():
    assert alerting.alert_key(7, "m", "1.2.0") == alerting.alert_key(7, "m", "1.2.0") != alerting.alert_key(8, "m", "1.2.0")
    assert alerting.alert_key(7, "m", "1.2.0") != alerting.alert_key(7, "m", "1.1.0")


def test_thresholds_setting_is_checked():
    assert alerting.check_thresholds({"m": "0.2"}, {"m"}) == {"m": 0.2}
    with pytest.raises(Invalid):
        alerting.check_thresholds({"other": 0.2}, {"m"})
    with pytest.raises(Invalid):
        alerting.check_thresholds({"m": "low"}, {"m"})


MIQA = ["ghosting_motion", "swap_wraparound", "inhomogeneity", "truncation_artifact", "lesions"]


def _r(name, value, type_="probability"):
    return {"name": name, "value": value, "type": type_}


def test_outputs_map_to_the_projects_vocabulary_by_default():
    results = [_r("quality", 0.1, "float"), _r("motion", 0.9), _r("gibbs", 0.7), _r("noise", 0.95),
               _r("wraparound", 0.2)]
    got = suggestions.suggest(results, suggestions.DEFAULT_MAP, MIQA, 0.5)
    assert got == {"ghosting_motion": {"output": "motion", "value": 0.9},
                   "truncation_artifact": {"output": "gibbs", "value": 0.7}}  # noise: no MIQA name; quality: no


def test_a_mapped_name_the_project_lacks_suggests_nothing_and_two_outputs_share_one_name():
    mapping = {"motion": "artefact_motion", "spike": "rf", "noise": "rf"}
    results = [_r("motion", 0.9), _r("spike", 0.6), _r("noise", 0.8)]
    assert suggestions.suggest(results, mapping, ["rf"], 0.5) == {"rf": {"output": "noise", "value": 0.8}}


def test_mapping_setting_is_checked():
    assert suggestions.check_map({"motion": "lesions", "gibbs": ""}, MIQA) == {"motion": "lesions"}
    with pytest.raises(Invalid):
        suggestions.check_map({"motion": "not_in_the_list"}, MIQA)
