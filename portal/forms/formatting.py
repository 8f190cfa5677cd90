"""The human-readable rendering of a submission (`entry_formatted`): sections, labels, values and units."""

from __future__ import annotations

from portal.forms.schema import has_value


def display_value(field: dict, value) -> str:
    """One answer as a person reads it: Yes/No, options joined by commas, numbers with their unit."""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if field["type"] == "score":
        return f"{value}{' ' + field['unit'] if field.get('unit') else ''} ({field['min']}–{field['max']})"
    if field["type"] == "number" and field.get("unit"):
        return f"{value} {field['unit']}"
    return str(value)


def format_entry(definition: dict, entry: dict) -> str:
    """E.g. "Findings\\n  Abnormal findings present: Yes\\n  Findings: Cavitation, Nodules".

    Questions under a section heading are indented; headings with no answers below them are left out,
    and so are questions left blank. Continuation lines of long text keep the indent.
    """
    lines: list[str] = []
    heading: str | None = None
    indent = ""
    for field in definition["fields"]:
        if not has_value(field):
            heading, indent = field["label"], "  "
            continue
        if field["name"] not in entry:
            continue
        if heading is not None:
            lines.append(heading)
            heading = None
        text = display_value(field, entry[field["name"]]).replace("\n", "\n" + indent + "  ")
        lines.append(f"{indent}{field['label']}: {text}")
    return "\n".join(lines)
