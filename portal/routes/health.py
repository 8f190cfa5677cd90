"""Liveness: version, and which database and queue this process talks to."""

from typing import Literal, TypedDict

from litestar import get
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Response

from portal import __version__, settings
from portal.tables import User


class _Health(TypedDict):
    status: Literal["ok", "error"]
    version: str
    database: Literal["sqlite", "postgres"]
    queue: Literal["sqlite", "redis"]


class Health(_Health, total=False):
    detail: str  # what is wrong, when status is error (503)


@get("/healthz", tags=["health"],
     responses={503: ResponseSpec(Health, description="The database cannot be reached (status: error)")})
async def healthz() -> Response[Health]:
    s = settings.current()
    body = {"status": "ok", "version": __version__, "database": s.database_kind, "queue": s.queue_kind}
    try:
        await User.count()
    except Exception as exc:  # the database being down is exactly what this must report
        body.update(status="error", detail=f"database unreachable: {type(exc).__name__}")
        return Response(body, status_code=503)
    return Response(body)
