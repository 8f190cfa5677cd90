"""Who calls DICOMweb: viewers authenticate in the ways their configurations offer.

- `Authorization: Token KEY` / `Bearer KEY`, or the CAD4TB-style headers, as on the rest of the API;
- HTTP Basic (`Authorization: Basic …`), which OHIF, Weasis and 3D Slicer configurations use;
- for reads (GET, HEAD) only, the portal's session cookie: a viewer served on the portal's origin
  works after one sign-in. Writes (STOW) never take the cookie: /dicomweb/ is outside CSRF protection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from litestar import Request

from portal.auth import accounts, sessions
from portal.auth.recent import Recent
from portal.errors import Unauthenticated
from portal.routes._auth import api_user, client_of
from portal.tables import User

# A viewer makes hundreds of requests a minute; checking the password (argon2) on each would cost more than
# serving the frames. A verified Basic header is remembered for a minute (by its hash, never the password).
BASIC_CACHE_S = 60
# the header's hash → (the user's id, the password hash it was verified against)
_verified: Recent[tuple[int, str]] = Recent(BASIC_CACHE_S, max_keys=1000)


def _basic_credentials(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("The Basic credentials are not base64 of 'username:password'.",
                              "invalid_authorization_header")
    username, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthenticated("The Basic credentials are not base64 of 'username:password'.",
                              "invalid_authorization_header")
    return username, password


async def _basic_user(request: Request, value: str) -> User:
    key = hashlib.sha256(value.strip().encode()).hexdigest()
    verified = _verified.get(key)
    if verified is not None:
        user = await accounts.by_id_cached(verified[0])
        # Only while the password it was checked against stands: a changed password ends it at once.
        if user is not None and user.is_active and user.password_hash == verified[1]:
            return user
    username, password = _basic_credentials(value)
    user = await accounts.authenticate(username, password, client=client_of(request), via="dicomweb")
    _verified.put(key, (user.id, user.password_hash))
    return user


async def dicomweb_user(request: Request) -> User:
    cached = request.scope.get("lightbox_user")
    if cached is not None:
        return cached
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        user = await _basic_user(request, value)
    elif header or "x-username" in request.headers or "x-password" in request.headers:
        return await api_user(request)
    else:
        # The portal's server-side session (portal/auth/sessions.py): ended by logout or a password change.
        key = request.session.get("sid") if request.session else None
        found = await sessions.user_for(key) if key else None
        user = found[0] if found else None
        if user is None or not user.is_active:
            raise Unauthenticated("Authentication required: HTTP Basic, 'Authorization: Token <key>', or (for "
                                  "reads) the portal's session cookie.", "no_credentials")
        if request.method not in ("GET", "HEAD"):
            raise Unauthenticated("Storing over DICOMweb needs HTTP Basic or a token; the portal's session cookie "
                                  "is accepted for reads only.", "session_not_accepted")
    request.scope["lightbox_user"] = user
    return user
