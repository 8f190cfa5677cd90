"""Who a project's mail may go to: its members and the addresses its settings name — never anyone else."""

from __future__ import annotations

import re
from email.utils import formataddr, parseaddr

from portal import names, projects
from portal.errors import Invalid
from portal.tables import Project

_SPLIT = re.compile(r"[,;\n]+")


def entries(value) -> list[str]:
    """A list of recipients from a JSON list or a comma/semicolon/newline separated string."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = _SPLIT.split(value)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise Invalid("Recipients must be a list of addresses or usernames.", "invalid_recipients")
    return [v.strip() for v in value if v.strip()]


def configured(project: Project) -> list[str]:
    """The addresses the project's settings name (default recipients and alert recipients)."""
    conf = projects.settings_of(project)
    return [*entries(conf.get("email_recipients")), *entries(conf.get("alert_recipients"))]


async def directory(project: Project) -> dict[str, dict]:
    """{lowercased email or username: {"address", "username"|None}} of everyone the project may mail."""
    out: dict[str, dict] = {}
    for entry in configured(project):
        name, email = parseaddr(entry)
        if "@" in email:
            out[email.lower()] = {"address": formataddr((name, email)) if name else email, "username": None}
    for m in await projects.members(project):
        if not m["is_active"] or not m["email"]:
            continue
        found = {"address": formataddr((m["username"], m["email"])), "username": m["username"], "role": m["role"]}
        out[m["email"].lower()] = found
        out[m["username"].lower()] = found
    return out


async def resolve(project: Project, wanted: list[str]) -> list[dict]:
    """The allowed recipients for `wanted` (usernames or addresses), in order and without repeats.

    Anything outside the project's members and configured addresses is refused with a 400 naming it.
    """
    known = await directory(project)
    out, refused, seen = [], [], set()
    for entry in wanted:
        _, email = parseaddr(entry)
        hit = known.get(entry.lower()) or (known.get(email.lower()) if email else None)
        if hit is None:
            refused.append(entry)
        elif hit["address"] not in seen:
            seen.add(hit["address"])
            out.append(hit)
    if refused:
        raise Invalid(f"Not allowed as recipient(s): {', '.join(refused)}. Mail about project '{project.name}' "
                      "may go only to its members and the addresses in its settings.", "recipient_not_allowed",
                      fields={"to": "not a project member or configured address"})
    return out


async def check_settings(project: Project, email_recipients: list[str], alert_recipients: list[str]) -> dict:
    """Validated mail settings: default recipients are addresses; alert recipients addresses or member usernames."""
    member_names = {m["username"] for m in await projects.members(project)}
    for label, values, usernames_ok in (("Default recipients", email_recipients, False),
                                        ("Alert recipients", alert_recipients, True)):
        for v in values:
            _, address = parseaddr(v)
            if usernames_ok and v in member_names:
                continue
            if not address or not names.email(address) or len(v) > 320:
                raise Invalid(f"{label}: '{v[:80]}' is not an email address"
                              + (" or a member's username." if usernames_ok else "."), "invalid_email")
    return {"email_recipients": email_recipients, "alert_recipients": alert_recipients}


def defaults(project: Project) -> list[str]:
    """The project's default recipients of flags."""
    return entries(projects.settings_of(project).get("email_recipients"))
