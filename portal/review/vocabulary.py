"""Decision vocabularies and artifact lists: MIQA's defaults, and validation of a project's own."""

from __future__ import annotations

import re
import string

from portal.errors import Invalid

ROLES = ("reviewer", "senior_reviewer", "manager")
# Roles whose decisions settle a series ("made by a senior reviewer").
SENIOR_ROLES = ("senior_reviewer", "manager", "admin")

DEFAULT_DECISIONS: list[dict] = [
    {"code": "U", "label": "Usable", "colour": "#2e7d32", "key": "u", "roles": list(ROLES)},
    {"code": "UE", "label": "Usable-extra", "colour": "#00838f", "key": "i", "roles": ["senior_reviewer", "manager"]},
    {"code": "Q?", "label": "Questionable", "colour": "#ef6c00", "key": "o", "roles": list(ROLES)},
    {"code": "UN", "label": "Unusable", "colour": "#c62828", "key": "p", "roles": ["senior_reviewer", "manager"]},
]

DEFAULT_ARTIFACTS: list[str] = [
    "normal_variants", "lesions", "full_brain_coverage", "misalignment", "swap_wraparound", "ghosting_motion",
    "inhomogeneity", "susceptibility_metal", "flow_artifact", "truncation_artifact",
]

PRESENT, ABSENT, UNDECIDED = 1, 0, -1

# Letters the series page already uses (static/js/series.js and review.js): a decision on one of them would turn
# "reset the view" into a permanent decision. tests/unit/test_vocabulary.py keeps this list and the page in step.
RESERVED_KEYS: dict[str, str] = {
    "a": "automatic window / level", "n": "invert", "r": "reset the view", "f": "full screen",
    "t": "the tag browser", "m": "mark a location", "l": "measure a length", "z": "undo the last decision",
}

_CODE = re.compile(r"^[A-Za-z0-9?!+\-_.]{1,16}$")
_ARTIFACT = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


def check_decisions(entries: list[dict]) -> list[dict]:
    """A cleaned decision vocabulary, or Invalid naming what is wrong."""
    if not entries:
        raise Invalid("A project needs at least one decision code.", "invalid_vocabulary")
    cleaned, codes, keys = [], set(), set()
    for n, e in enumerate(entries, 1):
        code = str(e.get("code", "")).strip()
        if not _CODE.match(code):
            raise Invalid(f"Decision {n}: code '{code}' must be 1-16 letters, digits or ? ! + - _ .", "invalid_vocabulary")
        if code in codes:
            raise Invalid(f"Decision code '{code}' appears twice.", "invalid_vocabulary")
        codes.add(code)
        label = str(e.get("label", "")).strip()[:60] or code
        colour = str(e.get("colour", "") or "#546e7a").strip()
        if not _COLOUR.match(colour):
            raise Invalid(f"Decision '{code}': colour must look like #2e7d32.", "invalid_vocabulary")
        key = str(e.get("key", "") or "").strip().lower()[:1]
        if key and (not key.isalpha() or key in keys):
            raise Invalid(f"Decision '{code}': shortcut '{key}' must be a letter used once.", "invalid_vocabulary")
        if key in RESERVED_KEYS:
            taken = {str(x.get("key", "") or "").strip().lower()[:1] for x in entries}
            free = ", ".join(sorted(set(string.ascii_lowercase) - set(RESERVED_KEYS) - taken))
            raise Invalid(f"Decision '{code}': the key '{key}' already means {RESERVED_KEYS[key]} in the viewer; "
                          f"choose another letter (free: {free}).", "reserved_key")
        if key:
            keys.add(key)
        roles = [r for r in e.get("roles", []) if r in ROLES]
        cleaned.append({"code": code, "label": label, "colour": colour, "key": key, "roles": roles})
    return cleaned


def check_artifacts(names: list[str]) -> list[str]:
    cleaned = []
    for name in names:
        name = str(name).strip().lower().replace(" ", "_").replace("-", "_")
        if not name:
            continue
        if not _ARTIFACT.match(name):
            raise Invalid(f"Artifact '{name[:70]}' must be lower-case letters, digits and underscores.",
                          "invalid_vocabulary")
        if name not in cleaned:
            cleaned.append(name)
    return cleaned


def allowed_codes(decisions: list[dict], role: str | None, is_admin: bool) -> list[str]:
    """Codes a user of `role` may give (administrators: all)."""
    return [d["code"] for d in decisions if is_admin or (role and role in d["roles"])]
