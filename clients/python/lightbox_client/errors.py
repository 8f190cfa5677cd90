"""Exceptions: every API error answer `{"error", "suberror", "detail"}` becomes an ApiError subclass by status."""

from __future__ import annotations


class LightboxError(Exception):
    """Anything this client raises on purpose."""


class ApiError(LightboxError):
    """The server answered with an error: `status`, and its `error`, `suberror` and `detail`."""

    def __init__(self, status: int, error: str = "", suberror: str = "", detail: str = "", body=None):
        self.status, self.error, self.suberror, self.detail, self.body = status, error, suberror, detail, body
        super().__init__(f"{status} {error}{'/' + suberror if suberror else ''}: {detail}")


class BadRequest(ApiError):
    """400: the request was not valid (see `detail`, and `body["fields"]` where given)."""


class Unauthorized(ApiError):
    """401: no credentials, or they are wrong or revoked."""


class Forbidden(ApiError):
    """403: the account may not do this."""


class NotFound(ApiError):
    """404: no such object, or not in a project the account can see."""


class Conflict(ApiError):
    """409: e.g. another import of the project is running."""


class TooLarge(ApiError):
    """413: the request body is too large."""


class UnsupportedMediaType(ApiError):
    """415: the server does not take this kind of body."""


class RateLimited(ApiError):
    """429, after the client's retries ran out."""


class Unavailable(ApiError):
    """503, after the client's retries ran out."""


class ServerError(ApiError):
    """Another 5xx answer."""


class RunFailed(LightboxError):
    """An export, import or send finished as failed; `run` holds it (an import's `problems` list every row)."""

    def __init__(self, run, message: str):
        self.run = run
        super().__init__(message)


class Timeout(LightboxError):
    """A run did not finish within the time the caller allowed."""


_BY_STATUS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 413: TooLarge,
              415: UnsupportedMediaType, 429: RateLimited, 503: Unavailable}


def error_for(status: int, body) -> ApiError:
    """The exception for an error answer; `body` is its parsed JSON (or text)."""
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("message") or ""
        return cls(status, str(body.get("error") or ""), str(body.get("suberror") or ""), str(detail), body)
    return cls(status, "", "", str(body or "")[:500], body)
