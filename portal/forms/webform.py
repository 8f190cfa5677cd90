"""Between HTML form posts and entries: what a browser sends for each field type, and back for prefilling."""

from __future__ import annotations

from portal.forms.schema import has_value


def entry_from_post(definition: dict, post: dict[str, list[str]]) -> dict:
    """The entry a browser's post means: lists for multiple choice, single strings otherwise.

    Fields the post does not mention are left out (a hidden question's inputs are disabled, so the
    browser does not send them); validation then decides what is missing.
    """
    entry: dict = {}
    for field in definition["fields"]:
        if not has_value(field):
            continue
        values = [v for v in post.get(field["name"], [])]
        if field["type"] == "multiple_choice":
            if values:
                entry[field["name"]] = [v for v in values if v]
        elif values:
            entry[field["name"]] = values[-1]
    return entry


def post_from_entry(definition: dict, entry: dict) -> dict[str, list[str]]:
    """An entry as a post would carry it, to prefill a form with an earlier submission."""
    post: dict[str, list[str]] = {}
    for field in definition["fields"]:
        value = entry.get(field["name"]) if has_value(field) else None
        if value is None:
            continue
        if isinstance(value, bool):
            post[field["name"]] = ["yes" if value else "no"]
        elif isinstance(value, list):
            post[field["name"]] = [str(v) for v in value]
        else:
            post[field["name"]] = [str(value)]
    return post
