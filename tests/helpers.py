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


def labelled_series(root, n: int = 24) -> list[tuple[str, list, bool]]:
    """A synthetic label set for retraining: `n` two-slice series (CT and MR samples, shifted), every
    other pair with a bright square burned in that reviewers call unusable, a defect the built-in
    model was never taught. [(SeriesInstanceUID, files, bad)]; UIDs are fixed, so is the held-out split."""
    from pathlib import Path

    import numpy as np
    import pydicom

    from portal.dicom import samples

    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        src = samples.sample_path("CT_small.dcm" if i % 2 else "MR_small.dcm")
        bad = i % 4 in (0, 3)
        uid = f"1.2.826.0.1.3680043.8.498.77.{i}"
        files = samples.make_series(src, Path(root) / str(i), 2)
        for f in files:
            ds = pydicom.dcmread(f)
            arr = ds.pixel_array.astype(np.int32)
            h, w = arr.shape
            arr = np.roll(arr, (int(rng.integers(-h // 8, h // 8)), int(rng.integers(-w // 8, w // 8))), axis=(0, 1))
            if bad:
                s = h // 5
                r, c = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
                arr[r:r + s, c:c + s] = arr.max()
            ds.PixelData = arr.astype(ds.pixel_array.dtype).tobytes()
            ds.SeriesInstanceUID = uid
            ds.save_as(f)
        out.append((uid, files, bad))
    return out
