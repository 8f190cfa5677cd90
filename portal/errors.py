"""Domain errors. Plain exceptions that routes translate into HTTP answers and pages.

Each carries the API's error shape: an error type, a suberror type and a detail that says
what to do about it (`{"error": TYPE, "suberror": SUBTYPE, "detail": ...}`).
"""

from __future__ import annotations


class LightboxError(Exception):
    status = 400
    error = "invalid_post_value"

    def __init__(self, detail: str, suberror: str = "", *, error: str | None = None, fields: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.suberror = suberror
        if error:
            self.error = error
        self.fields = fields or {}

    def as_dict(self) -> dict:
        body = {"error": self.error, "suberror": self.suberror, "detail": self.detail}
        if self.fields:
            body["fields"] = self.fields
        return body


class Invalid(LightboxError):
    status = 400
    error = "invalid_post_value"


class Unauthenticated(LightboxError):
    status = 401
    error = "not_authenticated"


class PermissionDenied(LightboxError):
    status = 403
    error = "api_call_not_allowed"


class NotFound(LightboxError):
    status = 404
    error = "object_not_found"


class Conflict(LightboxError):
    status = 409
    error = "conflict"


class TooLarge(LightboxError):
    status = 413
    error = "request_too_large"


class UnsupportedMediaType(LightboxError):
    status = 415
    error = "unsupported_media_type"


class Throttled(LightboxError):
    status = 429
    error = "too_many_requests"

    def __init__(self, detail: str, suberror: str = "", *, retry_after: int | None = None, **kw):
        super().__init__(detail, suberror, **kw)
        self.retry_after = retry_after
