"""A shop's staff: invitations by mail, roles, disabling and removing — never the last owner.

An invitation carries a random token; only its SHA-256 is stored. The mailed link leads to a
public page on the shop host where the invited person sets a password and becomes staff with
the invited role. Invitations expire after seven days and work once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..audit.service import Actor, record
from ..billing.models import StaffInvite
from ..errors import Conflict, DomainError, NotFound
from ..extensions import db
from ..mail.service import queue_mail, shop_language
from ..rows import row_by_id
from ..security.auth import check_email
from ..tenants.models import Tenant
from .models import STAFF_ROLES, StaffUser
from .service import create_staff

INVITE_DAYS = 7
INVITABLE_ROLES = ("manager", "support")


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _check_role(role: str, allowed=STAFF_ROLES) -> str:
    if role not in allowed:
        raise DomainError(_l("Role must be one of: %(roles)s.", roles=", ".join(allowed)),
                          field="role")
    return role


def staff_limit(tenant: Tenant) -> int | None:
    """How many staff accounts the shop's plan allows (None: no limit, or no plan yet)."""
    from ..billing.models import Subscription

    subscription = db.session.scalar(
        select(Subscription).where(Subscription.tenant_id == tenant.id))
    return subscription.plan.max_staff if subscription is not None else None


# -- invitations --------------------------------------------------------------------------------


def pending_invites() -> list[StaffInvite]:
    """The bound shop's invitations that were neither accepted nor have expired."""
    now = datetime.now(UTC)
    return list(db.session.scalars(
        select(StaffInvite).where(StaffInvite.accepted_at.is_(None),
                                  StaffInvite.expires_at > now)
        .order_by(StaffInvite.id.desc())))


def invite_staff(tenant: Tenant, *, email: str, role: str, actor: Actor,
                 accept_url) -> StaffInvite:
    """Invite `email` to the bound shop's staff as `role`, and mail the link.

    `accept_url(token)` makes the link (the view knows the host); a new invitation for the
    same address replaces the one before."""
    email = check_email(email)
    role = _check_role(role, INVITABLE_ROLES)
    if db.session.scalar(select(func.count()).select_from(StaffUser)
                         .where(StaffUser.email == email)):
        raise Conflict(_l("This e-mail is already on this shop's staff."), field="email")
    now = datetime.now(UTC)
    for old in db.session.scalars(select(StaffInvite).where(
            StaffInvite.email == email, StaffInvite.accepted_at.is_(None))):
        old.expires_at = now  # replaced: the old link stops working
    limit = staff_limit(tenant)
    if limit is not None:
        staff = db.session.scalar(select(func.count()).select_from(StaffUser))
        waiting = len([i for i in pending_invites() if i.email != email])
        if staff + waiting >= limit:
            raise DomainError(_l("Your plan allows %(n)d staff accounts; upgrade to invite more.",
                                 n=limit), field="email")
    token = secrets.token_urlsafe(32)
    invite = StaffInvite(email=email, role=role, token_hash=_hash(token),
                         invited_by=actor.email, expires_at=now + timedelta(days=INVITE_DAYS))
    db.session.add(invite)
    db.session.flush()
    link = accept_url(token)
    with shop_language(tenant.id):  # the new colleague reads it in the shop's language
        subject = _("You are invited to the staff of %(shop)s", shop=tenant.name)
        body = _("%(who)s invites you to help run %(shop)s as %(role)s.\n\n"
                 "Set your password here to accept (the link works once, for %(days)d days):\n"
                 "%(link)s\n\nIf you did not expect this, ignore this mail.",
                 who=actor.email, shop=tenant.name, role=role, days=INVITE_DAYS, link=link)
    queue_mail(tenant_id=tenant.id, to=email, kind="staff.invite", subject=subject, body=body)
    record(actor, "staff.invited", tenant_id=tenant.id, target=email, role=role)
    return invite


def invite_by_token(token: str) -> StaffInvite:
    """The bound shop's open invitation with this token, or NotFound (also when expired)."""
    if not token or len(token) > 200:
        raise NotFound(_l("This invitation is not valid. Ask the shop owner for a new one."))
    invite = db.session.scalar(select(StaffInvite).where(StaffInvite.token_hash == _hash(token)))
    if (invite is None or invite.accepted_at is not None
            or _aware(invite.expires_at) <= datetime.now(UTC)):
        raise NotFound(_l("This invitation is not valid or has expired. Ask the shop owner "
                          "for a new one."))
    return invite


def accept_invite(tenant: Tenant, token: str, *, password: str, name: str = "",
                  ip: str = "") -> StaffUser:
    """Create the invited staff account with its password; the invitation is used up."""
    invite = invite_by_token(token)
    staff = create_staff(tenant, email=invite.email, password=password, role=invite.role,
                         name=name)
    staff.email_confirmed_at = datetime.now(UTC)  # the link came to this address
    invite.accepted_at = datetime.now(UTC)
    db.session.flush()
    record(Actor.of(staff, ip=ip), "staff.joined", tenant_id=tenant.id, target=staff.email,
           role=staff.role, invited_by=invite.invited_by)
    return staff


def get_invite(invite_id: int) -> StaffInvite:
    invite = row_by_id(StaffInvite, invite_id)
    if invite is None:
        raise NotFound(_l("No such invitation."))
    return invite


def revoke_invite(invite: StaffInvite, *, actor: Actor) -> None:
    if invite.accepted_at is not None:
        raise Conflict(_l("This invitation was already accepted."))
    invite.expires_at = datetime.now(UTC)
    db.session.flush()
    record(actor, "staff.invite_revoked", tenant_id=invite.tenant_id, target=invite.email)


# -- roles and accounts -------------------------------------------------------------------------


def _other_active_owners(staff: StaffUser) -> int:
    """Active owners besides `staff`, with their rows locked (two owners demoting each other
    at once cannot leave the shop with none)."""
    ids = db.session.scalars(
        select(StaffUser.id).where(StaffUser.role == "owner", StaffUser.active,
                                   StaffUser.id != staff.id)
        .with_for_update()).all()
    return len(ids)


def _keep_an_owner(staff: StaffUser) -> None:
    if staff.role == "owner" and staff.active and _other_active_owners(staff) == 0:
        raise Conflict(_l("The shop must keep at least one active owner."))


def change_role(staff: StaffUser, role: str, *, actor: Actor) -> StaffUser:
    role = _check_role(role)
    if role == staff.role:
        return staff
    if role != "owner":
        _keep_an_owner(staff)
    before = staff.role
    staff.role = role
    db.session.flush()
    record(actor, "staff.role_changed", tenant_id=staff.tenant_id, target=staff.email,
           before=before, after=role)
    return staff


def set_active(staff: StaffUser, active: bool, *, actor: Actor) -> StaffUser:
    """Disable (every session ends at once) or enable a staff account."""
    if staff.active == active:
        return staff
    if not active:
        _keep_an_owner(staff)
        staff.session_token = secrets.token_hex(16)
    staff.active = active
    db.session.flush()
    record(actor, "staff.enabled" if active else "staff.disabled", tenant_id=staff.tenant_id,
           target=staff.email)
    return staff


def remove_staff(staff: StaffUser, *, actor: Actor) -> None:
    _keep_an_owner(staff)
    email, tenant_id = staff.email, staff.tenant_id
    db.session.delete(staff)
    db.session.flush()
    record(actor, "staff.removed", tenant_id=tenant_id, target=email)


def record_security(staff: StaffUser, action: str, actor: Actor) -> None:
    """Audit a change of a staff member's two-factor login (enabled, disabled, reset)."""
    record(actor, action, tenant_id=staff.tenant_id, target=staff.email)
