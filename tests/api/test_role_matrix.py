"""Role x route matrix: every route of the foundation, for every kind of caller.

Each role gets exactly what it should: allowed → the route's success status, a project it is not a
member of → 404 (existence does not leak), a member without the permission → 403, no
credentials → 401 on the API and a redirect to /login in the portal.

Two projects: every role is a member of 'p' only; 'q' and its private forms are 404 to all but admins.
Forms are covered by name: p's own form, a built-in, and q's private forms asked for from inside p.
"""

import pytest

from portal import forms
from portal.auth import accounts, tokens
from portal.forms.builtin import _f
from tests.helpers import creds, form_post, login, make_project, make_user

ROLES = ["anonymous", "outsider", "viewer", "reviewer", "senior_reviewer", "manager", "admin"]
MEMBERS = {"viewer", "reviewer", "senior_reviewer", "manager"}

# (method, path, form/json body, who may, success status). "members" = any member role; "managers" =
# manager role; admins may do everything.
PORTAL = [
    ("GET", "/projects", None, "all", 200),
    ("POST", "/projects", {"name": "new-project"}, "admin", 303),
    ("GET", "/projects/p", None, "members", 200),
    ("GET", "/projects/p/settings", None, "managers", 200),
    ("GET", "/projects/p/upload", None, "reviewers", 200),
    ("POST", "/projects/p/settings/archives", {"name": "site-b"}, "managers", 303),
    ("POST", "/projects/p/settings/dicom", {"ae_titles": "CT1", "ae_callers": ""}, "managers", 303),
    ("GET", "/projects/p/ai", None, "members", 200),
    ("POST", "/projects/p/ai/settings", {"rows": "1", "rule-0-model": "lightbox-quality", "quiet": "5",
                                         "threshold": "0.5"}, "managers", 303),
    ("POST", "/projects/p/settings/members", {"username": "target", "role": "reviewer"}, "managers", 303),
    ("POST", "/projects/p/settings/members/leaver/remove", {}, "managers", 303),
    ("GET", "/admin/users", None, "admin", 200),
    ("POST", "/admin/users", {"username": "newbie", "password": "long-enough-pw"}, "admin", 303),
    ("GET", "/admin/users/target", None, "admin", 200),
    ("POST", "/admin/users/target/password", {"password": "another-pass-1", "password2": "another-pass-1"}, "admin", 303),
    ("POST", "/admin/users/target/tokens", {"name": "ci"}, "admin", 200),
    ("POST", "/admin/users/target/tokens/{token_id}/revoke", {}, "admin", 303),
    ("POST", "/admin/users/target/admin", {"is_admin": "1"}, "admin", 303),
    ("POST", "/admin/users/target/active", {"active": "0"}, "admin", 303),
    # Mail and oversight (issue 8)
    ("GET", "/notifications", None, "all", 200),
    ("GET", "/projects/p/settings/mail", None, "managers", 200),
    ("POST", "/projects/p/settings/mail", {"email_recipients": "board@hospital.test"}, "managers", 200),
    ("GET", "/admin/outbox", None, "admin", 200),
    ("GET", "/admin/audit", None, "admin", 200),
    ("GET", "/admin/signups", None, "admin", 200),
    ("POST", "/admin/site", {"signup": "closed"}, "admin", 303),
    # Report forms by name (issue 13): p's own, a built-in, and q's private form (404 as if missing)
    ("GET", "/projects/p/forms", None, "managers", 200),
    ("GET", "/projects/p/forms/p-form", None, "managers", 200),
    ("GET", "/projects/p/forms/cxr-tb-screening", None, "managers", 200),
    ("POST", "/projects/p/forms/p-form/move", {"direction": "up"}, "managers", 303),
    ("POST", "/projects/p/forms/q-form/assign", {}, "q-form-in-p", 303),
    ("POST", "/projects/p/forms/q-form2/unassign", {}, "q-form-in-p", 404),
    ("GET", "/projects/q", None, "admin-else-404", 200),
    ("GET", "/projects/q/forms/q-form", None, "admin-else-404", 200),
    ("GET", "/account", None, "all", 200),
]
API = [
    ("GET", "/api/v1/users", None, "all", 200),
    ("GET", "/api/v1/users/me", None, "all", 200),
    ("GET", "/api/v1/projects", None, "all", 200),
    ("POST", "/api/v1/projects", {"name": "api-project"}, "admin", 201),
    ("GET", "/api/v1/projects/p", None, "members", 200),
    ("GET", "/api/v1/projects/q", None, "admin-else-404", 200),
    ("GET", "/api/v1/forms?Project=p", None, "members", 200),
    ("GET", "/api/v1/forms/p-form?Project=p", None, "members", 200),
    ("GET", "/api/v1/forms/q-form2?Project=p", None, "admin-else-404", 404),
    ("GET", "/api/v1/forms/q-form2?Project=q", None, "admin-else-404", 200),
]


def expected(role: str, who: str, ok: int, api: bool, project_route: bool) -> int:
    if role == "anonymous":
        return 401 if api else 303
    if who == "admin-else-404":
        return ok if role == "admin" else 404
    if who == "q-form-in-p":  # p's managers: 404 as for a missing form; p's other members may not manage forms
        return ok if role == "admin" else 404 if role in ("manager", "outsider") else 403
    allowed = (role == "admin" or who == "all" or (who == "members" and role in MEMBERS)
               or (who == "reviewers" and role in MEMBERS - {"viewer"})
               or (who == "managers" and role == "manager"))
    if allowed:
        return ok
    if project_route and role == "outsider":
        return 404
    return 403


@pytest.mark.parametrize("role", ROLES)
async def test_role_route_matrix(client, role):
    members = {"target": "viewer", "leaver": "viewer"}
    if role in MEMBERS:
        members[role] = role
    p = await make_project("p", members)
    q = await make_project("q", {"qboss": "manager"})
    fields = [_f("answer", "text", "Answer")]
    await forms.save_definition(p, {"name": "p-form", "title": "P form", "description": "", "fields": fields},
                                by=await accounts.get("target"))
    for name in ("q-form", "q-form2"):
        await forms.save_definition(q, {"name": name, "title": "Q private", "description": "", "fields": fields},
                                    by=await accounts.get("qboss"))
    if role == "outsider":
        await make_user("outsider")
    if role == "admin":
        await make_user("admin", admin=True)
    target = await accounts.get("target")
    await tokens.issue(target, "to revoke")
    token_id = (await tokens.list_for(target))[0].id

    if role != "anonymous":
        await login(client, role)
    else:
        await client.get("/login")  # a CSRF cookie, so refusals are about identity, not CSRF

    failures = []
    for method, path, body, who, ok in PORTAL:
        path = path.format(token_id=token_id)
        r = await (form_post(client, path, body) if method == "POST" else client.get(path))
        want = expected(role, who, ok, api=False, project_route=path.startswith("/projects/p"))
        if r.status_code != want:
            failures.append(f"{role} {method} {path}: {r.status_code} != {want}")
        if want == 303 and role == "anonymous" and not r.headers["location"].startswith("/login"):
            failures.append(f"{role} {method} {path}: not sent to /login")

    headers = {} if role == "anonymous" else creds(role if role != "admin" else "admin")
    for method, path, body, who, ok in API:
        r = await client.request(method, path, json=body, headers=headers, cookies={})
        want = expected(role, who, ok, api=True,
                        project_route=path.startswith("/api/v1/projects/p") or "Project=p" in path)
        if r.status_code != want:
            failures.append(f"{role} API {method} {path}: {r.status_code} != {want}")
        if r.status_code >= 400:
            assert set(r.json()) >= {"error", "suberror", "detail"}
    assert not failures, "\n".join(failures)


async def test_api_ignores_portal_session(client):
    """A browser session is not an API credential (the API is CSRF-exempt because of that)."""
    await make_user("admin", admin=True)
    await login(client, "admin")
    assert (await client.get("/api/v1/users/me")).status_code == 401


async def test_portal_form_without_csrf_token_is_refused(client):
    await make_user("admin", admin=True)
    await login(client, "admin")
    r = await client.post("/projects", data={"name": "sneaky"})
    assert r.status_code == 403
    from portal.tables import Project

    assert await Project.count() == 0
