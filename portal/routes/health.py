"""Liveness: version, and which database and queue this process talks to."""

from litestar import get
from litestar.response import Response

from portal import __version__, settings
from portal.tables import User


@get("/healthz", tags=["health"])
async def healthz() -> Response:
    s = settings.current()
    body = {"status": "ok", "version": __version__, "database": s.database_kind, "queue": s.queue_kind}
    try:
        await User.count()
    except Exception as exc:  # the database being down is exactly what this must report
        body.update(status="error", detail=f"database unreachable: {type(exc).__name__}")
        return Response(body, status_code=503)
    return Response(body)
