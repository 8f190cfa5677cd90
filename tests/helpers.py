"""Helpers for tests: accounts, projects and credentials in a few words."""

from __future__ import annotations

from portal import projects
from portal.auth import accounts

PASSWORD = "correct-horse-battery"


async def make_user(username: str, *, admin: bool = False, email: str = "") -> object:
    return await accounts.create(username, PASSWORD, email=email or f"{username}@example.org", is_admin=admin)


async def make_project(name: str = "chest", members: dict[str, str] | None = None):
    """A project with members {username: role}; users are created as needed."""
    project = await projects.create(name)
    for username, role in (members or {}).items():
        if await accounts.get(username) is None:
            await make_user(username)
        await projects.set_member(project, username, role)
    return project


def creds(username: str, password: str = PASSWORD) -> dict:
    """CAD4TB-style credential headers."""
    return {"X-USERNAME": username, "X-PASSWORD": password}


async def login(client, username: str, password: str = PASSWORD):
    """Sign a test client in through the real login form (CSRF cookie included)."""
    r = await client.get("/login")
    token = client.cookies.get("lightbox_csrf")
    r = await client.post("/login", data={"username": username, "password": password, "_csrf_token": token})
    assert r.status_code == 303, r.text
    return r


async def form_post(client, path: str, data: dict, **kw):
    """POST a portal form with the CSRF token the portal issued to this client."""
    if not client.cookies.get("lightbox_csrf"):
        await client.get("/login")
    return await client.post(path, data={**data, "_csrf_token": client.cookies.get("lightbox_csrf")}, **kw)



def labelled_series(root, n: int = 24):
    """A synthetic label set for retraining (see portal.dicom.samples.labelled_series)."""
    from portal.dicom import samples

    return samples.labelled_series(root, n)


def stored_keys(suffix: str = "", prefix: str = "") -> list[str]:
    """The keys in the configured store (local files or S3), sorted; only those ending `suffix`."""
    from portal import storage

    return sorted(k for k, _ in storage.current().keys(prefix) if k.endswith(suffix))


def readable(location: str) -> bool:
    """Whether an export's `file_location` names a file that is there: a path, or an s3:// URI of the store."""
    from pathlib import Path

    from portal import storage

    if location.startswith("s3://"):
        key = storage.current().key_of_uri(location)
        return key is not None and storage.current().exists(key)
    return Path(location).is_file()
