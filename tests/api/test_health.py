async def test_healthz_reports_backends(client, settings):
    r = await client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["database"] == settings.database_kind
    assert body["queue"] == settings.queue_kind
    assert body["version"]


async def test_openapi_schema_lists_api_paths(client):
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for p in ("/api-token-auth", "/api/v1/users", "/api/v1/users/me", "/api/v1/projects", "/healthz"):
        assert p in paths
