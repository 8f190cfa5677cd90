"""What Litestar's generated OpenAPI document does not say by itself, added once before it is served: the
security schemes (token, CAD4TB headers) and the error shape every operation can answer with."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin, RedocRenderPlugin, SwaggerRenderPlugin

from portal.routes._openapi import COMPONENTS

ERROR_SCHEMA = {
    "type": "object", "required": ["error", "suberror", "detail"],
    "properties": {"error": {"type": "string", "description": "error type, e.g. object_not_found"},
                   "suberror": {"type": "string", "description": "finer type, e.g. form_not_found"},
                   "detail": {"type": "string", "description": "what to do about it, for a person"},
                   "fields": {"type": "object", "additionalProperties": {"type": "string"},
                              "description": "per-field problems, when the input had some"}},
}
ERRORS = {"400": "Bad input", "401": "No or invalid credentials", "403": "Not permitted", "404": "Not found",
          "409": "Conflict", "413": "Request too large", "415": "Unsupported media type",
          "429": "Too many failed sign-ins; see Retry-After"}
# Answers every route can give whatever Litestar's generator guessed for them: its validation errors (400) are
# answered in the API's error shape by the app's HTTP error handler.
ALWAYS_OURS = ("400",)
DICOMWEB = ("/dicomweb/", "/wado")  # these negotiate media types: 406 when Accept allows none they can send
SECURITY_SCHEMES = {
    "token": {"type": "apiKey", "in": "header", "name": "Authorization",
              "description": "`Token KEY`, the key from POST /api-token-auth/"},
    "cad4tbUser": {"type": "apiKey", "in": "header", "name": "X-USERNAME", "description": "CAD4TB-style username"},
    "cad4tbPassword": {"type": "apiKey", "in": "header", "name": "X-PASSWORD", "description": "its password"},
    # DICOMweb also takes what viewers are configured with (routes/_dicomweb_auth.py).
    "basic": {"type": "http", "scheme": "basic"},
    "session": {"type": "apiKey", "in": "cookie", "name": "lightbox_session",
                "description": "the portal's sign-in, for DICOMweb reads only"},
}
API_SECURITY = [{"token": []}, {"cad4tbUser": [], "cad4tbPassword": []}]
PUBLIC = ("/api-token-auth", "/api-token-auth/", "/healthz")


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the security schemes and the error responses (idempotent: the document is generated once)."""
    if schema.get("x-lightbox-completed"):
        return schema
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {}).update({"Error": ERROR_SCHEMA, **COMPONENTS})
    components["securitySchemes"] = SECURITY_SCHEMES
    schema["security"] = API_SECURITY
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete") or not isinstance(operation, dict):
                continue
            if path in PUBLIC:
                operation["security"] = []
            responses = operation.setdefault("responses", {})
            for code, description in ERRORS.items():
                if code == "401" and path == "/healthz":
                    continue
                if code in ALWAYS_OURS:
                    responses[code] = {"description": description, "content": ref}
                responses.setdefault(code, {"description": description, "content": ref})
            if path.startswith(DICOMWEB):
                operation["security"] = [*API_SECURITY, {"basic": []}, *([{"session": []}] if method == "get" else [])]
                responses.setdefault("406", {"description": "No media type the Accept header allows", "content": ref})
    schema["x-lightbox-completed"] = True
    return schema


class DocumentedJson(JsonRenderPlugin):
    """/schema/openapi.json, completed (the Swagger UI and Redoc pages read it from there)."""

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, complete(openapi_schema))


class DocumentedRedoc(RedocRenderPlugin):
    """/schema/redoc, with the completed document: Redoc embeds the document in its page (its references to
    the shared components, such as DicomDataset, must resolve there)."""

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, complete(openapi_schema))


class DocumentedSwagger(SwaggerRenderPlugin):
    """/schema/swagger, with the completed document, as Redoc."""

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, complete(openapi_schema))
