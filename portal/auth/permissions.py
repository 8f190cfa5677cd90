"""Roles, permission codes, and the one function that answers "may this user do P in project X".

Permission codes include the CAD4TB-style names of the API v1 reference; roles grant them.
Admins may do everything everywhere.
"""

from __future__ import annotations

from portal import rowcache
from portal.errors import NotFound, PermissionDenied
from portal.tables import Membership, Project, User

ROLES = ("viewer", "reviewer", "senior_reviewer", "manager")

_VIEW = {
    "view_project",
    "api_get_patient", "api_get_study", "api_list_studies", "api_get_series", "api_list_series",
    "api_dicom_get", "api_series_results", "api_list_forms",
}
_REVIEW = _VIEW | {
    "review_series", "submit_form", "api_add_form_submission", "upload_project", "api_instance_upload",
    "flag_series", "request_inference",
}
_SENIOR = _REVIEW | {"review_series_senior"}
_MANAGE = _SENIOR | {
    "manage_project", "manage_members", "manage_forms", "import_export",
    "api_delete_patient", "api_delete_study", "api_delete_series",
}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset(_VIEW),
    "reviewer": frozenset(_REVIEW),
    "senior_reviewer": frozenset(_SENIOR),
    "manager": frozenset(_MANAGE),
}
ALL_PERMISSIONS = frozenset().union(*ROLE_PERMISSIONS.values())


async def role_of(user: User, project: Project) -> str | None:
    async def load():
        row = await Membership.select(Membership.role).where(
            (Membership.user == user.id) & (Membership.project == project.id)).first()
        return row["role"] if row else None

    return await rowcache.get(("role", user.id, project.id), load)


async def permissions(user: User, project: Project) -> frozenset[str]:
    if user.is_admin:
        return ALL_PERMISSIONS
    role = await role_of(user, project)
    return ROLE_PERMISSIONS.get(role, frozenset()) if role else frozenset()


async def may(user: User, permission: str, project: Project) -> bool:
    """Whether `user` may do `permission` in `project`."""
    assert permission in ALL_PERMISSIONS, f"unknown permission {permission!r}"
    return permission in await permissions(user, project)


async def project_for(user: User, name: str, permission: str = "view_project") -> Project:
    """The project `name` if `user` may do `permission` in it.

    A project the user cannot see raises NotFound, exactly as a missing one does, so its
    existence does not leak; one they can see but not act on raises PermissionDenied.
    """
    project = await rowcache.get(("project", name), lambda: Project.objects().get(Project.name == name)) \
        if name else None
    granted = await permissions(user, project) if project is not None else frozenset()
    if project is None or "view_project" not in granted:
        raise NotFound(f"No project named '{name}' that you can see.", "project_not_found")
    if permission not in granted:
        raise PermissionDenied(f"Your role in project '{name}' does not allow this ({permission}).",
                               "permission_denied")
    return project


async def may_anywhere(user: User, permission: str) -> bool:
    """Whether `user` may do `permission` in at least one project (a cheap check before reading a big body)."""
    if user.is_admin:
        return True
    roles = [r for r, granted in ROLE_PERMISSIONS.items() if permission in granted]
    return await Membership.exists().where((Membership.user == user.id) & Membership.role.is_in(roles))


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise PermissionDenied("Only administrators may do this.", "admin_required")
