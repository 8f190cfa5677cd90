"""First start: make sure an administrator exists and say how to sign in."""

from __future__ import annotations

import os
import secrets

from portal.auth import accounts
from portal.settings import Settings
from portal.tables import User

ADMIN_USERNAME = "admin"


async def ensure_admin(settings: Settings) -> str:
    """Create `admin` when no administrator exists; return a line telling how to sign in."""
    password_file = settings.data_dir / "admin_password"
    if await User.exists().where(User.is_admin == True):  # noqa: E712 (Piccolo needs ==)
        where = f" (generated password in {password_file})" if password_file.exists() else ""
        return f"Sign in at {settings.base_url}/login with your administrator account{where}."
    password = settings.admin_password
    generated = not password
    if generated:
        password = secrets.token_urlsafe(12)
    await accounts.create(ADMIN_USERNAME, password, is_admin=True)
    if generated:
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        return (f"Created administrator '{ADMIN_USERNAME}' with password: {password}\n"
                f"(shown once; also stored in {password_file}, readable only by you).\n"
                f"Sign in at {settings.base_url}/login")
    return (f"Created administrator '{ADMIN_USERNAME}' with the password from LIGHTBOX_ADMIN_PASSWORD.\n"
            f"Sign in at {settings.base_url}/login")
