"""API keys and the bookkeeping of signed requests: creating, listing and revoking keys of shop
staff, agent buyers and super-admins; who counts as an agent; nonces (replay protection) and
idempotent answers.

Keys live in a platform table (`api_keys`, not tenant-scoped), so every query here filters on
`tenant_id` explicitly (None: the platform's keys). A key is a public id (`kk_…`) and a secret
(`kks_…`) shown once. The secret is kept encrypted with ENCRYPTION_KEYS, not hashed: requests
are signed with HMAC-SHA256, and checking an HMAC needs the secret itself (a hash of it
cannot verify a signature). A database dump alone therefore reveals no usable secret.

Agents: a buyer account may hold keys when its level is the shop's level named "Agent" (any
case) or ranks at or above it. A shop without a level of that name has no agents. The rule is
checked when a key is created and again on every request, so lowering a buyer's level turns
its keys off (403 not_agent) without revoking them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..catalog import service as catalog
from ..catalog.models import PriceLevel
from ..errors import Conflict, DomainError, NotFound
from ..extensions import db
from ..members.models import Customer
from ..merchant.models import StaffUser
from ..rows import row_by_id
from ..security.crypto import keyring
from .models import ApiIdempotency, ApiKey, ApiNonce

KEY_PREFIX = "kk_"
SECRET_PREFIX = "kks_"  # noqa: S105 - a label, not a secret
AGENT_LEVEL_NAME = "Agent"
NONCE_TTL = timedelta(minutes=10)  # twice the signature window: older nonces cannot be replayed
IDEMPOTENCY_TTL = timedelta(days=30)  # a retried upstream order may come back weeks later
MAX_KEYS_PER_SHOP = 200

# scope -> what it allows (shown in the consoles and the reference page)
STAFF_SCOPES = {
    "catalog": _l("read products, prices and stock"),
    "orders": _l("read the shop's orders"),
    "manage": _l("manage webhooks and read the shop's wallet at the platform"),
}
BUYER_SCOPES = {
    "catalog": _l("read products at the buyer's level price"),
    "orders": _l("place orders paid from the buyer's wallet, read them and their content"),
}
PLATFORM_SCOPES = {"platform": _l("create, suspend and resume shops; read their billing")}
# Roles whose staff may hold a key with the manage scope.
MANAGE_ROLES = ("owner", "manager")


class IdempotencyMismatch(Conflict):
    """The Idempotency-Key was used before with a different request."""


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str  # shown once


# -- agents ---------------------------------------------------------------------------------


def agent_level() -> PriceLevel | None:
    """The bound shop's agent level (named "Agent", any case), or None."""
    for level in catalog.list_levels():
        if level.name.strip().lower() == AGENT_LEVEL_NAME.lower():
            return level
    return None


def is_agent(customer: Customer) -> bool:
    """Whether a buyer is at the agent level or above (see the module's docstring)."""
    threshold = agent_level()
    level = catalog.level_for(customer) if customer.is_active else None
    return threshold is not None and level is not None and level.rank >= threshold.rank


def agent_customers(limit: int = 500) -> list[Customer]:
    """The bound shop's buyers at the agent level or above (for the console's form)."""
    threshold = agent_level()
    if threshold is None:
        return []
    ranks = {lv.id: lv.rank for lv in catalog.list_levels()}
    default = next((lv for lv in catalog.list_levels() if lv.is_default), None)
    found = []
    for customer in db.session.scalars(select(Customer).where(Customer.active.is_(True))
                                       .order_by(Customer.email).limit(5000)):
        level_id = customer.level_id if customer.level_id in ranks else (
            default.id if default else None)
        if level_id is not None and ranks[level_id] >= threshold.rank:
            found.append(customer)
            if len(found) >= limit:
                break
    return found


# -- keys -------------------------------------------------------------------------------------


def _checked_scopes(scopes, allowed: dict[str, str]) -> list[str]:
    chosen = [scope for scope in allowed if scope in set(scopes or ())]
    unknown = set(scopes or ()) - set(allowed)
    if unknown:
        raise DomainError(_l("Unknown scope %(unknown)r.",
                             unknown=sorted(unknown)[0]), field="scopes")
    if not chosen:
        raise DomainError(_l("Choose at least one scope."), field="scopes")
    return chosen


def _name(name: str) -> str:
    name = " ".join((name or "").split())
    if len(name) > 80:
        raise DomainError(_l("A key's name is at most 80 characters."), field="name")
    return name


def _new_key(*, tenant_id: int | None, owner_kind: str, owner_id: int, scopes: list[str],
             name: str) -> NewKey:
    if tenant_id is not None:
        count = len(list_keys(tenant_id, include_revoked=False))
        if count >= MAX_KEYS_PER_SHOP:
            raise DomainError(_l("A shop can have %(max_keys_per_shop)s active keys at most.",
                                 max_keys_per_shop=MAX_KEYS_PER_SHOP))
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(key_id=KEY_PREFIX + secrets.token_hex(12), tenant_id=tenant_id,
                 owner_kind=owner_kind, owner_id=owner_id, name=name, scopes=scopes,
                 secret=keyring().encrypt_secret(secret), secret_hint=secret[-4:])
    db.session.add(key)
    db.session.flush()
    return NewKey(key=key, secret=secret)


def plan_allows_api(tenant_id: int) -> bool:
    """Whether the shop's plan includes API access (a shop with no plan: yes)."""
    from ..billing.service import api_access_allowed
    from ..tenants.models import Tenant

    tenant = db.session.get(Tenant, tenant_id)
    return tenant is not None and api_access_allowed(tenant)


def _check_plan(tenant_id: int) -> None:
    if not plan_allows_api(tenant_id):
        raise DomainError(_l("Your plan does not include API access. Upgrade your plan to use "
                             "the API."), field="owner")


def create_staff_key(tenant_id: int, staff_id, *, scopes, name: str = "") -> NewKey:
    """A key of a staff member of the bound shop; `manage` only for owners and managers."""
    _check_plan(tenant_id)
    staff = row_by_id(StaffUser, staff_id)
    if staff is None or staff.tenant_id != tenant_id:
        raise DomainError(_l("Choose a member of your staff."), field="owner")
    if not staff.active:
        raise DomainError(_l("This staff account is disabled."), field="owner")
    chosen = _checked_scopes(scopes, STAFF_SCOPES)
    if "manage" in chosen and staff.role not in MANAGE_ROLES:
        raise DomainError(_l("Only an owner or a manager may hold the manage scope."),
                          field="scopes")
    return _new_key(tenant_id=tenant_id, owner_kind="staff", owner_id=staff.id, scopes=chosen,
                    name=_name(name))


def create_buyer_key(tenant_id: int, customer_id, *, scopes, name: str = "") -> NewKey:
    """A key of an agent buyer of the bound shop (see `is_agent`)."""
    _check_plan(tenant_id)
    customer = row_by_id(Customer, customer_id)
    if customer is None or customer.tenant_id != tenant_id:
        raise DomainError(_l("Choose one of your buyers."), field="owner")
    if not is_agent(customer):
        raise DomainError(_l("Only a buyer at the %(agent_level_name)s level (or above) may hold "
                             "an API key. Raise the buyer's level first.",
                             agent_level_name=AGENT_LEVEL_NAME), field="owner")
    chosen = _checked_scopes(scopes, BUYER_SCOPES)
    return _new_key(tenant_id=tenant_id, owner_kind="customer", owner_id=customer.id,
                    scopes=chosen, name=_name(name))


def create_platform_key(user_id: int, *, name: str = "") -> NewKey:
    """A super-admin key (the platform API on the admin host)."""
    return _new_key(tenant_id=None, owner_kind="platform", owner_id=user_id,
                    scopes=list(PLATFORM_SCOPES), name=_name(name))


def list_keys(tenant_id: int | None, *, include_revoked: bool = True) -> list[ApiKey]:
    """A shop's keys (tenant_id None: the platform's), newest first."""
    owner = ApiKey.tenant_id.is_(None) if tenant_id is None else ApiKey.tenant_id == tenant_id
    query = select(ApiKey).where(owner).order_by(ApiKey.id.desc())
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(db.session.scalars(query))


def get_key(tenant_id: int | None, key_pk) -> ApiKey:
    key = row_by_id(ApiKey, key_pk)
    if key is None or key.tenant_id != tenant_id:
        raise NotFound(_l("No such key."))
    return key


def revoke_key(key: ApiKey) -> bool:
    """Turn a key off for good (False: it already was)."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = datetime.now(UTC)
    db.session.flush()
    return True


def key_by_id(key_id: str) -> ApiKey | None:
    if not key_id or len(key_id) > 40:
        return None
    return db.session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))


def key_secret(key: ApiKey) -> str:
    return keyring().decrypt_secret(key.secret)


def owner_labels(keys: list[ApiKey]) -> dict[int, str]:
    """key pk -> who owns it (e-mail and role or level), for the console."""
    staff_ids = {k.owner_id for k in keys if k.owner_kind == "staff"}
    buyer_ids = {k.owner_id for k in keys if k.owner_kind == "customer"}
    staff = {s.id: f"{s.email} (staff, {s.role})" for s in db.session.scalars(
        select(StaffUser).where(StaffUser.id.in_(staff_ids)))} if staff_ids else {}
    buyers = {c.id: f"{c.email} (agent buyer)" for c in db.session.scalars(
        select(Customer).where(Customer.id.in_(buyer_ids)))} if buyer_ids else {}
    labels = {}
    for key in keys:
        source = staff if key.owner_kind == "staff" else buyers
        labels[key.id] = source.get(key.owner_id, f"{key.owner_kind} #{key.owner_id} (gone)") \
            if key.owner_kind != "platform" else "super-admin"
    return labels


# -- nonces -----------------------------------------------------------------------------------


def use_nonce(key_id: str, nonce: str) -> bool:
    """Record a nonce of a key; False when it was used before (a replay). Commits on its own,
    so a replay is refused even if the request it came with is later rolled back."""
    db.session.add(ApiNonce(key_id=key_id, nonce=nonce))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def clean_nonces(now: datetime | None = None) -> int:
    """Delete nonces older than NONCE_TTL (a request that old fails its timestamp check
    anyway) and idempotent answers older than IDEMPOTENCY_TTL. Returns the nonces removed."""
    now = now or datetime.now(UTC)
    removed = db.session.execute(
        delete(ApiNonce).where(ApiNonce.created_at < now - NONCE_TTL)
        .execution_options(synchronize_session=False)).rowcount
    db.session.execute(
        delete(ApiIdempotency).where(ApiIdempotency.created_at < now - IDEMPOTENCY_TTL)
        .execution_options(synchronize_session=False))
    db.session.commit()
    return removed or 0


# -- idempotent requests -------------------------------------------------------------------


def request_fingerprint(method: str, path: str, payload) -> str:
    """What makes two requests "the same": method, path and the JSON body (key order and
    spacing do not matter)."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method.upper()}\n{path}\n{body}".encode()).hexdigest()


def earlier_answer(key_id: str, idempotency_key: str, fingerprint: str
                   ) -> ApiIdempotency | None:
    """The stored answer to an earlier request with this key (None: first time).
    IdempotencyMismatch when that request was a different one."""
    row = db.session.scalar(select(ApiIdempotency).where(
        ApiIdempotency.key_id == key_id, ApiIdempotency.idempotency_key == idempotency_key))
    if row is not None and row.request_hash != fingerprint:
        raise IdempotencyMismatch(_l("This Idempotency-Key was already used with a different "
                                     "request."))
    return row


def claim_idempotency_key(key_id: str, idempotency_key: str, fingerprint: str
                          ) -> ApiIdempotency:
    """Reserve the key inside the caller's transaction (before doing the work): a concurrent
    request with the same key waits here, then fails with IntegrityError once the first
    commits, and so never does the work twice."""
    row = ApiIdempotency(key_id=key_id, idempotency_key=idempotency_key,
                         request_hash=fingerprint, status_code=0, response={})
    db.session.add(row)
    db.session.flush()
    return row
