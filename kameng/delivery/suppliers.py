"""Upstream suppliers: the platform's (`tenant_id` None, for supply products) and each shop's own
(for its own top-up products) — create, edit, list, delete, test.

`Supplier` is a platform table, not tenant-scoped: the tenant guard does not narrow it, so every
query here filters on `tenant_id` explicitly (None meaning the platform), and a supplier id that
belongs to another owner is simply not found. Credentials are a Fernet-encrypted JSON object
(like payment credentials): write-only in forms — a secret left empty keeps the stored one —
and shown masked (••••last4).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..catalog.models import Product, SupplyProduct
from ..errors import DomainError, NotFound
from ..extensions import db
from ..payments.registry import decrypt_credentials, encrypt_credentials
from ..rows import row_by_id
from ..security.credentials import masked
from ..security.http import UnsafeURL, address_allowed, check_url
from .adapters import ADAPTERS, Adapter, UpstreamRetry, adapter_for
from .models import Supplier

CREDENTIAL_MAX = 2000


def _owned_by(tenant_id: int | None):
    return Supplier.tenant_id.is_(None) if tenant_id is None else Supplier.tenant_id == tenant_id


def list_suppliers(tenant_id: int | None, *, active_only: bool = False) -> list[Supplier]:
    """The platform's suppliers (tenant_id None) or one shop's."""
    query = select(Supplier).where(_owned_by(tenant_id)).order_by(Supplier.name, Supplier.id)
    if active_only:
        query = query.where(Supplier.active.is_(True))
    return list(db.session.scalars(query))


def get_supplier(tenant_id: int | None, supplier_id) -> Supplier:
    """A supplier of this owner; another owner's (or none) is NotFound."""
    supplier = row_by_id(Supplier, supplier_id)
    if supplier is None or supplier.tenant_id != tenant_id:
        raise NotFound(_l("No such supplier."))
    return supplier


def owned_supplier(tenant_id: int | None, supplier_id) -> Supplier:
    """The supplier a product names, refused unless it belongs to the product's owner."""
    supplier = row_by_id(Supplier, supplier_id)
    if supplier is None or supplier.tenant_id != tenant_id:
        whose = "the platform's" if tenant_id is None else "your"
        raise DomainError(_l("Choose one of %(whose)s suppliers.",
                             whose=whose), field="supplier_id")
    return supplier


def supplier_choices(tenant_id: int | None) -> list[tuple[int, str]]:
    """(id, label) of an owner's suppliers, for the product forms."""
    return [(s.id, s.name if s.active else f"{s.name} (off)") for s in list_suppliers(tenant_id)]


def products_using(supplier: Supplier) -> int:
    model = SupplyProduct if supplier.tenant_id is None else Product
    query = select(func.count()).select_from(model).where(model.supplier_id == supplier.id)
    if model is Product:
        query = query.where(Product.tenant_id == supplier.tenant_id)
    return db.session.scalar(query) or 0


# -- validation ---------------------------------------------------------------------------------


def check_base_url(url: str) -> str:
    """The supplier's base URL, or a DomainError on the `base_url` field.

    Its form is checked here (https unless the operator allows http, no user name, no query);
    a literal address inside the network, or localhost, is refused now too. Names are resolved
    and checked again on every call, so a DNS answer cannot sneak past.
    """
    url = (url or "").strip()
    if len(url) > 500:
        raise DomainError(_l("The URL must be at most 500 characters."), field="base_url")
    try:
        _scheme, host, _port, _path = check_url(url)
    except UnsafeURL as error:
        raise DomainError(error.message, field="base_url") from None
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise DomainError(_l("The base URL takes no ?query or #fragment."), field="base_url")
    literal = host.strip("[]").lower()
    if literal == "localhost" or literal.endswith(".localhost"):
        literal = "127.0.0.1"
    try:
        ipaddress.ip_address(literal)
    except ValueError:
        pass
    else:
        if not address_allowed(literal):
            raise DomainError(_l("%(host)s is an address inside the network; suppliers there are "
                                 "not allowed.", host=host), field="base_url")
    return url.rstrip("/")


def _name(value: str) -> str:
    value = (value or "").strip()
    if not value or len(value) > 120:
        raise DomainError(_l("A supplier needs a name of at most 120 characters."), field="name")
    return value


def _merged_credentials(kind: type[Adapter], stored: dict, typed: dict) -> dict:
    """The adapter's credentials after a save: a secret left empty keeps its stored value;
    fields of another adapter are dropped."""
    merged = {}
    for spec in kind.credential_fields:
        new = str(typed.get(spec.name) or "").strip()
        if len(new) > CREDENTIAL_MAX:
            raise DomainError(_l("%(label)s is too long.",
                                 label=spec.label), field=f"cred_{spec.name}")
        if new or not spec.secret:
            merged[spec.name] = new
        elif stored.get(spec.name):
            merged[spec.name] = stored[spec.name]
    return merged


# -- operations ---------------------------------------------------------------------------------


def save_supplier(tenant_id: int | None, supplier: Supplier | None, *, name: str, adapter: str,
                  base_url: str, settings: dict | None = None, credentials: dict | None = None,
                  active: bool = True) -> Supplier:
    """Create (supplier None) or change a supplier of the platform (tenant_id None) or a shop."""
    if supplier is not None and supplier.tenant_id != tenant_id:
        raise NotFound(_l("No such supplier."))
    kind = ADAPTERS.get(adapter)
    if kind is None:
        raise DomainError(_l("Choose a protocol."), field="adapter")
    name = _name(name)
    url = check_base_url(base_url)
    checked = kind.check_settings(settings)
    stored = supplier_credentials(supplier) if supplier is not None else {}
    values = _merged_credentials(kind, stored, credentials or {})
    if active:
        missing = kind.missing_credentials(values, checked)
        if missing:
            raise DomainError(_l("Fill in %(missing)s before switching the supplier on.",
                                 missing=', '.join(missing)),
                              field=f"cred_{kind.credential_fields[0].name}")
    if supplier is None:
        supplier = Supplier(tenant_id=tenant_id)
        db.session.add(supplier)
    supplier.name, supplier.adapter, supplier.base_url = name, adapter, url
    supplier.settings = checked  # a new dict: JSON columns notice assignment only
    supplier.credentials = encrypt_credentials(values) if values else ""
    supplier.active = bool(active)
    db.session.flush()
    return supplier


def delete_supplier(supplier: Supplier) -> int:
    """Delete a supplier; products that named it keep their code but lose the supplier (their
    top-ups then wait for staff). Returns how many products were unlinked."""
    model = SupplyProduct if supplier.tenant_id is None else Product
    products = list(db.session.scalars(select(model).where(model.supplier_id == supplier.id)))
    for product in products:
        product.supplier_id = None
    db.session.delete(supplier)
    db.session.flush()
    return len(products)


def supplier_credentials(supplier: Supplier | None) -> dict:
    """The decrypted credentials (for adapters only: never into a page or a log)."""
    if supplier is None or not supplier.credentials:
        return {}
    return decrypt_credentials(supplier.credentials)


def masked_credentials(supplier: Supplier | None, adapter: str | None = None) -> dict[str, str]:
    """What a form may show of stored credentials: secrets as ••••last4, others in full."""
    kind = ADAPTERS.get(adapter or (supplier.adapter if supplier else "json"), ADAPTERS["json"])
    return masked(supplier_credentials(supplier), kind.credential_fields)


def connection_check(supplier: Supplier) -> str:
    """Reach the supplier with its stored settings and credentials: what it said, or a
    DomainError saying why it could not be reached. Changes nothing."""
    try:
        return adapter_for(supplier.adapter).test(supplier, supplier_credentials(supplier))
    except UpstreamRetry as error:
        raise DomainError(_l("The supplier could not be reached: %(message)s.",
                             message=error.message)) from None
