"""Which report forms apply to a series: a per-form project setting by modality, body part and SOP class.

A rule is {"modalities": [...], "body_parts": [...], "sop_classes": [...]}; an empty list means "any". A form the
project has no rule for uses its built-in default (the chest TB form: CR/DX chests; the MRI QC form: MR), so a
new project starts with the forms that fit and a head CT shows neither. A series whose body part is not recorded
is not ruled out by a body-part rule (many radiographs leave BodyPartExamined empty).
"""

from __future__ import annotations

import re

from portal import projects
from portal.errors import Invalid
from portal.tables import Instance, Project, Series, User

SETTING = "form_applies"  # project setting: {form name: rule}
KEYS = ("modalities", "body_parts", "sop_classes")
ANY: dict = {k: [] for k in KEYS}

DEFAULT_RULES: dict[str, dict] = {
    "cxr-tb-screening": {"modalities": ["CR", "DX"], "body_parts": ["CHEST"], "sop_classes": []},
    "mri-qc": {"modalities": ["MR"], "body_parts": [], "sop_classes": []},
}

_MODALITY = re.compile(r"^[A-Z0-9]{1,16}$")
_BODY_PART = re.compile(r"^[A-Z0-9 _]{1,64}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _items(value) -> list[str]:
    if isinstance(value, str):
        value = re.split(r"[,\s;]+", value)
    if not isinstance(value, (list, tuple)):
        raise Invalid("A form's applicability lists must be lists or comma-separated text.", "invalid_applicability")
    return [str(v).strip() for v in value if str(v).strip()]


def check_rule(raw: dict) -> dict:
    """A cleaned rule, or Invalid naming the value that is wrong."""
    if not isinstance(raw, dict) or set(raw) - set(KEYS):
        raise Invalid(f"A form's applicability has the keys {', '.join(KEYS)}.", "invalid_applicability")
    modalities = [m.upper() for m in _items(raw.get("modalities", []))]
    body_parts = [b.upper() for b in _items(raw.get("body_parts", []))]
    sop_classes = _items(raw.get("sop_classes", []))
    for m in modalities:
        if not _MODALITY.match(m):
            raise Invalid(f"'{m[:20]}' is not a DICOM modality (CT, MR, CR, DX, ...).", "invalid_applicability")
    for b in body_parts:
        if not _BODY_PART.match(b):
            raise Invalid(f"'{b[:70]}' is not a body part as DICOM writes it (CHEST, HEAD, ...).",
                          "invalid_applicability")
    for u in sop_classes:
        if not _UID.match(u) or len(u) > 64:
            raise Invalid(f"'{u[:70]}' is not a SOP Class UID (digits and dots).", "invalid_applicability")
    return {"modalities": sorted(set(modalities)), "body_parts": sorted(set(body_parts)),
            "sop_classes": sorted(set(sop_classes))}


def rule_for(project: Project, form_name: str) -> dict:
    stored = projects.settings_of(project).get(SETTING) or {}
    return stored.get(form_name) or DEFAULT_RULES.get(form_name) or ANY


def describe(rule: dict) -> str:
    """"CR, DX · CHEST" for people; "any series" when nothing limits the form."""
    parts = [", ".join(rule[k]) for k in KEYS if rule.get(k)]
    return " · ".join(parts) if parts else "any series"


def applies(rule: dict, modality: str, body_part: str, sop_classes: set[str]) -> bool:
    if rule.get("modalities") and (modality or "").upper() not in rule["modalities"]:
        return False
    if rule.get("body_parts") and body_part and body_part.upper() not in rule["body_parts"]:
        return False
    if rule.get("sop_classes") and not sop_classes & set(rule["sop_classes"]):
        return False
    return True


async def sop_classes_of(series: Series) -> set[str]:
    rows = await Instance.select(Instance.sop_class_uid).where(Instance.series == series.id).distinct()
    return {r["sop_class_uid"] for r in rows if r["sop_class_uid"]}


async def forms_for_series(project: Project, series: Series, forms: list[dict]) -> list[dict]:
    """The forms (definitions, in the project's order) that apply to `series`."""
    sops = await sop_classes_of(series) if any(rule_for(project, f["name"]).get("sop_classes") for f in forms) else set()
    return [f for f in forms if applies(rule_for(project, f["name"]), series.modality, series.body_part, sops)]


async def set_rule(project: Project, form_name: str, raw: dict, *, by: User | None = None, client: str = "") -> dict:
    rule = check_rule(raw)
    stored = dict(projects.settings_of(project).get(SETTING) or {})
    stored[form_name] = rule
    await projects.update_settings(project, {SETTING: stored}, by=by, client=client)
    return rule
