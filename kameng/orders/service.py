"""Order operations: checkout (price, reserve, hold), payment (`mark_paid`), expiry,
cancellation, refunds, and finding orders for buyers and staff.

Prices come from quote() only. Reservations (codes, the shop's supply-cost hold, redeemed
points) are taken at checkout and live until the order is paid, expires or is cancelled.
`mark_paid` is the one paid path: gateways, the wallet and staff all go through it, and it
writes the outbox row that hands the order to delivery in the same transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select

from ..catalog import service as catalog
from ..catalog.models import Coupon, Product
from ..catalog.pricing import quote
from ..errors import Conflict, DomainError, NotFound
from ..extensions import db
from ..inventory import service as inventory
from ..ledger import service as ledger
from ..members.models import Customer
from ..merchant.models import ShopNotice
from ..money import apply_percent, format_money
from ..rows import row_by_id
from ..security.auth import check_email
from ..security.crypto import keyring
from ..tenants.models import Tenant
from ..tenants.scoping import platform_scope, tenant_scope
from ..workers import outbox
from . import events
from .models import Order, OrderLine
from .states import SALE_STATUSES, note, transition

DEFAULT_POINTS = {"earn_per_unit": 1, "point_value": 1, "max_redeem_bp": 5000}


def points_settings(tenant: Tenant) -> dict:
    """Points earned per 1.00 paid, minor units one point is worth, and the share of an order
    points may pay (basis points). A shop sets them in its settings."""
    return {**DEFAULT_POINTS, **(tenant.settings or {}).get("points", {})}


def _token() -> tuple[str, bytes]:
    token = secrets.token_urlsafe(24)  # 192 bits
    return token, hash_token(token)


def order_link_token(order: Order) -> str | None:
    """The order's link token (for the buyer's mails), decrypted."""
    return keyring().decrypt(order.token_cipher) if order.token_cipher else None


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _new_number() -> str:
    for _ in range(10):
        number = f"{datetime.now(UTC):%y%m%d}{secrets.randbelow(10**6):06d}"
        if not db.session.scalar(select(Order.id).where(Order.number == number)):
            return number
    raise Conflict(_l("Please try again."))


# -- checkout ------------------------------------------------------------------------------------


@dataclass
class CheckoutRequest:
    product_id: int
    qty: int
    email: str
    payment_method: str
    inputs: dict = field(default_factory=dict)
    coupon_code: str = ""
    use_points: int = 0
    customer: Customer | None = None
    ip: str = ""


@dataclass
class Placed:
    order: Order
    token: str  # shown once: the order link is /order/<token>


def _open_orders(tenant_id: int, *, customer: Customer | None, email: str, ip: str):
    """(open orders of this buyer, open orders from this address), in one query."""
    buyer = Order.customer_id == customer.id if customer else Order.email == email
    by_buyer, by_ip = db.session.execute(
        select(func.count().filter(buyer), func.count().filter(Order.ip == ip))
        .where(Order.status == "pending", Order.expires_at > datetime.now(UTC),
               or_(buyer, Order.ip == ip))
    ).one()
    return by_buyer, (by_ip if ip else 0)


def _check_coupon_use(coupon: Coupon, *, customer: Customer | None, email: str) -> None:
    counted = (*SALE_STATUSES, "pending")  # refunded orders do not count
    uses = db.session.scalar(
        select(func.count()).select_from(Order).where(
            Order.coupon_id == coupon.id, Order.status.in_(counted)))
    if coupon.max_uses is not None and uses >= coupon.max_uses:
        raise DomainError(_l("This coupon has been used up."), field="coupon")
    buyer = Order.customer_id == customer.id if customer else Order.email == email
    if coupon.max_uses_per_buyer is not None:
        mine = db.session.scalar(select(func.count()).select_from(Order).where(
            Order.coupon_id == coupon.id, Order.status.in_(counted), buyer))
        if mine >= coupon.max_uses_per_buyer:
            raise DomainError(_l("You have already used this coupon."), field="coupon")
    if coupon.first_order_only:
        earlier = db.session.scalar(select(func.count()).select_from(Order).where(
            Order.status.in_(SALE_STATUSES), Order.kind == "purchase", buyer))
        if earlier:
            raise DomainError(_l("This coupon is for a first order only."), field="coupon")


def _points_to_use(tenant: Tenant, customer: Customer | None, wanted: int, total: int) -> int:
    if wanted <= 0:
        return 0
    if customer is None:
        raise DomainError(_l("Log in to pay with points."), field="use_points")
    settings = points_settings(tenant)
    value = max(1, int(settings["point_value"]))
    cap = apply_percent(total, int(settings["max_redeem_bp"])) // value
    balance = ledger.buyer_points(customer).available
    points = min(wanted, cap, balance)
    if points <= 0:
        raise DomainError(_l("No points can be used on this order."), field="use_points")
    return points


def checkout(tenant: Tenant, request: CheckoutRequest) -> Placed:
    """Create a pending order for one product: price it, reserve its stock, hold the shop's
    supply cost and the buyer's points. Raises a DomainError (and the caller rolls back)."""
    from ..payments.registry import method_available

    config = current_app.config
    email = check_email(request.email)
    product = catalog.get_product(request.product_id)
    if not product.on_sale or (product.category is not None and not product.category.active):
        raise NotFound(_l("This product is not on sale."))
    by_buyer, by_ip = _open_orders(tenant.id, customer=request.customer, email=email,
                                   ip=request.ip)
    if by_buyer >= config["MAX_OPEN_ORDERS_PER_BUYER"] or by_ip >= config["MAX_OPEN_ORDERS_PER_IP"]:
        raise Conflict(_l("You have too many unpaid orders. Pay one of them or wait until they "
                          "expire, then try again."))
    method_available(tenant, request.payment_method, request.customer)
    coupon = None
    if request.coupon_code.strip():
        coupon = catalog.find_coupon(request.coupon_code)
        if coupon is None:
            raise DomainError(_l("Unknown coupon code."), field="coupon")
        _check_coupon_use(coupon, customer=request.customer, email=email)
    level = catalog.level_for(request.customer)
    priced = quote(tenant, product, level, request.qty, coupon)
    if product.upstream_stock is not None and priced.qty > product.upstream_stock:
        raise inventory.SoldOut(product.upstream_stock)  # an upstream shop's last known stock
    answers = catalog.check_buyer_input(product, request.inputs)
    points = _points_to_use(tenant, request.customer, request.use_points, priced.total)
    points_value = points * max(1, int(points_settings(tenant)["point_value"]))
    token, token_hash = _token()
    now = datetime.now(UTC)
    order = Order(
        tenant_id=tenant.id, number=_new_number(), token_hash=token_hash,
        token_cipher=keyring().encrypt(token), kind="purchase",
        status="pending", customer_id=request.customer.id if request.customer else None,
        email=email, currency=priced.currency, subtotal=priced.subtotal,
        coupon_discount=priced.coupon, total=priced.total, points_used=points,
        points_value=points_value, amount_due=priced.total - points_value,
        # The platform's supply cost, held on the shop's wallet below. A product bought from
        # an upstream Kameng shop has a cost too (line.unit_cost), but it is paid there.
        cost_total=priced.cost * priced.qty if product.is_supply else 0,
        coupon_id=coupon.id if coupon else None,
        coupon_code=priced.coupon_code, level_id=level.id if level else None,
        payment_method=request.payment_method, ip=request.ip[:64],
        test_mode=bool((tenant.settings or {}).get("test_mode")),
        expires_at=now + timedelta(minutes=config["ORDER_EXPIRY_MINUTES"]),
    )
    db.session.add(order)
    db.session.flush()
    line = OrderLine(
        tenant_id=tenant.id, order_id=order.id, product_id=product.id,
        supply_product_id=product.supply_product_id, title=product.title,
        delivery_kind=product.kind, qty=priced.qty, unit_price=priced.unit,
        unit_cost=priced.cost, total=priced.subtotal, buyer_input=answers,
    )
    db.session.add(line)
    db.session.flush()
    if product.kind == "card":
        _reserve_codes(tenant, product, priced.qty, order)
    if order.cost_total:
        try:
            ledger.place_hold(f"order:{order.id}:supply-cost",
                              ledger.shop_wallet(tenant.id, order.currency), order.cost_total,
                              tenant_id=tenant.id, order_id=order.id)
        except ledger.InsufficientFunds:
            raise ShopWalletShort(tenant.id, product.title) from None
    if points:
        ledger.place_hold(f"order:{order.id}:points", ledger.buyer_points(request.customer),
                          points, tenant_id=tenant.id, order_id=order.id)
    note(order, f"Order placed: {line.qty} × {line.title}, total "
                f"{format_money(order.total, order.currency)}", actor=email)
    return Placed(order=order, token=token)


def _reserve_codes(tenant: Tenant, product: Product, qty: int, order: Order) -> None:
    """Reserve the order's codes. When stock is short, this shop's unpaid orders past their
    time are expired first (their codes go back to stock) and the rest is tried again — the
    scheduled sweep may not have run yet."""
    try:
        inventory.reserve_codes(product, qty, order_id=order.id, until=order.expires_at)
    except inventory.SoldOut as short:
        if not expire_due_orders(tenant_id=tenant.id):
            raise
        try:
            inventory.reserve_codes(product, qty - short.available, order_id=order.id,
                                    until=order.expires_at)
        except inventory.SoldOut as still_short:
            raise inventory.SoldOut(short.available + still_short.available) from None


class ShopWalletShort(DomainError):
    """The shop's wallet at the platform cannot cover a supply product's cost: the buyer is told
    it is temporarily unavailable; after rolling back, the caller tells the shop."""

    def __init__(self, tenant_id: int, title: str):
        super().__init__(_l("This product is temporarily unavailable. Please try again later."))
        self.tenant_id, self.title = tenant_id, title

    def tell_shop(self) -> None:
        """Leave the shop a notice (call after the checkout's rollback, then commit)."""
        db.session.add(ShopNotice(
            tenant_id=self.tenant_id, kind="wallet_short",
            message=(f"A buyer could not buy '{self.title}': your wallet at the platform does "
                     "not cover its supply cost. Top up your wallet.")))
        db.session.flush()


# -- the paid path --------------------------------------------------------------------------------


def _settle_reservations_for_late_payment(order: Order) -> str | None:
    """An expired order was paid: take stock and holds again. None if that worked, else why."""
    tenant = db.session.get(Tenant, order.tenant_id)
    try:
        with db.session.begin_nested():
            for line in order.lines:
                product = row_by_id(Product, line.product_id)
                if line.delivery_kind == "card":
                    if product is None:
                        raise inventory.SoldOut(0)
                    inventory.reserve_codes(product, line.qty, order_id=order.id,
                                            until=datetime.now(UTC) + timedelta(minutes=15))
            if order.cost_total:
                ledger.place_hold(f"order:{order.id}:supply-cost:late",
                                  ledger.shop_wallet(tenant.id, order.currency), order.cost_total,
                                  tenant_id=tenant.id, order_id=order.id)
            if order.points_used:
                customer = db.session.get(Customer, order.customer_id)
                ledger.place_hold(f"order:{order.id}:points:late", ledger.buyer_points(customer),
                                  order.points_used, tenant_id=tenant.id, order_id=order.id)
    except (inventory.SoldOut, ledger.InsufficientFunds) as error:
        return str(error)
    return None


def mark_paid(order: Order, *, payment=None, actor: str = "system", note_text: str = "") -> bool:
    """Record that the buyer paid `order` (CAS: False when it was already paid).

    Captures the buyer's redeemed points, moves wallet or platform-collected money in the
    ledger, earns points, counts the coupon, raises the buyer's lifetime spend, and writes
    the outbox row that starts delivery — all in the caller's transaction.
    """
    source = order.status
    if source not in ("pending", "expired"):
        return False
    late_problem = None
    if source == "expired":
        late_problem = _settle_reservations_for_late_payment(order)
    if not transition(order, "paid", from_status=source, actor=actor, note=note_text,
                      data={"payment": payment.reference if payment else None}):
        return False
    tenant = db.session.get(Tenant, order.tenant_id)
    customer = db.session.get(Customer, order.customer_id) if order.customer_id else None
    if payment is not None:
        payment.status = "succeeded"
        payment.succeeded_at = datetime.now(UTC)
    _post_payment(tenant, order, payment, customer)
    if order.kind == "topup":
        _credit_topup(tenant, order, payment, customer)
    if order.coupon_id:
        coupon = db.session.get(Coupon, order.coupon_id)
        if coupon is not None:
            coupon.used_count = Coupon.used_count + 1
    if customer is not None:
        customer.lifetime_spend = (customer.lifetime_spend or 0) + order.amount_due
        db.session.flush()
        db.session.refresh(customer, ["lifetime_spend", "level_id"])
        catalog.upgrade_level(customer)
    if late_problem is not None:
        _late_payment_without_stock(tenant, order, customer, late_problem)
    if order.status == "paid":  # to delivery (a late payment credited to a wallet is done)
        outbox.add("order.paid", tenant_id=order.tenant_id, order_id=order.id)
        events.order_paid(order)
    db.session.flush()
    return True


def _post_payment(tenant: Tenant, order: Order, payment, customer: Customer | None) -> None:
    """The ledger side of a payment."""
    key = f"order:{order.id}"
    for hold in ledger.holds_of_order(order.id) if order.points_used else ():
        if hold.account.kind == "buyer_points":
            ledger.capture_hold(hold, f"{key}:points-redeemed", "points_redeemed",
                                ledger.get_account("shop_points", currency=ledger.POINTS,
                                                   tenant_id=tenant.id),
                                tenant_id=tenant.id, order_id=order.id)
    # Marked paid by staff (no payment): the money came outside Kameng; nothing to post.
    method = payment.gateway if payment is not None else "manual"
    if method == "balance" and order.amount_due:
        ledger.transfer(f"{key}:paid-from-wallet", "wallet_payment",
                        ledger.buyer_wallet(customer, order.currency),
                        ledger.get_account("shop_income", currency=order.currency,
                                           tenant_id=tenant.id),
                        order.amount_due, tenant_id=tenant.id, order_id=order.id)
    elif payment is not None and payment.owner == "platform" and order.amount_due:
        fee = apply_percent(order.amount_due, current_app.config["PLATFORM_FEE_BP"])
        ledger.post(f"{key}:platform-collected", "platform_collection", [
            (ledger.get_account("platform_gateway", currency=order.currency), -order.amount_due),
            (ledger.shop_wallet(tenant.id, order.currency), order.amount_due - fee),
            (ledger.get_account("platform_fees", currency=order.currency), fee),
        ], tenant_id=tenant.id, order_id=order.id, memo=f"order {order.number}")
    earned = points_earned(tenant, order)
    if customer is not None and earned:
        ledger.transfer(f"{key}:points-earned", "points_earned",
                        ledger.get_account("shop_points", currency=ledger.POINTS,
                                           tenant_id=tenant.id),
                        ledger.buyer_points(customer), earned, tenant_id=tenant.id,
                        order_id=order.id)


def _credit_topup(tenant: Tenant, order: Order, payment, customer: Customer) -> None:
    """A paid wallet top-up: the shop now owes the buyer the amount."""
    ledger.transfer(f"order:{order.id}:topup", "wallet_topup",
                    ledger.get_account("shop_income", currency=order.currency,
                                       tenant_id=tenant.id),
                    ledger.buyer_wallet(customer, order.currency), order.amount_due,
                    tenant_id=tenant.id, order_id=order.id)


def create_topup(tenant: Tenant, customer: Customer, amount: int, method: str, ip: str = ""
                 ) -> Placed:
    """A pending wallet top-up, paid through a gateway like an order."""
    from ..payments.registry import method_available

    if method == "balance":
        raise DomainError(_l("Choose a payment method to top up with."), field="payment_method")
    method_available(tenant, method, customer)
    if amount < 100:
        raise DomainError(_l("Top up at least 1.00."), field="amount")
    most = current_app.config["MAX_TOPUP"]
    if amount > most:
        raise DomainError(_l("Top up at most %(most)s at a time.",
                             most=format_money(most, tenant.currency)),
                          field="amount")
    by_buyer, _ = _open_orders(tenant.id, customer=customer, email=customer.email, ip=ip)
    if by_buyer >= current_app.config["MAX_OPEN_ORDERS_PER_BUYER"]:
        raise Conflict(_l("You have too many unpaid orders. Pay one of them or wait until they "
                          "expire, then try again."))
    token, token_hash = _token()
    order = Order(
        tenant_id=tenant.id, number=_new_number(), token_hash=token_hash,
        token_cipher=keyring().encrypt(token), kind="topup",
        status="pending", customer_id=customer.id, email=customer.email,
        currency=tenant.currency, subtotal=amount, coupon_discount=0, total=amount,
        points_used=0, points_value=0, amount_due=amount, cost_total=0, payment_method=method,
        ip=ip[:64], test_mode=bool((tenant.settings or {}).get("test_mode")),
        expires_at=datetime.now(UTC)
        + timedelta(minutes=current_app.config["ORDER_EXPIRY_MINUTES"]),
    )
    db.session.add(order)
    db.session.flush()
    note(order, f"Wallet top-up of {format_money(amount, order.currency)}", actor=customer.email)
    return Placed(order=order, token=token)


def points_earned(tenant: Tenant, order: Order) -> int:
    rate = int(points_settings(tenant)["earn_per_unit"])
    return (order.amount_due // 100) * rate if order.kind == "purchase" else 0


def _late_payment_without_stock(tenant, order, customer, problem: str) -> None:
    """Paid after expiry and the stock is gone: credit a registered buyer's wallet, or flag the
    order for staff to refund or deliver by hand."""
    order.needs_staff = True
    if customer is not None:
        _refund_ledger(tenant, order, customer, to_wallet=True, key_suffix="late")
        order.staff_reason = (f"Paid after it expired and {problem.lower()} The payment was "
                              "credited to the buyer's wallet.")
        transition(order, "refunded", from_status="paid", note="credited to the buyer's wallet: "
                   "paid after expiry, stock no longer available")
    else:
        order.staff_reason = (f"Paid after it expired and {problem.lower()} Refund the buyer or "
                              "deliver by hand.")
        note(order, order.staff_reason)
    db.session.flush()


# -- expiry and cancellation -------------------------------------------------------------------


def _release(order: Order) -> None:
    inventory.release_codes(order.id, order.tenant_id)
    for hold in ledger.holds_of_order(order.id):
        ledger.release_hold(hold)


def expire_due_orders(tenant_id: int | None = None, limit: int = 500) -> int:
    """Expire unpaid orders past their time, releasing codes and holds. Platform-wide when no
    tenant is given (the scheduled job); one shop's only before its checkout."""
    now = datetime.now(UTC)
    query = (select(Order.id, Order.tenant_id).where(Order.status == "pending",
                                                     Order.expires_at <= now)
             .order_by(Order.expires_at).limit(limit))
    if tenant_id is None:
        with platform_scope():
            due = db.session.execute(query).all()
    else:
        due = db.session.execute(query.where(Order.tenant_id == tenant_id)).all()
    expired = 0
    for order_id, owner in due:
        with tenant_scope(owner):
            order = db.session.get(Order, order_id)
            if order is not None and transition(order, "expired", from_status="pending"):
                _release(order)
                expired += 1
    return expired


def cancel_order(order: Order, *, actor: str) -> None:
    if not transition(order, "cancelled", from_status="pending", actor=actor):
        raise Conflict(_l("Only an unpaid order can be cancelled."))
    _release(order)


# -- refunds -----------------------------------------------------------------------------------


def _refund_ledger(tenant: Tenant, order: Order, customer: Customer | None, *, to_wallet: bool,
                   key_suffix: str = "refund") -> None:
    """Reverse the ledger side of a paid order: money to the wallet (when asked), redeemed
    points back, earned points taken back (as far as the buyer still has them)."""
    key = f"order:{order.id}:{key_suffix}"
    shop_points = ledger.get_account("shop_points", currency=ledger.POINTS, tenant_id=tenant.id)
    if customer is not None:
        if to_wallet and order.amount_due:
            ledger.transfer(f"{key}:to-wallet", "refund_to_wallet",
                            ledger.get_account("shop_income", currency=order.currency,
                                               tenant_id=tenant.id),
                            ledger.buyer_wallet(customer, order.currency), order.amount_due,
                            tenant_id=tenant.id, order_id=order.id)
        if order.points_used:
            ledger.transfer(f"{key}:points-back", "points_returned", shop_points,
                            ledger.buyer_points(customer), order.points_used,
                            tenant_id=tenant.id, order_id=order.id)
        earned = points_earned(tenant, order)
        if earned:
            points = ledger.buyer_points(customer)
            take = min(earned, points.available)
            if take:
                ledger.transfer(f"{key}:points-reversed", "points_reversed", points,
                                shop_points, take, tenant_id=tenant.id, order_id=order.id)


def refund_order(order: Order, *, to: str, actor: str, reason: str = "") -> None:
    """Refund a paid order to the buyer's wallet ("wallet") or through its gateway ("gateway").

    Undelivered stock goes back; delivered codes are voided (the buyer has seen them).
    """
    from ..payments.service import refund_payment

    if order.status not in ("paid", "awaiting", "failed", "delivered"):
        raise Conflict(_l("Only a paid order can be refunded."))
    if order.kind == "topup":
        _refund_topup(order, actor=actor, reason=reason)
        return
    tenant = db.session.get(Tenant, order.tenant_id)
    customer = db.session.get(Customer, order.customer_id) if order.customer_id else None
    source = order.status
    payment = next((p for p in reversed(order.payments) if p.status == "succeeded"), None)
    wallet = to == "wallet" or order.payment_method == "balance"
    if to not in ("wallet", "gateway"):
        raise DomainError(_l("Refund to the wallet or through the gateway."))
    if wallet and customer is None:
        raise DomainError(_l("A guest has no wallet: refund through the payment gateway."))
    if not wallet and payment is None:
        raise DomainError(_l("This order has no gateway payment to refund."))
    if not transition(order, "refunded", from_status=source, actor=actor,
                      note=f"refunded to the {'wallet' if wallet else 'gateway'}"
                           + (f": {reason}" if reason else "")):
        raise Conflict(_l("The order changed meanwhile; reload and try again."))
    if wallet:
        _refund_ledger(tenant, order, customer, to_wallet=True)
    else:
        refund_payment(order, payment)
        _refund_ledger(tenant, order, customer, to_wallet=False)
    if source == "delivered":
        inventory.void_sold_codes(order.id, order.tenant_id)
    else:
        _release(order)
    order.needs_staff = False
    db.session.flush()


def _refund_topup(order: Order, *, actor: str, reason: str) -> None:
    """A wallet top-up goes back through its gateway, and its credit leaves the wallet first
    (refused when the buyer has spent it)."""
    from ..payments.service import refund_payment

    payment = next((p for p in reversed(order.payments) if p.status == "succeeded"), None)
    if payment is None:
        raise DomainError(_l("This top-up has no gateway payment to refund."))
    customer = db.session.get(Customer, order.customer_id)
    source = order.status
    if not transition(order, "refunded", from_status=source, actor=actor,
                      note="top-up refunded to the gateway" + (f": {reason}" if reason else "")):
        raise Conflict(_l("The order changed meanwhile; reload and try again."))
    try:
        ledger.transfer(f"order:{order.id}:topup-refund", "wallet_topup_refund",
                        ledger.buyer_wallet(customer, order.currency),
                        ledger.get_account("shop_income", currency=order.currency,
                                           tenant_id=order.tenant_id),
                        order.amount_due, tenant_id=order.tenant_id, order_id=order.id)
    except ledger.InsufficientFunds:
        raise DomainError(_l("The buyer has already spent this top-up; it cannot be refunded "
                             "in full.")) from None
    refund_payment(order, payment)
    db.session.flush()


# -- finding orders ----------------------------------------------------------------------------


def order_by_token(token: str) -> Order | None:
    if not token or len(token) > 100:
        return None
    return db.session.scalar(select(Order).where(Order.token_hash == hash_token(token)))


def get_order(order_id: int) -> Order:
    order = row_by_id(Order, order_id)
    if order is None:
        raise NotFound(_l("No such order."))
    return order


def lookup_order(number: str, email: str) -> Order | None:
    """An order by its number and the buyer's e-mail (None for any mismatch)."""
    number = (number or "").strip()
    email = (email or "").strip().lower()
    if not number or not email or len(number) > 24:
        return None
    return db.session.scalar(select(Order).where(Order.number == number, Order.email == email))


def orders_of_customer(customer: Customer, limit: int = 100) -> list[Order]:
    return list(db.session.scalars(
        select(Order).where(Order.customer_id == customer.id)
        .order_by(Order.id.desc()).limit(limit)))


def search_orders(*, status: str = "", query: str = "", needs_staff: bool = False,
                  limit: int = 200, before_id: int | None = None) -> list[Order]:
    """The bound shop's orders, newest first (older than `before_id`), for the console."""
    select_orders = select(Order).order_by(Order.id.desc()).limit(limit)
    if before_id is not None:
        select_orders = select_orders.where(Order.id < before_id)
    if status:
        select_orders = select_orders.where(Order.status == status)
    if needs_staff:
        select_orders = select_orders.where(Order.needs_staff.is_(True))
    if query:
        needle = query.strip().lower()
        select_orders = select_orders.where(or_(Order.number == needle,
                                                Order.email.contains(needle, autoescape=True)))
    return list(db.session.scalars(select_orders))


def delivered_items(order: Order) -> list[tuple[OrderLine, list[str]]]:
    """What the buyer received, per line: codes, fixed content or fulfilled content."""
    from ..security.crypto import keyring

    items = []
    for line in order.lines:
        if line.delivery_kind == "card":
            values = inventory.codes_of_line(line.supply_product_id is not None, line.id,
                                             order.tenant_id)
        elif line.content:
            values = [keyring().decrypt(line.content)]
        else:
            values = []
        items.append((line, values))
    return items
