"""The form builder's draft: an unsaved definition carried in the builder's own form post, and its edits.

The builder keeps no state on the server: every button posts the whole draft, the server applies
one operation (add, move, delete a field) and renders the draft again. Saving turns the draft into
a definition and stores it as the next version.
"""

from __future__ import annotations

import re

from portal.errors import Invalid
from portal.forms.schema import CHOICE_TYPES, FIELD_TYPES, NUMERIC_TYPES, check_definition, slugify_field_name

_TEXT_KEYS = ("name", "label", "type", "help", "options", "min", "max", "step", "unit", "vif_field")


def blank_field(ftype: str = "text") -> dict:
    field = dict.fromkeys(_TEXT_KEYS, "")
    field.update(type=ftype if ftype in FIELD_TYPES else "text", required=False, vif_values=[], open=True)
    if field["type"] == "score":
        field.update(min="0", max="10", step="1")
    if field["type"] in CHOICE_TYPES:
        field["options"] = "Option 1\nOption 2"
    return field


def from_post(post: dict[str, list[str]]) -> dict:
    """The draft a builder post carries: fields-{i}-{key} inputs for i in range(field_count)."""
    def one(key: str) -> str:
        return (post.get(key) or [""])[-1].strip()

    try:
        count = min(int(one("field_count") or 0), 200)
    except ValueError:
        count = 0
    fields = []
    for i in range(count):
        prefix = f"fields-{i}-"
        field = {key: one(prefix + key) for key in _TEXT_KEYS}
        field["required"] = bool(one(prefix + "required"))
        field["open"] = bool(one(prefix + "open"))  # whether the manager has this field unfolded
        field["vif_values"] = [v for v in post.get(prefix + "vif_values", []) if v.strip()]
        fields.append(field)
    _fill_names(fields)
    return {"title": one("title"), "description": one("description"), "fields": fields}


def _fill_names(fields: list[dict]) -> None:
    """Name fields the manager left unnamed after their label, so that they see (and may change) it."""
    taken = {f["name"] for f in fields if f["name"]}
    for field in fields:
        if field["name"] or not field["label"]:
            continue
        base = slugify_field_name(field["label"]) or "field"
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        field["name"] = name
        taken.add(name)


def from_definition(definition: dict) -> dict:
    """A saved definition as a draft to edit."""
    fields = []
    for f in definition["fields"]:
        cond = f.get("visible_if") or {}
        wanted = cond.get("in", [cond["equals"]] if "equals" in cond else [])
        fields.append({
            "name": f["name"], "label": f["label"] or "", "type": f["type"], "help": f.get("help") or "",
            "required": bool(f.get("required")), "options": "\n".join(f.get("options") or []),
            "min": _str(f.get("min")), "max": _str(f.get("max")), "step": _str(f.get("step")),
            "unit": f.get("unit") or "", "vif_field": cond.get("field", ""),
            "vif_values": [("yes" if w else "no") if isinstance(w, bool) else str(w) for w in wanted],
            "open": False,
        })
    return {"title": definition.get("title") or "", "description": definition.get("description") or "",
            "fields": fields}


def _str(value) -> str:
    return "" if value is None else str(value)


def to_definition(name: str, draft: dict) -> dict:
    """The definition a draft stands for, ready for schema.check_definition."""
    fields = []
    for f in draft["fields"]:
        ftype = f["type"]
        field = {"name": f["name"], "type": ftype, "label": f["label"], "required": f["required"],
                 "help": f["help"]}
        if ftype in CHOICE_TYPES:
            field["options"] = f["options"].splitlines()
        if ftype in NUMERIC_TYPES:
            field.update(min=f["min"] or None, max=f["max"] or None, step=f["step"] or None, unit=f["unit"])
        if f["vif_field"]:
            values = f["vif_values"]
            field["visible_if"] = ({"field": f["vif_field"], "equals": values[0]} if len(values) == 1 else
                                   {"field": f["vif_field"], "in": values})
        fields.append(field)
    return {"name": name, "title": draft["title"], "description": draft["description"], "fields": fields}


def apply(draft: dict, op: str, new_type: str = "text") -> dict:
    """One builder operation: "add", "up:i", "down:i", "delete:i"; anything else just re-renders."""
    fields = list(draft["fields"])
    action, _, index = op.partition(":")
    i = int(index) if index.isdigit() else -1
    if action == "add":
        fields.append(blank_field(new_type))
    elif action == "up" and 0 < i < len(fields):
        fields[i - 1], fields[i] = fields[i], fields[i - 1]
    elif action == "down" and 0 <= i < len(fields) - 1:
        fields[i + 1], fields[i] = fields[i], fields[i + 1]
    elif action == "delete" and 0 <= i < len(fields):
        removed = fields.pop(i)["name"]
        for f in fields:  # a condition on a deleted question would hide its field for ever
            if f["vif_field"] == removed:
                f["vif_field"], f["vif_values"] = "", []
    return {**draft, "fields": fields}


def preview(name: str, draft: dict) -> tuple[dict, dict[str, str]]:
    """(definition to preview, problems): a draft that does not validate yet still previews what it can."""
    raw = to_definition(name, draft)
    try:
        return check_definition(raw), {}
    except Invalid as exc:
        problems = exc.fields
    fields = []
    for f in raw["fields"]:
        if f.get("type") not in FIELD_TYPES:
            continue
        field = {**dict.fromkeys(("options", "min", "max", "step", "unit", "help")), **f}
        field.update(label=f.get("label") or "(no label)", visible_if=f.get("visible_if") or None)
        field["options"] = [o for o in field["options"] or [] if o.strip()]
        fields.append(field)
    return {**raw, "fields": fields}, problems


_FIELD_ERROR = re.compile(r"^fields\[(\d+)\]")


def unfolded(draft: dict, errors: dict) -> set[int]:
    """Which fields the builder shows unfolded: those the manager opened and those with a problem."""
    with_errors = {int(m.group(1)) for m in map(_FIELD_ERROR.match, errors) if m}
    return {i for i, f in enumerate(draft["fields"]) if f.get("open") or i in with_errors}
