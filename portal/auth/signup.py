"""Self sign-up with approval: a new account waits inactive; admins are mailed an approve link; the user is
mailed the outcome."""

from __future__ import annotations

from portal import audit, site
from portal.auth import accounts
from portal.errors import Invalid, NotFound, PermissionDenied
from portal.mail import compose, outbox
from portal.tables import User

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"


async def is_open() -> bool:
    return await site.get("signup") == "approval"


async def request_account(username: str, email: str, password: str, *, client: str = "") -> User:
    if not await is_open():
        raise PermissionDenied("Sign-up is closed on this site; ask an administrator for an account.", "signup_closed")
    if not (email or "").strip():
        raise Invalid("An email address is required: the outcome is mailed to you.", "invalid_email",
                      fields={"email": "required"})
    user = await accounts.create(username, password, email=email, client=client, approval=PENDING)
    await audit.record("signup_requested", user=user, object=f"user:{user.username}", client=client)
    admins = await User.objects().where((User.is_admin == True) & (User.is_active == True))  # noqa: E712
    to = [outbox.address(a) for a in admins if a.email]
    if to:
        subject, body = compose.signup_request(user)
        await outbox.enqueue("signup", to, subject, body, object=f"user:{user.username}")
    return user


async def pending() -> list[User]:
    return await User.objects().where(User.approval == PENDING).order_by(User.created_at)


async def decide(username: str, approve: bool, *, by: User, client: str = "") -> User:
    user = await accounts.get_or_404(username)
    # Decided once: of two admins deciding at the same moment, only the first changes anything.
    decided = await User.update({User.approval: APPROVED if approve else REJECTED, User.is_active: approve}).where(
        (User.id == user.id) & (User.approval == PENDING)).returning(User.id)
    if not decided:
        raise NotFound(f"'{username}' has no sign-up waiting for approval.", "signup_not_found")
    user.approval, user.is_active = (APPROVED if approve else REJECTED), approve
    await audit.record("signup_approved" if approve else "signup_rejected", user=by, object=f"user:{username}",
                       client=client)
    if user.email:
        subject, body = compose.signup_outcome(user, approve)
        await outbox.enqueue("approval", [outbox.address(user)], subject, body, object=f"user:{username}")
    return user
