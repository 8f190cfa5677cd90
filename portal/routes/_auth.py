"""Who is calling: session users in the portal, token or X-USERNAME/X-PASSWORD callers on the API."""

from __future__ import annotations

from litestar import Request

from portal.auth import accounts, permissions, sessions, tokens
from portal.errors import NotFound, PermissionDenied, Unauthenticated
from portal.tables import User


def client_of(request: Request) -> str:
    return request.client.host if request.client else ""


async def api_user(request: Request) -> User:
    """The caller of an API route: `Authorization: Token KEY`, or the CAD4TB-style headers."""
    cached = request.scope.get("lightbox_user")
    if cached is not None:
        return cached
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, key = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not key.strip():
            raise Unauthenticated("Use 'Authorization: Token <key>' (get a key from POST /api-token-auth/).",
                                  "invalid_authorization_header")
        user = await tokens.user_for(key.strip())
        if user is None:
            raise Unauthenticated("The token is invalid, revoked, or belongs to a deactivated account.",
                                  "invalid_token")
    elif "x-username" in request.headers or "x-password" in request.headers:
        user = await accounts.authenticate(request.headers.get("x-username", ""),
                                           request.headers.get("x-password", ""),
                                           client=client_of(request), via="api")
    else:
        raise Unauthenticated("Authentication required: send 'Authorization: Token <key>' or the "
                              "X-USERNAME and X-PASSWORD headers.", "no_credentials")
    request.scope["lightbox_user"] = user
    return user


async def portal_user(request: Request) -> User:
    """The signed-in user of a portal page; Unauthenticated sends the browser to /login."""
    cached = request.scope.get("lightbox_user")
    if cached is not None:
        return cached
    key = request.session.get("sid") if request.session else None
    found = await sessions.user_for(key) if key else None
    if found is None:
        if request.session:
            request.clear_session()
        raise Unauthenticated("Please sign in.", "no_session")
    user, request.scope["lightbox_session"] = found
    request.scope["lightbox_user"] = user
    return user


async def may_upload(connection, _handler) -> None:
    """Guard of the API upload routes: whoever may upload nowhere (or not into ?Project=) is refused before a
    byte of the body is read, so they cannot make the server spool hundreds of megabytes."""
    me = await api_user(connection)
    name = connection.query_params.get("Project")
    if name:
        await permissions.project_for(me, name, "upload_project")
    elif not await permissions.may_anywhere(me, "upload_project"):
        if not await permissions.may_anywhere(me, "view_project"):  # as for a project they cannot see: 404
            raise NotFound("There is no project that you can see to upload into.", "project_not_found")
        raise PermissionDenied("Your roles do not allow uploading into any project (upload_project).",
                               "permission_denied")
