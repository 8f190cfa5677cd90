"""Site-wide settings an administrator changes in the portal, stored one row per key (SiteSetting)."""

from __future__ import annotations

import json

from portal import audit, clock
from portal.errors import Invalid
from portal.tables import SiteSetting, User

# key: (default, allowed values or None)
DEFAULTS: dict = {
    # Self sign-up on the login page: "closed", or "approval" (a new account waits for an admin).
    "signup": ("closed", ("closed", "approval")),
}


async def get(key: str):
    row = await SiteSetting.select(SiteSetting.value).where(SiteSetting.key == key).first()
    if row is None:
        return DEFAULTS[key][0]
    value = row["value"]
    return json.loads(value) if isinstance(value, str) else value


async def put(key: str, value, *, by: User | None = None, client: str = "") -> None:
    if key not in DEFAULTS:
        raise Invalid(f"Unknown site setting '{key}'.", "unknown_setting")
    allowed = DEFAULTS[key][1]
    if allowed is not None and value not in allowed:
        raise Invalid(f"{key} must be one of: {', '.join(allowed)}.", "invalid_value")
    await SiteSetting.insert(SiteSetting(key=key, value=json.dumps(value), updated_at=clock.now())).on_conflict(
        target=SiteSetting.key, action="DO UPDATE", values=[SiteSetting.value, SiteSetting.updated_at])
    await audit.record("site_setting_changed", user=by, object=f"site:{key}", detail={key: value}, client=client)
