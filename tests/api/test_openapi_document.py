"""The OpenAPI document is precise enough to generate clients from: no operation reads or answers a free-form
JSON object (an object without properties, or a value of any type), every operation says how it fails (a 4xx
in the error shape), and every operation that needs credentials names the schemes it accepts.

tests/api/test_schemathesis.py checks that the answers match these schemas; this checks that there is
something to match.
"""

from __future__ import annotations

PUBLIC = {"/healthz", "/api-token-auth"}
ERROR_REF = "#/components/schemas/Error"


def _loose(schema, where: str, components: dict, seen: tuple = ()) -> list[str]:
    """Where `schema` lets any JSON through: `{}`, an object with neither properties nor a schema of its
    values, an array without items."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return [] if name in seen else _loose(components[name], where, components, (*seen, name))
    if not schema:
        return [f"{where}: any value"]
    out = []
    for key in ("oneOf", "anyOf", "allOf"):
        for i, sub in enumerate(schema.get(key, [])):
            out += _loose(sub, f"{where}/{key}[{i}]", components, seen)
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "object" in types:
        properties, others = schema.get("properties") or {}, schema.get("additionalProperties", True)
        if not properties and others in (True, {}):
            out.append(f"{where}: a free-form object")
        for name, sub in properties.items():
            out += _loose(sub, f"{where}.{name}", components, seen)
        if isinstance(others, dict) and others:
            out += _loose(others, f"{where}.*", components, seen)
    if "array" in types:
        out += _loose(schema["items"], f"{where}[]", components, seen) if "items" in schema else \
            [f"{where}: an array of anything"]
    if None in types and not any(k in schema for k in ("oneOf", "anyOf", "allOf", "enum", "const", "format")):
        out.append(f"{where}: no type")
    return out


def problems_of(doc: dict) -> list[str]:
    components = doc.get("components", {}).get("schemas", {})
    found = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            name = f"{method.upper()} {path}"
            for media, content in (operation.get("requestBody") or {}).get("content", {}).items():
                if "json" in media or "form" in media:
                    found += [f"{name} body {media} {p}" for p in _loose(content.get("schema", {}), "", components)]
            for status, answer in operation["responses"].items():
                if status == "206":
                    continue  # a byte range of a document has no schema of its own
                for media, content in (answer.get("content") or {}).items():
                    if "json" in media:
                        found += [f"{name} {status} {media} {p}"
                                  for p in _loose(content.get("schema", {}), "", components)]
            if not any(ERROR_REF in str(answer) for status, answer in operation["responses"].items()
                       if status.startswith("4")):
                found.append(f"{name}: no 4xx answer in the error shape")
            if path not in PUBLIC and not operation.get("security", doc.get("security")):
                found.append(f"{name}: no security requirement")
    return found


async def test_no_operation_is_left_free_form(client):
    doc = (await client.get("/schema/openapi.json")).json()
    problems = problems_of(doc)
    assert not problems, f"{len(problems)} loose spots:\n" + "\n".join(problems)


async def test_the_audit_sees_loose_schemas():
    loose = {"openapi": "3.1.0", "security": [{"token": []}], "paths": {"/x": {"post": {
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {"200": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"a": {}, "b": {"type": "array"}}}}}}}}}}}
    assert problems_of(loose) == ["POST /x body application/json : a free-form object",
                                  "POST /x 200 application/json .a: any value",
                                  "POST /x 200 application/json .b: an array of anything",
                                  "POST /x: no 4xx answer in the error shape"]


async def test_dicomweb_names_the_schemes_viewers_use(client):
    doc = (await client.get("/schema/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["basic"] == {"type": "http", "scheme": "basic"} and schemes["session"]["in"] == "cookie"
    read = doc["paths"]["/dicomweb/{project}/studies"]["get"]["security"]
    store = doc["paths"]["/dicomweb/{project}/studies"]["post"]["security"]
    assert {"basic": []} in read and {"session": []} in read and {"token": []} in read
    assert {"basic": []} in store and {"session": []} not in store  # the cookie is for reads only
    assert "security" not in doc["paths"]["/api/v1/projects"]["get"]  # the document's own: token or CAD4TB


# --- the answers of real requests are the ones the document describes ------------------------------------


def conforms(doc: dict, method: str, path: str, response) -> None:
    """`response` (to `method path`, a path of the document) is one of the answers the document lists, in
    its media type, matching its schema."""
    import jsonschema

    answers = doc["paths"][path][method]["responses"]
    assert str(response.status_code) in answers, (method, path, response.status_code, response.text[:300])
    media = response.headers["content-type"].split(";")[0].strip()
    schema = answers[str(response.status_code)]["content"][media]["schema"]
    # The schema's "#/components/…" references resolve against the document's components.
    jsonschema.validate(response.json(), {**schema, "components": doc["components"]},
                        cls=jsonschema.Draft202012Validator)


async def test_real_answers_match_the_document(client, tmp_path):
    from portal import projects
    from portal.archive import ingest_path
    from portal.dicom import samples
    from portal.exchange import runs
    from portal.forms import applicability
    from tests.helpers import creds, make_project, make_user

    doc = (await client.get("/schema/openapi.json")).json()
    await make_user("root", admin=True)
    p = await make_project("p", {"ana": "senior_reviewer"})
    await applicability.set_rule(p, "cxr-tb-screening", {})  # the sample is a CT: let the form apply
    await projects.update_settings(p, {"export_path": str(tmp_path / "exchange" / "p.json")})
    (stored,) = await ingest_path(samples.sample_path("CT_small.dcm"), p)
    uid, me = stored.series_instance_uid, creds("root")

    async def call(method: str, path: str, url: str | None = None, **kw):
        r = await client.request(method, url or path.replace("{name}", "p"), headers={**me, **kw.pop("headers", {})},
                                 **kw)
        conforms(doc, method.lower(), path, r)
        return r

    made = (await call("POST", "/api/v1/scan-decisions", json={
        "series": uid, "decision": "Q?", "note": "apex", "artifacts": {"present": ["lesions"], "absent": []},
        "location": {"x": 1, "y": 2.5, "z": -3}})).json()
    await call("GET", "/api/v1/scan-decisions", params={"series": uid})
    await call("POST", "/api/v1/scan-decisions/{decision_id}/undo", f"/api/v1/scan-decisions/{made['id']}/undo")
    await call("POST", "/api/v1/claims", json={"series": uid})
    assert (await call("GET", "/api/v1/claims", params={"series": uid})).json()["claim"]["mine"] is True

    where = {"Project": "p", "PatientID": stored.patient_id, "StudyInstanceUID": stored.study_instance_uid,
             "SeriesInstanceUID": uid}
    await call("GET", "/api/v1/forms", params={"Project": "p"})
    await call("GET", "/api/v1/forms/{form_name}", "/api/v1/forms/cxr-tb-screening", params={"Project": "p"})
    await call("POST", "/api/v1/patient/study/series/forms/add", "/api/v1/patient/study/series/forms/add/", json={
        **where, "FormName": "cxr-tb-screening", "FormSubmission": {
            "projection": "PA", "image_quality": "Adequate", "abnormal": True, "findings": ["Consolidation"],
            "tb_likelihood": 70, "recommendation": "Clinical review"}})
    await call("GET", "/api/v1/patient/study/series/forms/list", "/api/v1/patient/study/series/forms/list/",
               params=where)
    await call("POST", "/api/v1/email", json={"series": uid, "to": "ana", "subject": "apex"})
    await call("GET", "/api/v1/compute/{uid}", f"/api/v1/compute/{uid}")
    await call("GET", "/api/v1/results/{uid}", f"/api/v1/results/{uid}")

    # Runs: an export done, its file, an import of that file, and a DICOMweb pull queued.
    export = (await call("POST", "/api/v1/projects/{name}/export", json={"format": "json"})).json()
    await runs.execute(export["run"]["id"])
    await call("GET", "/api/v1/projects/{name}/runs/{run_id}", f"/api/v1/projects/p/runs/{export['run']['id']}")
    exported = await call("GET", "/api/v1/projects/{name}/runs/{run_id}/file",
                          f"/api/v1/projects/p/runs/{export['run']['id']}/file")
    imported = (await call("POST", "/api/v1/projects/{name}/import",
                           files={"file": ("p.json", exported.content, "application/json")})).json()
    await runs.execute(imported["run"]["id"])
    sync = await runs.execute((await runs.create(p, "sync", trigger="schedule"))["id"])
    assert sync["state"] == "done", sync

    node = {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 1,
            "dicomweb_url": "http://127.0.0.1:1/dicomweb"}
    await call("POST", "/api/v1/nodes", json=node)
    await call("GET", "/api/v1/nodes")
    await call("GET", "/api/v1/nodes/{name}", "/api/v1/nodes/pacs")
    await call("POST", "/api/v1/nodes/{name}/echo", "/api/v1/nodes/pacs/echo")
    await projects.update_settings(p, {"dicomweb_sync": {"node": "pacs", "query": {"ModalitiesInStudy": "CT"},
                                                         "days": 7}})
    await call("POST", "/api/v1/projects/{name}/dicomweb-sync")
    runs_seen = (await call("GET", "/api/v1/projects/{name}/runs")).json()
    assert {r["kind"] for r in runs_seen} == {"export", "import", "sync", "dicomweb"}
    job = (await call("POST", "/api/v1/projects/{name}/send", json={"node": "pacs", "series": [uid]})).json()
    await call("GET", "/api/v1/projects/{name}/send")
    await call("GET", "/api/v1/projects/{name}/send/{job_id}", f"/api/v1/projects/p/send/{job['id']}")

    # STOW-RS: the instance again (already stored), then QIDO-RS finds it.
    boundary = "lightbox-test"
    body = (b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n--%s--\r\n"
            % (boundary.encode(), samples.sample_path("CT_small.dcm").read_bytes(), boundary.encode()))
    await call("POST", "/dicomweb/{project}/studies", "/dicomweb/p/studies", content=body, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json"})
    await call("GET", "/dicomweb/{project}/studies", "/dicomweb/p/studies", headers={"Accept": "application/dicom+json"})
