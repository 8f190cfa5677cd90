"""Projects over the API: list, create, show; bad names; visibility."""

import pytest

from portal import projects
from portal.tables import Archive, AuditEvent, Project

from tests.helpers import creds, make_project, make_user


async def test_admin_creates_project_with_default_archive(client):
    await make_user("boss", admin=True)
    r = await client.post("/api/v1/projects", json={"name": "chest-qc", "description": "CR QC"}, headers=creds("boss"))
    assert r.status_code == 201, r.text
    assert r.json()["archives"] == ["default"]
    r = await client.get("/api/v1/projects/chest-qc", headers=creds("boss"))
    assert r.status_code == 200 and r.json()["archives"] == ["default"]
    assert await AuditEvent.count().where(AuditEvent.action == "project_created") == 1


@pytest.mark.parametrize("body,status", [
    ({"name": "chest-qc"}, 409),
    ({"name": ""}, 400),
    ({"name": "../etc"}, 400),
    ({"name": "has space"}, 400),
    ({"name": "x" * 65}, 400),
    ({"name": "ünïcode"}, 400),
    ({}, 400),
    ({"name": 5}, 400),
])
async def test_bad_project_names_change_nothing(client, body, status):
    await make_user("boss", admin=True)
    await make_project("chest-qc")
    r = await client.post("/api/v1/projects", json=body, headers=creds("boss"))
    assert r.status_code == status, r.text
    assert r.json()["detail"]
    assert await Project.count() == 1 and await Archive.count() == 1


async def test_members_see_their_projects_only(client):
    await make_project("a", {"ana": "viewer"})
    await make_project("b", {"bob": "manager"})
    r = await client.get("/api/v1/projects", headers=creds("ana"))
    assert [p["name"] for p in r.json()] == ["a"] and r.json()[0]["role"] == "viewer"
    # A project the caller cannot see is as absent as one that does not exist.
    r_hidden = await client.get("/api/v1/projects/b", headers=creds("ana"))
    r_absent = await client.get("/api/v1/projects/zzz", headers=creds("ana"))
    assert r_hidden.status_code == r_absent.status_code == 404
    assert r_hidden.json()["error"] == "object_not_found"


async def test_duplicate_archive_and_unknown_role_are_refused(app):
    p = await make_project("a", {"ana": "viewer"})
    from portal.errors import Conflict, Invalid, NotFound

    with pytest.raises(Conflict):
        await projects.create_archive(p, "default")
    with pytest.raises(Invalid):
        await projects.set_member(p, "ana", "overlord")
    with pytest.raises(NotFound):
        await projects.set_member(p, "nobody", "viewer")
    assert [m["role"] for m in await projects.members(p)] == ["viewer"]
