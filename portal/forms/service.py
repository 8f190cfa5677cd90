"""Report forms in the database: versions, built-ins, which forms a project uses, and submissions."""

from __future__ import annotations

import json

from portal import audit, clock
from portal.auth import permissions
from portal.errors import Conflict, NotFound, PermissionDenied
from portal.forms.builtin import BUILTIN_FORMS
from portal.forms.formatting import format_entry
from portal.forms.schema import check_definition
from portal.forms.validation import validate_entry
from portal.tables import FormDefinition, FormOwner, FormSubmission, Membership, Project, ProjectForm, Series, User

# What a definition looks like outside this module (the API returns these keys, "id" excepted).
DEFINITION_KEYS = ("name", "version", "title", "description", "fields")


def _loads(value):
    """JSON columns come back as text from some backends and queries."""
    return json.loads(value) if isinstance(value, str) else value


def _definition(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"], "version": row["version"], "title": row["title"],
            "description": row["description"], "fields": _loads(row["fields"]) or [],
            "created_by": row["created_by"], "created": clock.iso(row["created_at"])}


def public(definition: dict) -> dict:
    """A definition as the API shows it: name, version, title, description and fields."""
    return {key: definition[key] for key in DEFINITION_KEYS}


async def versions(name: str) -> list[dict]:
    """Every saved version of form `name`, newest first."""
    rows = await FormDefinition.select().where(FormDefinition.name == name).order_by(
        FormDefinition.version, ascending=False)
    return [_definition(r) for r in rows]


async def latest(name: str) -> dict | None:
    row = await FormDefinition.select().where(FormDefinition.name == name).order_by(
        FormDefinition.version, ascending=False).first()
    return _definition(row) if row else None


async def version(name: str, number: int) -> dict | None:
    row = await FormDefinition.select().where(FormDefinition.key == f"{name}:{number}").first()
    return _definition(row) if row else None


async def _latest_of(names: list[str]) -> dict[str, dict]:
    if not names:
        return {}
    rows = await FormDefinition.select().where(FormDefinition.name.is_in(names)).order_by(
        FormDefinition.version, ascending=False)
    out: dict[str, dict] = {}
    for row in rows:
        out.setdefault(row["name"], _definition(row))
    return out


def not_found(project: Project, name: str, have: list[str] | None = None) -> NotFound:
    """The one answer for a form a project may not use, whether it exists elsewhere or nowhere."""
    listing = f" (its forms: {', '.join(have) or 'none'})" if have is not None else ""
    return NotFound(f"Project '{project.name}' has no form named '{name}'{listing}.", "form_not_found")


BUILTIN_NAMES = frozenset(raw["name"] for raw in BUILTIN_FORMS)


async def _owners(names: list[str]) -> dict[str, dict]:
    rows = await FormOwner.select().where(FormOwner.name.is_in(names)) if names else []
    return {r["name"]: r for r in rows}


async def _managed_ids(user: User) -> set[int]:
    """The projects whose forms `user` may hand to another project: those they manage forms in."""
    roles = [r for r, granted in permissions.ROLE_PERMISSIONS.items() if "manage_forms" in granted]
    return set(await Membership.select(Membership.project).where(
        (Membership.user == user.id) & Membership.role.is_in(roles)).output(as_list=True))


async def usable_names(project: Project, names: list[str], user: User | None) -> set[str]:
    """Which of `names` `project` may use: built-in and shared forms, its own, those already assigned to it,
    and (for `user`) forms of projects whose forms `user` manages. Administrators may use any form."""
    if user is not None and user.is_admin:
        return set(names)
    owners = await _owners(names)
    assigned = {a.form_name for a in await _assignments(project)}
    managed: set[int] | None = None
    out = set()
    for name in names:
        owner = owners.get(name)
        if name in BUILTIN_NAMES or name in assigned or (owner and (owner["shared"] or owner["project"] == project.id)):
            out.add(name)
        elif owner and owner["project"] is not None and user is not None:
            managed = await _managed_ids(user) if managed is None else managed
            if owner["project"] in managed:
                out.add(name)
    return out


async def library(project: Project, user: User | None = None) -> list[dict]:
    """The newest version of every form `project` may use (see usable_names), by name."""
    names = await FormDefinition.select(FormDefinition.name).distinct().output(as_list=True)
    usable = await usable_names(project, names, user)
    latest_by_name = await _latest_of(sorted(usable))
    return [latest_by_name[n] for n in sorted(latest_by_name)]


async def share(name: str, shared: bool, *, by: User, client: str = "") -> None:
    """An administrator makes a form available to every project (or stops doing so)."""
    permissions.require_admin(by)
    if await latest(name) is None:
        raise NotFound(f"There is no form named '{name}'.", "form_not_found")
    if await FormOwner.exists().where(FormOwner.name == name):
        await FormOwner.update({FormOwner.shared: shared}).where(FormOwner.name == name)
    else:
        await FormOwner.insert(FormOwner(name=name, project=None, shared=shared))
    await audit.record("form_shared" if shared else "form_unshared", user=by, object=f"form:{name}", client=client)


async def _insert(definition: dict, number: int, by: str) -> dict | None:
    """Store `definition` as version `number`; None when that version exists already (a concurrent save)."""
    row = FormDefinition(key=f"{definition['name']}:{number}", name=definition["name"], version=number,
                         title=definition["title"], description=definition["description"],
                         fields=definition["fields"], created_by=by, created_at=clock.now())
    inserted = await FormDefinition.insert(row).on_conflict(
        target=FormDefinition.key, action="DO NOTHING").returning(FormDefinition.id)
    return await version(definition["name"], number) if inserted else None


async def ensure_builtin_forms() -> None:
    """Store version 1 of each built-in form that does not exist yet; safe to call any number of times."""
    for raw in BUILTIN_FORMS:
        if not await FormDefinition.exists().where(FormDefinition.name == raw["name"]):
            await _insert(check_definition(raw), 1, "lightbox")


# --- which forms a project uses ---------------------------------------------------------------


async def _assignments(project: Project) -> list[ProjectForm]:
    return await ProjectForm.objects().where(ProjectForm.project == project.id).order_by(
        ProjectForm.position).order_by(ProjectForm.id)


async def forms_of(project: Project) -> list[dict]:
    """The newest version of each form assigned to `project`, in the project's order."""
    names = [a.form_name for a in await _assignments(project)]
    latest_by_name = await _latest_of(names)
    return [latest_by_name[n] for n in names if n in latest_by_name]


async def assign(project: Project, name: str, *, by: User | None = None, client: str = "",
                 position: int | None = None) -> None:
    """Show form `name` in `project`; only a form the project may use (usable_names), else 404 as if missing."""
    if not await FormDefinition.exists().where(FormDefinition.name == name) or \
            name not in await usable_names(project, [name], by):
        raise not_found(project, name)
    assigned = await _assignments(project)
    if any(a.form_name == name for a in assigned):
        return
    row = ProjectForm(key=f"{project.id}:{name}", project=project.id, form_name=name,
                      position=max((a.position for a in assigned), default=-1) + 1)
    await ProjectForm.insert(row).on_conflict(target=ProjectForm.key, action="DO NOTHING")
    if position is not None:
        await _reorder(project, [a.form_name for a in assigned[:position]] + [name]
                       + [a.form_name for a in assigned[position:]])
    await audit.record("form_assigned", user=by, object=f"project:{project.name}/form:{name}", client=client)


async def unassign(project: Project, name: str, *, by: User | None = None, client: str = "") -> None:
    """Stop showing form `name` in `project`; its submissions stay and remain visible on the series."""
    where = (ProjectForm.project == project.id) & (ProjectForm.form_name == name)
    if not await ProjectForm.exists().where(where):
        raise not_found(project, name)
    await ProjectForm.delete().where(where)
    await audit.record("form_unassigned", user=by, object=f"project:{project.name}/form:{name}", client=client)


async def move(project: Project, name: str, offset: int) -> None:
    """Move form `name` up (-1) or down (+1) in the project's order."""
    names = [a.form_name for a in await _assignments(project)]
    if name not in names:
        raise not_found(project, name)
    i = names.index(name)
    j = min(max(i + offset, 0), len(names) - 1)
    names[i], names[j] = names[j], names[i]
    await _reorder(project, names)


async def _reorder(project: Project, names: list[str]) -> None:
    for position, name in enumerate(names):
        await ProjectForm.update({ProjectForm.position: position}).where(
            ProjectForm.key == f"{project.id}:{name}")


async def assign_builtin_forms(project: Project) -> None:
    """Give `project` the built-in forms (new projects get them; calling again changes nothing)."""
    await ensure_builtin_forms()
    for raw in BUILTIN_FORMS:
        await assign(project, raw["name"])


async def find_form(project: Project, name: str) -> dict:
    """The assigned form a caller means by `name`: its exact name, else its name or title in any case.

    Titles need not be unique, so a loose match can find several forms: that is
    `multiple_objects_found` (409), and the caller should use the exact name.
    """
    forms = await forms_of(project)
    for form in forms:
        if form["name"] == name:
            return form
    needle = (name or "").strip().lower()
    matches = [f for f in forms if needle and needle in (f["name"].lower(), f["title"].lower())]
    if len(matches) > 1:
        raise Conflict(f"'{name}' matches {len(matches)} forms of project '{project.name}' "
                       f"({', '.join(f['name'] for f in matches)}); pass the exact FormName.",
                       "multiple_forms_found", error="multiple_objects_found")
    if not matches:
        raise not_found(project, name, [f["name"] for f in forms])
    return matches[0]


# --- saving a definition ----------------------------------------------------------------------


async def _check_may_change(name: str, project: Project, user: User) -> None:
    """A form shared with projects the user does not manage must be saved under a new name instead."""
    used_by = await ProjectForm.select(ProjectForm.project).where(
        (ProjectForm.form_name == name) & (ProjectForm.project != project.id)).output(as_list=True)
    others = await Project.objects().where(Project.id.is_in(used_by)) if used_by else []
    not_managed = [p for p in others if not await permissions.may(user, "manage_forms", p)]
    if not_managed:
        raise PermissionDenied(
            f"'{name}' is also used by {len(not_managed)} other project(s) that you do not manage. Save your "
            "changes as a new form instead: it replaces this one in this project only.", "form_shared",
            fields={"save_as": "enter a new form name"})


async def save_definition(project: Project, raw: dict, *, by: User, client: str = "",
                          base_version: int | None = None, replaces: str | None = None) -> tuple[dict, bool]:
    """Save `raw` as the next version of its form (version 1 for a new form); never changes a saved one.

    Returns (definition, created): an unchanged definition creates nothing. `base_version` is the version
    the editor started from: if someone saved another version meanwhile, Conflict. A new form is assigned
    to `project`, in the place of `replaces` when it is a copy of another form.
    """
    definition = check_definition(raw)
    name = definition["name"]
    current = await latest(name)
    if current is not None:
        if replaces or not any(a.form_name == name for a in await _assignments(project)):
            raise Conflict(f"A form named '{name}' exists already; choose another name.", "duplicate_form",
                           fields={"save_as" if replaces else "name": "name taken"})
        if base_version is not None and base_version != current["version"]:
            raise Conflict(f"{current['created_by']} saved version {current['version']} of '{name}' while you "
                           "were editing. Reload the form to see it, then make your changes again.", "stale_version")
        if all(current[k] == definition[k] for k in ("title", "description", "fields")):
            return current, False
        if not by.is_admin:
            await _check_may_change(name, project, by)
    number = current["version"] + 1 if current else 1
    saved = await _insert(definition, number, by.username)
    if saved is None:
        raise Conflict(f"Version {number} of '{name}' was saved by someone else a moment ago. Reload and try again.",
                       "stale_version")
    if current is None:
        # A new form belongs to the project it was made in.
        await FormOwner.insert(FormOwner(name=name, project=project.id)).on_conflict(
            target=FormOwner.name, action="DO NOTHING")
        names = [a.form_name for a in await _assignments(project)]
        position = names.index(replaces) if replaces in names else None
        await assign(project, name, by=by, client=client, position=position)
        if replaces in names:
            await unassign(project, replaces, by=by, client=client)
    await audit.record("form_saved", user=by, object=f"project:{project.name}/form:{name}:{number}",
                       detail={"version": number, "fields": len(definition["fields"])}, client=client)
    return saved, True


# --- submissions ------------------------------------------------------------------------------


def _submission(row: dict, series_uid: str) -> dict:
    return {"id": row["id"], "form": row["form.name"], "form_version": row["form.version"],
            "form_title": row["form.title"], "entry": _loads(row["entry"]) or {},
            "entry_formatted": row["entry_formatted"], "user": row["user_email"], "username": row["username"],
            "series": series_uid, "created": clock.iso(row["created_at"])}


async def submissions_of(series: Series, form_name: str | None = None) -> list[dict]:
    """The series' submissions, newest first, each with the form version it was made with."""
    query = FormSubmission.select(
        FormSubmission.id, FormSubmission.entry, FormSubmission.entry_formatted, FormSubmission.username,
        FormSubmission.user_email, FormSubmission.created_at, FormSubmission.form.name,
        FormSubmission.form.version, FormSubmission.form.title,
    ).where(FormSubmission.series == series.id).order_by(FormSubmission.created_at, ascending=False).order_by(
        FormSubmission.id, ascending=False)
    if form_name is not None:
        query = query.where(FormSubmission.form.name == form_name)
    return [_submission(r, series.series_instance_uid) for r in await query]


async def submit(series: Series, project: Project, user: User, form_name: str, entry: dict, *,
                 client: str = "") -> dict:
    """Validate `entry` against the newest version of the project's form and store it with that version.

    An edit is a new submission: nothing earlier is changed.
    """
    form = await find_form(project, form_name)
    cleaned = validate_entry(form, entry)
    row = FormSubmission(project=project.id, series=series.id, form=form["id"], user=user.id,
                         username=user.username, user_email=user.email or "", entry=cleaned,
                         entry_formatted=format_entry(form, cleaned), created_at=clock.now())
    await row.save()
    await audit.record("form_submitted", user=user,
                       object=f"project:{project.name}/series:{series.series_instance_uid}/form:{form['name']}",
                       detail={"submission": row.id, "version": form["version"]}, client=client)
    return {"id": row.id, "form": form["name"], "form_version": form["version"], "form_title": form["title"],
            "entry": cleaned, "entry_formatted": row.entry_formatted, "user": row.user_email,
            "username": user.username, "series": series.series_instance_uid, "created": clock.iso(row.created_at)}
