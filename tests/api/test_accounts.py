"""Token auth, header auth, users list, throttling and bad input."""

from portal.auth import accounts, tokens
from portal.tables import AuditEvent, User

from tests.helpers import PASSWORD, creds, make_user


async def test_token_auth_with_form_and_json(client):
    await make_user("ana")
    r = await client.post("/api-token-auth/", data={"username": "ana", "password": PASSWORD})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    r = await client.post("/api-token-auth/", json={"username": "ana", "password": PASSWORD})
    assert r.status_code == 200 and r.json()["token"] != token
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Token {token}"})
    assert me.status_code == 200 and me.json()["username"] == "ana"


async def test_token_auth_bad_input(client):
    await make_user("ana")
    r = await client.post("/api-token-auth/", json={"username": "ana"})
    assert r.status_code == 400 and r.json()["suberror"] == "no_data_submitted"
    r = await client.post("/api-token-auth/", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = await client.post("/api-token-auth/", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = await client.post("/api-token-auth/", json={"username": "ana", "password": "wrong-password"})
    assert r.status_code == 401 and r.json()["error"] == "not_authenticated"
    r = await client.post("/api-token-auth/", json={"username": ["x"], "password": 3})
    assert r.status_code == 400
    assert await AuditEvent.count().where(AuditEvent.action == "login_failed") == 1


async def test_header_credentials_and_missing_credentials(client):
    await make_user("ana")
    assert (await client.get("/api/v1/users/me", headers=creds("ana"))).status_code == 200
    r = await client.get("/api/v1/users/me", headers=creds("ana", "nope-nope"))
    assert r.status_code == 401
    r = await client.get("/api/v1/users/me")
    assert r.status_code == 401 and r.json()["suberror"] == "no_credentials"
    r = await client.get("/api/v1/users/me", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


async def test_deactivated_user_token_and_password_stop_working(client):
    user = await make_user("ana")
    key = await tokens.issue(user)
    await accounts.set_active(user, False)
    assert (await client.get("/api/v1/users/me", headers={"Authorization": f"Token {key}"})).status_code == 401
    assert (await client.get("/api/v1/users/me", headers=creds("ana"))).status_code == 401
    r = await client.post("/api-token-auth/", json={"username": "ana", "password": PASSWORD})
    assert r.status_code == 401


async def test_revoked_token_is_refused(client):
    user = await make_user("ana")
    key = await tokens.issue(user)
    (token,) = await tokens.list_for(user)
    await tokens.revoke(user, token.id)
    assert (await client.get("/api/v1/users/me", headers={"Authorization": f"Token {key}"})).status_code == 401


async def test_users_list_shows_emails_to_admins_only(client):
    await make_user("boss", admin=True)
    await make_user("ana", email="ana@example.org")
    as_admin = (await client.get("/api/v1/users", headers=creds("boss"))).json()
    as_user = (await client.get("/api/v1/users", headers=creds("ana"))).json()
    assert {u["username"] for u in as_admin} == {"boss", "ana"}
    assert all("email" in u for u in as_admin)
    assert all("email" not in u for u in as_user)
    assert all("password_hash" not in u for u in as_admin)


async def test_passwords_are_argon2(client):
    await make_user("ana")
    user = await User.objects().get(User.username == "ana")
    assert user.password_hash.startswith("$argon2")
