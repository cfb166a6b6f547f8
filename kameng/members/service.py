"""Operations on a shop's buyer accounts."""

from __future__ import annotations

from sqlalchemy import select

from ..errors import NotFound
from ..extensions import db
from ..rows import row_by_id
from ..security.auth import authenticate, new_account, normalize_email
from .models import Customer


def register_customer(tenant_id: int, *, email: str, password: str, name: str = "") -> Customer:
    """Create a buyer account at the bound shop."""
    return new_account(
        Customer,
        email=email,
        password=password,
        taken="An account with this e-mail already exists. Log in instead.",
        tenant_id=tenant_id,
        name=(name or "").strip()[:120],
    )


def authenticate_customer(email: str, password: str) -> Customer | None:
    return authenticate(Customer, email, password)


def list_customers(search: str = "", limit: int = 200) -> list[Customer]:
    query = select(Customer).order_by(Customer.id.desc()).limit(limit)
    if search:
        query = query.where(Customer.email.contains(normalize_email(search), autoescape=True))
    return list(db.session.scalars(query))


def get_customer(customer_id: int) -> Customer:
    """A buyer of the bound shop; another shop's buyer is simply not found."""
    customer = row_by_id(Customer, customer_id)
    if customer is None:
        raise NotFound("No such buyer.")
    return customer
