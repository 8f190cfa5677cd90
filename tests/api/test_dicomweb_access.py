"""DICOMweb for viewers without glue: the portal's session cookie for reads, HTTP Basic, tokens, and CORS."""

import base64
import uuid

import httpx
import pytest

from portal import settings as settings_mod
from portal.archive import ingest
from portal.auth import tokens
from portal.auth.accounts import get as get_user
from portal.dicom import samples
from tests.helpers import PASSWORD, form_post, login, make_project

QIDO = "/dicomweb/chest/studies"


def basic(username: str, password: str = PASSWORD) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


@pytest.fixture
async def chest(app, tmp_path):
    project = await make_project("chest", {"rev": "reviewer", "out": "viewer"})
    await make_project("other")
    f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "one.dcm")
    assert (await ingest.ingest_file(f, project)).status == "stored"
    return project


def stow_body(path) -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    body = f"--{b}\r\nContent-Type: application/dicom\r\n\r\n".encode() + path.read_bytes() + f"\r\n--{b}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={b}'


async def test_the_portal_session_reads_dicomweb_but_does_not_store(client, chest, tmp_path):
    assert (await client.get(QIDO)).status_code == 401
    await login(client, "rev")
    r = await client.get(QIDO)
    assert r.status_code == 200 and len(r.json()) == 1
    study = r.json()[0]["0020000D"]["Value"][0]
    assert (await client.get(f"/dicomweb/chest/studies/{study}/metadata")).status_code == 200
    assert (await client.get("/dicomweb/other/studies")).status_code == 404  # not a member there
    body, ctype = stow_body(samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "two.dcm"))
    r = await client.post("/dicomweb/chest/studies", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 401 and r.json()["suberror"] == "session_not_accepted"
    assert (await form_post(client, "/logout", {})).status_code == 303  # logout is POST only
    assert (await client.get(QIDO)).status_code == 401


async def test_http_basic_and_tokens(client, chest, tmp_path):
    assert (await client.get(QIDO, headers=basic("rev"))).status_code == 200
    assert (await client.get(QIDO, headers=basic("rev"))).status_code == 200  # remembered, same answer
    wrong = await client.get(QIDO, headers=basic("rev", "not-the-password"))
    assert wrong.status_code == 401 and wrong.json()["suberror"] == "invalid_credentials"
    garbled = await client.get(QIDO, headers={"Authorization": "Basic %%%"})
    assert garbled.status_code == 401 and garbled.json()["suberror"] == "invalid_authorization_header"
    body, ctype = stow_body(samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "two.dcm"))
    r = await client.post("/dicomweb/chest/studies", content=body, headers={**basic("rev"), "Content-Type": ctype})
    assert r.status_code == 200, r.text
    # A viewer's role still limits it: a viewer may not store.
    r = await client.post("/dicomweb/chest/studies", content=body, headers={**basic("out"), "Content-Type": ctype})
    assert r.status_code == 403
    key = await tokens.issue(await get_user("out"), "viewer")
    r = await client.get(QIDO, headers={"Authorization": f"Token {key}"})
    assert r.status_code == 200 and len(r.json()) == 2


@pytest.fixture
async def cors_client(lb_env, chest):
    from portal.app import create_app

    app = create_app(settings_mod.load({**lb_env, "LIGHTBOX_CORS_ORIGINS": "http://viewer.test, https://ohif.example"}))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_cors_for_configured_origins_with_preflight(cors_client):
    pre = await cors_client.options(QIDO, headers={"Origin": "http://viewer.test",
                                                   "Access-Control-Request-Method": "GET",
                                                   "Access-Control-Request-Headers": "authorization,accept"})
    assert pre.status_code in (200, 204), pre.text
    assert pre.headers["access-control-allow-origin"] == "http://viewer.test"
    assert pre.headers["access-control-allow-credentials"] == "true"
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    r = await cors_client.get(QIDO, headers={"Origin": "https://ohif.example", **basic("rev")})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://ohif.example"
    stranger = await cors_client.get(QIDO, headers={"Origin": "http://evil.test", **basic("rev")})
    assert "access-control-allow-origin" not in stranger.headers
    bad_pre = await cors_client.options(QIDO, headers={"Origin": "http://evil.test",
                                                       "Access-Control-Request-Method": "GET"})
    assert bad_pre.headers.get("access-control-allow-origin") != "http://evil.test"


async def test_no_cors_headers_when_no_origin_is_configured(client, chest):
    r = await client.get(QIDO, headers={"Origin": "http://viewer.test", **basic("rev")})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


async def test_a_remembered_basic_header_ends_with_a_password_change(client, chest):
    from portal.auth import passwords
    from portal.tables import User

    assert (await client.get(QIDO, headers=basic("rev"))).status_code == 200  # verified, remembered
    await User.update({User.password_hash: passwords.hash_password("a-new-password-1")}).where(User.username == "rev")
    r = await client.get(QIDO, headers=basic("rev"))
    assert r.status_code == 401 and r.json()["suberror"] == "invalid_credentials"
    assert (await client.get(QIDO, headers=basic("rev", "a-new-password-1"))).status_code == 200
