"""Report form definitions: field types, the canonical shape of a definition, and its validator."""

from __future__ import annotations

import math
import re

from portal.errors import Invalid

# type → what the builder calls it
FIELD_TYPES: dict[str, str] = {
    "section": "Section heading",
    "text": "Short text",
    "long_text": "Long text",
    "number": "Number",
    "single_choice": "Single choice",
    "multiple_choice": "Multiple choice",
    "yes_no": "Yes / no",
    "date": "Date",
    "score": "Score (slider)",
}
CHOICE_TYPES = {"single_choice", "multiple_choice"}
NUMERIC_TYPES = {"number", "score"}
FIELD_KEYS = ("name", "type", "label", "required", "help", "options", "min", "max", "step", "unit", "visible_if")

# Form names appear in URLs and API calls; field names become JSON keys people analyse later.
FORM_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def has_value(field: dict) -> bool:
    """Whether a field takes an answer (section headings do not)."""
    return field["type"] != "section"


def slugify_field_name(label: str) -> str:
    """'Largest cavity (mm)' → 'largest_cavity_mm': a default name for a field from its label."""
    name = re.sub(r"[^a-z0-9]+", "_", (label or "").lower()).strip("_")[:64]
    return name if name[:1].isalpha() else f"f_{name}"[:64].rstrip("_")


def is_visible(field: dict, values: dict) -> bool:
    """Whether `field` shows, given the (cleaned) answers so far; a field whose controller is hidden is hidden."""
    cond = field.get("visible_if")
    if not cond:
        return True
    value = values.get(cond["field"])
    if value is None:
        return False
    wanted = cond["in"] if "in" in cond else [cond["equals"]]
    answers = value if isinstance(value, list) else [value]
    return any(_same(a, w) for a in answers for w in wanted)


def _same(a, b) -> bool:
    """Equal and of the same kind: yes (True) is not the number 1."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def parse_number(value, what: str) -> int | float | None:
    """A JSON number (or a numeric string from a form post); None when blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number".lstrip())
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{what} must be a number".lstrip()) from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a number".lstrip())
    return int(value) if float(value).is_integer() else float(value)


def _text(value, what: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")
    value = value.strip()
    if len(value) > limit:
        raise ValueError(f"{what} must be at most {limit} characters")
    return value


def _field(raw, index: int, earlier: dict[str, dict], errors: dict) -> dict | None:
    """One field in canonical form (every key present), or None with its problems in `errors`."""
    where = f"fields[{index}]"
    if not isinstance(raw, dict):
        errors[where] = "each field must be an object"
        return None
    unknown = set(raw) - set(FIELD_KEYS)
    if unknown:
        errors[where] = f"unknown key(s): {', '.join(sorted(unknown))}"
    out: dict = dict.fromkeys(FIELD_KEYS)
    ftype = raw.get("type")
    if ftype not in FIELD_TYPES:
        errors[f"{where}.type"] = f"choose one of: {', '.join(FIELD_TYPES)}"
        return None
    out["type"] = ftype

    def check(key, fn):
        try:
            out[key] = fn()
        except ValueError as exc:
            errors[f"{where}.{key}"] = str(exc)

    check("label", lambda: _text(raw.get("label"), "the label", 200) or _raise("a label is required"))
    check("name", lambda: _field_name(raw.get("name"), earlier))
    check("help", lambda: _text(raw.get("help"), "the help text", 500))
    if raw.get("required") not in (None, True, False):
        errors[f"{where}.required"] = "required must be true or false"
    out["required"] = raw.get("required") is True and has_value(out)
    if ftype in CHOICE_TYPES:
        check("options", lambda: _options(raw.get("options"), ftype))
    elif raw.get("options"):
        errors[f"{where}.options"] = "only choice fields have options"
    if ftype in NUMERIC_TYPES:
        check("min", lambda: parse_number(raw.get("min"), "min"))
        check("max", lambda: parse_number(raw.get("max"), "max"))
        check("step", lambda: parse_number(raw.get("step"), "step"))
        check("unit", lambda: _text(raw.get("unit"), "the unit", 20) or None)
        _check_range(out, where, errors)
    else:
        for key in ("min", "max", "step", "unit"):
            if raw.get(key) not in (None, ""):
                errors[f"{where}.{key}"] = f"only number and score fields have {key}"
    if raw.get("visible_if"):  # a heading may hide with the questions under it
        check("visible_if", lambda: _visible_if(raw["visible_if"], earlier))
    return out


def _raise(message: str):
    raise ValueError(message)


def _field_name(name, earlier: dict[str, dict]) -> str:
    name = (name or "").strip() if isinstance(name, str) else name
    if not isinstance(name, str) or not FIELD_NAME.match(name):
        raise ValueError("use lowercase letters, digits and '_', starting with a letter (at most 64)")
    if name in earlier:
        raise ValueError(f"'{name}' is used by another field")
    return name


def _options(options, ftype: str) -> list[str]:
    if isinstance(options, str):
        options = options.splitlines()
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise ValueError("options must be a list of texts")
    cleaned = [o.strip() for o in options if o.strip()]
    if len({o.lower() for o in cleaned}) != len(cleaned):
        raise ValueError("options must differ from each other")
    if any(len(o) > 200 for o in cleaned):
        raise ValueError("an option must be at most 200 characters")
    needed = 2 if ftype == "single_choice" else 1
    if len(cleaned) < needed:
        raise ValueError(f"give at least {needed} option{'s' if needed > 1 else ''}")
    return cleaned


def _check_range(field: dict, where: str, errors: dict) -> None:
    lo, hi, step = field["min"], field["max"], field["step"]
    if field["type"] == "score":
        if lo is None or hi is None:
            errors.setdefault(f"{where}.max", "a score needs both min and max")
            return
        field["step"] = step = 1 if step is None else step
    if lo is not None and hi is not None and lo >= hi:
        errors.setdefault(f"{where}.max", "max must be greater than min")
    if step is not None and step <= 0:
        errors.setdefault(f"{where}.step", "step must be greater than 0")
    if field["type"] == "score" and step and step > 0 and lo < hi and (hi - lo) / step > 1000:
        errors.setdefault(f"{where}.step", "at most 1000 steps between min and max (a slider has no more)")


def _visible_if(cond, earlier: dict[str, dict]) -> dict:
    if not isinstance(cond, dict) or "field" not in cond or len({"equals", "in"} & set(cond)) != 1 \
            or set(cond) - {"field", "equals", "in"}:
        raise ValueError('write {"field": name, "equals": value} or {"field": name, "in": [values]}')
    controller = earlier.get(cond["field"])
    if controller is None or not has_value(controller):
        raise ValueError("must refer to a question above this field")
    wanted = cond["in"] if "in" in cond else [cond["equals"]]
    if not isinstance(wanted, list) or not wanted:
        raise ValueError("'in' must be a non-empty list")
    coerced = [_condition_value(controller, w) for w in wanted]
    return {"field": controller["name"], "in": coerced} if "in" in cond else \
        {"field": controller["name"], "equals": coerced[0]}


def _condition_value(controller: dict, value):
    """A visible_if value in the controller's own type, so that comparing answers is exact."""
    ftype, label = controller["type"], controller["label"]
    if ftype == "yes_no":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("yes", "no", "true", "false"):
            return value.strip().lower() in ("yes", "true")
        raise ValueError(f"'{label}' is a yes/no question: compare with yes or no")
    if ftype in CHOICE_TYPES:
        match = next((o for o in controller["options"] or [] if isinstance(value, str)
                      and o.lower() == value.strip().lower()), None)
        if match is None:
            raise ValueError(f"'{value}' is not an option of '{label}'")
        return match
    if ftype in NUMERIC_TYPES:
        number = parse_number(value, "the value")
        if number is None:
            raise ValueError("the value must be a number")
        return number
    if not isinstance(value, str) or not value.strip():
        raise ValueError("the value must be text")
    return value.strip()


def check_definition(raw: dict) -> dict:
    """The definition in canonical form ({name, title, description, fields}), or Invalid naming each problem.

    Errors are keyed "name", "title", "fields" or "fields[i].key", so the builder can show each next to
    its input.
    """
    errors: dict[str, str] = {}
    if not isinstance(raw, dict):
        raise Invalid("A form definition must be a JSON object.", "invalid_form_definition")
    name = raw.get("name")
    if not isinstance(name, str) or not FORM_NAME.match(name):
        errors["name"] = "use lowercase letters, digits and '-', starting with a letter or digit (at most 80)"
    out = {"name": name, "title": "", "description": "", "fields": []}
    try:
        out["title"] = _text(raw.get("title"), "the title", 200) or _raise("a title is required")
    except ValueError as exc:
        errors["title"] = str(exc)
    try:
        out["description"] = _text(raw.get("description"), "the description", 2000)
    except ValueError as exc:
        errors["description"] = str(exc)
    fields = raw.get("fields")
    if not isinstance(fields, list):
        errors["fields"] = "fields must be a list"
        fields = []
    earlier: dict[str, dict] = {}
    for i, raw_field in enumerate(fields):
        field = _field(raw_field, i, earlier, errors)
        if field is not None:
            out["fields"].append(field)
            if field["name"]:
                earlier[field["name"]] = field
    if not any(has_value(f) for f in out["fields"]) and "fields" not in errors:
        errors["fields"] = "add at least one question (a field that is not a section heading)"
    if errors:
        listed = "; ".join(f"{k}: {v}" for k, v in list(errors.items())[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise Invalid(f"The form definition is not valid: {listed}{more}.", "invalid_form_definition",
                      fields=errors)
    return out
