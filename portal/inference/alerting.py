"""When an AI result becomes an alert: the project's critical threshold, the acquisition-time window, one per study.

An alert exists so that the team can act while the patient is still there. So:

- a result is *critical* when it crosses the project's threshold for that model (`ai_critical_thresholds`,
  `{model name: value}`), else the model's own (`critical` in its manifest);
- one alert per study and model version (its key), naming the first critical series;
- it is mailed and belled at once only when the series was acquired within `ai_alert_window_hours` (default 24)
  of the result; an older series (ingesting last year's studies) goes to the recipients' daily digest instead;
  a series without an acquisition date is treated as old: a flood of unknown-age studies must not page anyone.

DICOM dates and times carry no time zone here; they are read as UTC (the window is wide enough for that).
Plain functions over rows and settings; no Litestar.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

DEFAULT_WINDOW_HOURS = 24.0


def parse_dicom_datetime(date: str | None, time: str | None = "") -> dt.datetime | None:
    """A DICOM DA (YYYYMMDD, or the old YYYY.MM.DD) and TM (HH[MM[SS[.ffffff]]], old HH:MM:SS) as UTC; None when
    the date is missing or not a date. A missing or unreadable time counts as midnight."""
    digits = "".join(c for c in (date or "") if c.isdigit())
    if len(digits) != 8:
        return None
    try:
        day = dt.datetime(int(digits[:4]), int(digits[4:6]), int(digits[6:8]), tzinfo=dt.timezone.utc)
    except ValueError:
        return None
    raw = (time or "").strip().replace(":", "")
    whole, _, fraction = raw.partition(".")
    if not whole.isdigit() or len(whole) % 2 or len(whole) > 6:
        return day
    parts = [int(whole[i:i + 2]) for i in range(0, len(whole), 2)] + [0, 0]
    hours, minutes, seconds = parts[0], parts[1], parts[2]
    micro = int((fraction + "000000")[:6]) if fraction.isdigit() else 0
    if hours > 23 or minutes > 59 or seconds > 60:
        return day
    return day + dt.timedelta(hours=hours, minutes=minutes, seconds=min(seconds, 59), microseconds=micro)


def acquired_at(study, series) -> dt.datetime | None:
    """When the series was acquired: its Series Date/Time, else the study's Study Date/Time."""
    for date, time in ((getattr(series, "series_date", ""), getattr(series, "series_time", "")),
                       (getattr(study, "study_date", ""), getattr(study, "study_time", ""))):
        when = parse_dicom_datetime(date, time)
        if when is not None:
            return when
    return None


def window_hours(conf: Mapping) -> float:
    try:
        return float(conf.get("ai_alert_window_hours", DEFAULT_WINDOW_HOURS))
    except (TypeError, ValueError):
        return DEFAULT_WINDOW_HOURS


def is_recent(acquired: dt.datetime | None, at: dt.datetime, hours: float) -> bool:
    """Whether a series acquired at `acquired` still warrants an immediate alert at `at`."""
    if acquired is None:
        return False
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return at - acquired <= dt.timedelta(hours=hours)


def critical_rule(manifest: Mapping, conf: Mapping) -> dict | None:
    """The manifest's `critical` rule with the project's threshold for this model, if it set one.
    {output, below|above, meaning, default} or None when the model has no critical rule."""
    rule = manifest.get("critical") if manifest else None
    if not rule:
        return None
    side = "below" if "below" in rule else "above"
    out = {"output": rule["output"], "meaning": rule.get("meaning", "critical result"), side: float(rule[side]),
           "side": side, "default": float(rule[side])}
    override = (conf.get("ai_critical_thresholds") or {}).get(manifest.get("name", ""))
    if override is not None:
        out[side] = float(override)
    return out


def is_critical(manifest: Mapping, scores: Mapping[str, float], conf: Mapping) -> bool:
    rule = critical_rule(manifest, conf)
    if rule is None or scores.get(rule["output"]) is None:
        return False
    value = float(scores[rule["output"]])
    return value < rule["below"] if rule["side"] == "below" else value > rule["above"]


def alert_key(study_id: int, model_name: str, model_version: str) -> str:
    """One alert per study and model version."""
    return f"study:{study_id}:{model_name}:{model_version}"


def check_thresholds(value, model_names: set[str]) -> dict[str, float]:
    """A project's `ai_critical_thresholds` from a form or API: {installed model name: number}."""
    from portal.errors import Invalid

    if not isinstance(value, dict):
        raise Invalid("Critical thresholds must be an object {model name: number}.", "invalid_setting")
    out = {}
    for name, v in value.items():
        if name not in model_names:
            raise Invalid(f"No installed model named {name}.", "invalid_setting")
        try:
            out[name] = float(v)
        except (TypeError, ValueError):
            raise Invalid(f"The critical threshold of {name} must be a number.", "invalid_setting") from None
    return out
