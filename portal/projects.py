"""Projects, their archives and their members."""

from __future__ import annotations

import json

from portal import audit, clock, forms, names, rowcache
from portal.auth import accounts
from portal.auth.permissions import ROLES
from portal.errors import Conflict, Invalid, NotFound
from portal.inference import routing, suggestions
from portal.review import vocabulary
from portal.tables import Archive, Membership, Project, User

DEFAULT_ARCHIVE = "default"

# Project settings and their defaults; Project.settings stores only what a manager changed.
DEFAULT_SETTINGS: dict = {
    # What ingest does with an instance that has no PatientID: "assign" one derived from the
    # study, or "reject" the file.
    "missing_patient_id": "assign",
    # Whether a re-sent SOP Instance UID with other bytes replaces the stored file (else 409).
    "allow_overwrite": False,
    # DICOM AE titles that C-STORE callers may address to reach this project.
    "ae_titles": [],
    # Calling AE titles allowed to store into this project over C-STORE; empty: any caller.
    "ae_callers": [],
    # Review vocabulary: decision codes (with the roles that may give each) and artifacts.
    "decisions": vocabulary.DEFAULT_DECISIONS,
    "artifacts": vocabulary.DEFAULT_ARTIFACTS,
    # AI: ordered routing rules (first match wins), seconds of quiet before a series is scored,
    # and the artifact probability above which the series page suggests an artifact.
    "ai_routing": routing.DEFAULT_RULES,
    "ai_quiet_seconds": 5,
    "ai_suggest_threshold": 0.5,
    # AI alerts (portal/inference/alerting.py): mailed at once only for series acquired within this many hours
    # (older ones go to the daily digest); critical thresholds per model name (absent: the model's own).
    "ai_alert_window_hours": 24,
    "ai_critical_thresholds": {},
    # Which project artifact each model output suggests on the decision panel (portal/inference/suggestions.py).
    "ai_artifact_map": suggestions.DEFAULT_MAP,
    # Mail: addresses (outside the members) that flags may go to, prefilled as a flag's recipients; and who
    # gets AI alerts (addresses or member usernames; empty means the project's senior reviewers).
    "email_recipients": [],
    "alert_recipients": [],
    # Import/export (portal/exchange): the file written by exports ("" = {data dir}/exports/{project}/
    # {project}.{format}), the file imports read ("" = the export file, one file both ways as the seed
    # advises), its format, where frames' files are ("store": the stable stored file; "copy": a copy under
    # the export folder), how many timestamped backups to keep, and the sync schedule (0 = off).
    "export_path": "",
    "import_path": "",
    "export_format": "json",
    "export_images": "store",
    "export_backups": 10,
    "sync_every_minutes": 0,
    # DICOM: the node (portal/network) that AI results (SR, secondary capture, PDF) are sent to; "" = none.
    "results_node": "",
    # DICOMweb sync with another repository (portal/network/dicomweb_pull.py): {"node", "query", "days",
    # "every_minutes"}; empty: off.
    "dicomweb_sync": {},
    # Report forms: which series each form applies to, {form name: {modalities, body_parts, sop_classes}}
    # (portal/forms/applicability.py; a form without an entry uses its built-in default, else any series).
    "form_applies": {},
    # Study/series downloads from the portal (archive/download.py): de-identified (DICOM basic profile) when true.
    "download_deidentified": False,
}


def settings_of(project: Project) -> dict:
    stored = project.settings
    if isinstance(stored, str):
        stored = json.loads(stored or "{}")
    return {**DEFAULT_SETTINGS, **(stored or {})}


async def update_settings(project: Project, changes: dict, *, by: User | None = None, client: str = "") -> dict:
    unknown = set(changes) - set(DEFAULT_SETTINGS)
    if unknown:
        raise Invalid(f"Unknown project setting(s): {', '.join(sorted(unknown))}.", "unknown_setting")
    merged = {**settings_of(project), **changes}
    project.settings = merged
    await project.save([Project.settings])
    await audit.record("project_settings_changed", user=by, object=f"project:{project.name}",
                       detail=changes, client=client)
    return merged


async def create(name: str, *, description: str = "", by: User | None = None, client: str = "") -> Project:
    name = names.slug("Project name", name)
    if await Project.exists().where(Project.name == name):
        raise Conflict(f"A project named '{name}' already exists.", "duplicate_project",
                       fields={"name": "already taken"})
    async with Project._meta.db.transaction():
        project = Project(name=name, description=(description or "")[:2000], settings={},
                          created_at=clock.now())
        await project.save()
        await Archive.insert(Archive(project=project.id, name=DEFAULT_ARCHIVE, created_at=clock.now()))
    await forms.assign_builtin_forms(project)  # every project starts with the built-in report forms
    await audit.record("project_created", user=by, object=f"project:{name}", client=client)
    return project


async def get(name: str) -> Project | None:
    return await Project.objects().get(Project.name == name)


async def visible_to(user: User) -> list[Project]:
    """Projects `user` may see: all of them for admins, their memberships otherwise."""
    query = Project.objects().order_by(Project.name)
    if not user.is_admin:
        ids = await Membership.select(Membership.project).where(Membership.user == user.id).output(as_list=True)
        if not ids:
            return []
        query = query.where(Project.id.is_in(ids))
    return await query


async def archives(project: Project) -> list[Archive]:
    return await Archive.objects().where(Archive.project == project.id).order_by(Archive.name)


async def archive(project: Project, name: str | None) -> Archive:
    """The archive `name` of `project` (the default one when no name is given)."""
    name = (name or DEFAULT_ARCHIVE).strip()
    found = await rowcache.get(("archive", project.id, name), lambda: Archive.objects().get(
        (Archive.project == project.id) & (Archive.name == name)))
    if found is None:
        raise NotFound(f"Project '{project.name}' has no archive named '{name}'.", "archive_not_found")
    return found


async def create_archive(project: Project, name: str, *, by: User | None = None, client: str = "") -> Archive:
    name = names.slug("Archive name", name)
    if await Archive.exists().where((Archive.project == project.id) & (Archive.name == name)):
        raise Conflict(f"Project '{project.name}' already has an archive named '{name}'.",
                       "duplicate_archive", fields={"name": "already taken"})
    row = Archive(project=project.id, name=name, created_at=clock.now())
    await row.save()
    await audit.record("archive_created", user=by, object=f"project:{project.name}/archive:{name}", client=client)
    return row


async def members(project: Project) -> list[dict]:
    """[{username, email, role, is_active}] sorted by username."""
    rows = await Membership.select(
        Membership.role, Membership.user.username, Membership.user.email, Membership.user.is_active,
    ).where(Membership.project == project.id)
    out = [{"username": r["user.username"], "email": r["user.email"], "role": r["role"],
            "is_active": r["user.is_active"]} for r in rows]
    return sorted(out, key=lambda m: m["username"].lower())


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise Invalid(f"Unknown role '{role}'. Choose one of: {', '.join(ROLES)}.", "invalid_role",
                      fields={"role": "unknown"})
    return role


async def set_member(project: Project, username: str, role: str, *, by: User | None = None,
                     client: str = "") -> None:
    """Add `username` to `project` with `role`, or change their role."""
    role = _check_role(role)
    user = await accounts.get_or_404((username or "").strip())
    existing = await Membership.objects().get((Membership.project == project.id) & (Membership.user == user.id))
    if existing is None:
        await Membership.insert(Membership(user=user.id, project=project.id, role=role, created_at=clock.now()))
        action, detail = "member_added", {"role": role}
    else:
        if existing.role == role:
            return
        detail = {"role": role, "previous_role": existing.role}
        existing.role = role
        await existing.save([Membership.role])
        action = "member_role_changed"
    await audit.record(action, user=by, object=f"project:{project.name}/user:{user.username}",
                       detail=detail, client=client)


async def remove_member(project: Project, username: str, *, by: User | None = None, client: str = "") -> None:
    user = await accounts.get_or_404(username)
    where = (Membership.project == project.id) & (Membership.user == user.id)
    if not await Membership.exists().where(where):
        raise NotFound(f"'{username}' is not a member of '{project.name}'.", "member_not_found")
    await Membership.delete().where(where)
    await audit.record("member_removed", user=by, object=f"project:{project.name}/user:{username}", client=client)


def as_dict(project: Project, *, role: str | None = None, archive_names: list[str] | None = None) -> dict:
    out = {"name": project.name, "description": project.description,
           "created": clock.iso(project.created_at)}
    if archive_names is not None:
        out["archives"] = archive_names
    if role is not None:
        out["role"] = role
    return out
