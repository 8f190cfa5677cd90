"""Routing: a project's ordered rules (Modality, BodyPartExamined, SOPClassUID, SeriesDescription) → a model."""

from __future__ import annotations

import re

from portal.errors import Invalid

BUILTIN_MODEL = "lightbox-quality"

# Defaults that ship: the built-in quality model reads grey-scale cross-sectional and projection images.
DEFAULT_RULES: list[dict] = [
    {"modality": "MR", "model": BUILTIN_MODEL},
    {"modality": "CT", "model": BUILTIN_MODEL},
    {"modality": "CR", "model": BUILTIN_MODEL},
    {"modality": "DX", "model": BUILTIN_MODEL},
]

_FIELDS = ("modality", "body_part", "sop_class", "description")


def check_rules(rules: list[dict]) -> list[dict]:
    cleaned = []
    for n, rule in enumerate(rules, 1):
        if not isinstance(rule, dict) or not isinstance(rule.get("model"), str) or not rule["model"].strip():
            raise Invalid(f"Rule {n} needs a model.", "invalid_routing")
        out = {"model": rule["model"].strip()}
        for field in _FIELDS:
            value = str(rule.get(field) or "").strip()
            if value:
                if field == "description":
                    try:
                        re.compile(value)
                    except re.error as exc:
                        raise Invalid(f"Rule {n}: description pattern is not a regular expression ({exc}).",
                                      "invalid_routing")
                out[field] = value
        cleaned.append(out)
    return cleaned


def _matches(rule: dict, modality: str, body_part: str, sop_class: str, description: str) -> bool:
    def one_of(pattern: str, value: str) -> bool:  # "CT|MR" style alternatives, case-insensitive
        return value.upper() in {p.strip().upper() for p in pattern.split("|")}

    if rule.get("modality") and not one_of(rule["modality"], modality):
        return False
    if rule.get("body_part") and not one_of(rule["body_part"], body_part):
        return False
    if rule.get("sop_class") and not one_of(rule["sop_class"], sop_class):
        return False
    if rule.get("description") and not re.search(rule["description"], description or "", re.IGNORECASE):
        return False
    return True


def route(rules: list[dict], *, modality: str = "", body_part: str = "", sop_class: str = "",
          description: str = "") -> str | None:
    """The model of the first matching rule, or None ("not applicable")."""
    for rule in rules:
        if _matches(rule, modality, body_part, sop_class, description):
            return rule["model"]
    return None
