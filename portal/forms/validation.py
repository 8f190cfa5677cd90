"""Checking a submitted entry against its form definition: types, ranges, options, required and visible_if."""

from __future__ import annotations

import datetime as dt
import re

from portal.errors import Invalid
from portal.forms.schema import has_value, is_visible, parse_number

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TEXT_LIMITS = {"text": 1000, "long_text": 20000}


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def _text(field: dict, value) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    value = value.replace("\r\n", "\n").strip()
    limit = _TEXT_LIMITS[field["type"]]
    if len(value) > limit:
        raise ValueError(f"must be at most {limit} characters")
    if field["type"] == "text" and "\n" in value:
        raise ValueError("must be a single line")
    return value


def _unit(field: dict) -> str:
    return f" {field['unit']}" if field.get("unit") else ""


def _numeric(field: dict, value) -> int | float:
    number = parse_number(value, "")
    lo, hi = field.get("min"), field.get("max")
    if lo is not None and number < lo:
        raise ValueError(f"must be at least {lo}{_unit(field)}")
    if hi is not None and number > hi:
        raise ValueError(f"must be at most {hi}{_unit(field)}")
    step = field.get("step")
    if step:
        base = lo if lo is not None else 0
        ratio = (number - base) / step
        if abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"must be in steps of {step}" + (f" from {base}" if base else ""))
    return number


def _single(field: dict, value) -> str:
    if isinstance(value, str):
        match = next((o for o in field["options"] if o.lower() == value.strip().lower()), None)
        if match is not None:
            return match
    raise ValueError(f"choose one of: {', '.join(field['options'])}")


def _multiple(field: dict, value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of options")
    by_lower = {o.lower(): o for o in field["options"]}
    unknown = [v for v in value if v.strip().lower() not in by_lower]
    if unknown:
        raise ValueError(f"'{unknown[0]}' is not one of: {', '.join(field['options'])}")
    chosen = {by_lower[v.strip().lower()] for v in value}
    return [o for o in field["options"] if o in chosen]  # the form's order, once each


def _yes_no(field: dict, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("yes", "no", "true", "false"):
        return value.strip().lower() in ("yes", "true")
    raise ValueError("must be yes or no (true or false)")


def _date(field: dict, value) -> str:
    if isinstance(value, str) and _DATE.match(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise ValueError("must be a date written YYYY-MM-DD")


def is_answer(value) -> bool:
    """Whether `value` has the type of a cleaned answer: text, a number, yes/no, or a list of options."""
    return isinstance(value, (str, bool, int, float)) or (isinstance(value, list)
                                                          and all(isinstance(v, str) for v in value))


CLEANERS = {"text": _text, "long_text": _text, "number": _numeric, "score": _numeric,
            "single_choice": _single, "multiple_choice": _multiple, "yes_no": _yes_no, "date": _date}


def entry_errors(definition: dict, entry: dict) -> tuple[dict, dict[str, str]]:
    """(cleaned entry, {field name: problem}) without raising: the portal shows both at once."""
    if not isinstance(entry, dict):
        return {}, {"FormSubmission": "must be a JSON object of {field name: value}"}
    fields = definition["fields"]
    by_name = {f["name"]: f for f in fields}
    errors: dict[str, str] = {}
    for key in entry:
        if key not in by_name:
            errors[key] = "is not a field of this form"
        elif not has_value(by_name[key]):
            errors[key] = "is a section heading and takes no value"
    cleaned: dict = {}
    for field in fields:
        if not has_value(field) or not is_visible(field, cleaned):
            continue  # hidden answers are dropped, and a hidden question is never required
        raw = entry.get(field["name"])
        if _blank(raw):
            if field["required"]:
                errors[field["name"]] = "required"
            continue
        try:
            cleaned[field["name"]] = CLEANERS[field["type"]](field, raw)
        except ValueError as exc:
            errors[field["name"]] = str(exc)
    return cleaned, errors


def validate_entry(definition: dict, entry: dict) -> dict:
    """The entry with only visible, typed answers (canonical option spelling); Invalid names every bad field."""
    cleaned, errors = entry_errors(definition, entry)
    if errors:
        listed = "; ".join(f"{k}: {v}" for k, v in errors.items())
        raise Invalid(f"The form submission is not valid: {listed}.", "invalid_form_submission", fields=errors)
    return cleaned
