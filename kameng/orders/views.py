"""The buyer's side of orders on the shop host: checkout, payment step, the order page,
order lookup, the buyer's orders and wallet."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from ..errors import DomainError
from ..extensions import csrf, db, limiter
from ..extensions import login as login_manager
from ..forms import EmptyForm, committing
from ..ledger import service as ledger
from ..money import parse_amount
from ..payments import service as payments
from ..payments.gateways.base import ReturnUrls
from ..payments.registry import BALANCE, available_methods
from ..reports import service as reports
from ..reports.console import csv_response
from ..storefront.views import product_page, render_shop
from ..support import service as support
from ..tenants.hosts import absolute_url_for, current_tenant
from ..workers.outbox import after_payment
from . import service as orders
from .forms import LookupForm, TopUpForm, checkout_form, checkout_needs_csrf
from .models import Order

bp = Blueprint("orders", __name__)
login_manager.blueprint_login_views["orders"] = "members.login"

SEEN_KEY = "orders_seen"  # orders this browser may open by number (after a lookup)
REFRESHING = ("pending", "paid", "delivering")


def _buyer():
    return current_user if current_user.is_authenticated else None


@bp.post("/product/<int:product_id>/checkout")
@csrf.exempt  # not from CSRF: checked here, for whoever has a session (checkout_needs_csrf)
def checkout(product_id: int):
    shop = current_tenant()
    if checkout_needs_csrf():
        if "csrf_token" not in request.form:
            return _confirm_again(shop, product_id)
        csrf.protect()  # a wrong token is refused as on every other form (400, CSRFError's)
    product = _product_or_404(product_id)  # held: the service finds it in the session
    form = checkout_form(shop, product, _buyer(), request.form)
    if not form.validate_on_submit():
        return product_page(product_id, form, 422)
    try:
        placed = orders.checkout(shop, orders.CheckoutRequest(
            product_id=product_id, qty=form.qty.data, email=form.email.data,
            payment_method=form.payment_method.data, inputs=form.buyer_inputs(request.form),
            coupon_code=form.coupon.data or "", use_points=form.use_points.data or 0,
            customer=_buyer(), ip=request.remote_addr or "",
        ))
    except DomainError as error:
        db.session.rollback()
        if isinstance(error, orders.ShopWalletShort):
            error.tell_shop()
            db.session.commit()
        form.fail(error)
        return product_page(product_id, form, error.status_code if error.status_code != 400
                            else 422)
    db.session.commit()
    _remember(placed.order)
    if payments.starts_with_redirect(shop, placed.order, _buyer()):
        # Straight on to the gateway: the payment step would only redirect there.
        return _start_payment(shop, placed.order, placed.token)
    return redirect(url_for(".pay", token=placed.token))


def _confirm_again(shop, product_id: int):
    """A form without a token from a browser that has a session: it came from the page kept
    for visitors without one, and this browser got a session meanwhile (a lookup or a
    language chosen in another tab). Nothing is placed; the same form comes back, now with a
    token, filled in as it was, to confirm once more. (Only a page: a forged cross-site form
    cannot place anything this way either.)"""
    form = checkout_form(shop, _product_or_404(product_id), _buyer(), request.form)
    form.form_errors.append(_("Please check your order and confirm it once more."))
    return product_page(product_id, form, 422)


def _product_or_404(product_id: int):
    from ..catalog.service import get_product

    return get_product(product_id)


def _remember(order: Order) -> None:
    seen = [i for i in session.get(SEEN_KEY, []) if i != order.id][-19:]
    session[SEEN_KEY] = [*seen, order.id]


def order_for_token(token: str) -> Order:
    order = orders.order_by_token(token)
    if order is None:
        abort(404)
    return order


def _urls(token: str) -> ReturnUrls:
    page = absolute_url_for("orders.order_page", token=token)
    return ReturnUrls(success=page, cancel=page, notify="")  # gateways know their notify URL


@bp.route("/order/<token>/pay", methods=["GET", "POST"])
def pay(token: str):
    """Take the buyer to the order's payment method (or confirm a wallet payment)."""
    shop = current_tenant()
    order = order_for_token(token)
    if order.status != "pending":
        return redirect(url_for(".order_page", token=token))
    if order.payment_method == BALANCE:
        return _pay_from_wallet(shop, order, token)
    if request.method == "POST":
        abort(405)
    return _start_payment(shop, order, token)


def _start_payment(shop, order: Order, token: str):
    """A new payment attempt for the order: to the gateway (or its QR code or form page)."""
    with committing() as attempt:
        payment, start = payments.start_payment(shop, order, _urls(token), _buyer())
    if attempt.failed:
        return redirect(url_for(".order_page", token=token))
    if start.kind == "redirect":
        separator = "&" if "?" in start.url else "?"
        target = start.url
        if start.url.startswith("/"):
            target = f"{start.url}{separator}return={url_for('.order_page', token=token)}"
        return redirect(target)
    return render_shop("orders/gateway.html", order=order, start=start, payment=payment,
                       qr_svg=qr_svg(start.qr_data) if start.kind == "qr" else "")


def qr_svg(data: str) -> str:
    """A QR code as inline SVG markup, drawn on the server (no script, no external service)."""
    import segno

    return segno.make(data, error="m").svg_inline(scale=5, border=2, omitsize=True)


def _pay_from_wallet(shop, order: Order, token: str):
    if not current_user.is_authenticated or order.customer_id != current_user.id:
        return login_manager.unauthorized()
    wallet = ledger.buyer_wallet(current_user, order.currency)
    form = EmptyForm()
    status = 200
    if request.method == "POST" and form.validate_on_submit():
        try:
            payments.pay_with_balance(shop, order, current_user)
        except DomainError as error:
            db.session.rollback()
            form.form_errors.append(error.message)
            status = error.status_code
        else:
            db.session.commit()
            after_payment(order.id)
            return redirect(url_for(".order_page", token=token))
    return render_shop("orders/wallet_pay.html", order=order, wallet=wallet, form=form,
                       token=token), status


@bp.get("/order/<token>")
def order_page(token: str):
    order = order_for_token(token)
    _remember(order)
    return _render_order(order, token=token)


def _render_order(order: Order, token: str | None = None):
    done = order.status in ("delivered", "refunded")
    items = orders.delivered_items(order) if done else []
    tickets = support.tickets_of_order(order) if done else []  # only delivered ones have any
    response = render_shop(
        "orders/order.html", order=order, items=items, token=token,
        refresh=order.status in REFRESHING, cancel_form=EmptyForm(),
        tickets=tickets, can_report=support.can_open_ticket(order, tickets),
    )
    # The page can carry codes: never cached, never sent as a Referer to other sites.
    return response, 200, {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@bp.get("/orders/<number>")
def order_by_number(number: str):
    order = order_for_number(number)
    # The buyer's own unpaid order, opened from their account: with the order link's actions
    # (pay now, cancel). A browser that only looked the order up gets the page without them.
    own = current_user.is_authenticated and order.customer_id == current_user.id
    token = orders.order_link_token(order) if own and order.status == "pending" else None
    return _render_order(order, token=token)


def order_for_number(number: str) -> Order:
    """An order this browser looked up, or one of the logged-in buyer's own orders (else 404).

    With order_for_token, the one rule for a buyer's order pages (after-sales pages too)."""
    order = None
    if current_user.is_authenticated:
        order = next((o for o in orders.orders_of_customer(current_user) if o.number == number),
                     None)
    if order is None:
        order = next((o for o in (db.session.get(Order, i) for i in session.get(SEEN_KEY, []))
                      if o is not None and o.number == number), None)
    if order is None:
        abort(404)
    return order


def _lookup_key() -> str:
    return f"lookup:{current_tenant().id}:{request.remote_addr}"


@bp.route("/orders/lookup", methods=["GET", "POST"])
@limiter.limit("10 per minute", key_func=_lookup_key, methods=["POST"])
def lookup():
    form = LookupForm()
    status = 200
    if form.validate_on_submit():
        order = orders.lookup_order(form.number.data, form.email.data)
        if order is not None:
            _remember(order)
            return redirect(url_for(".order_by_number", number=order.number))
        # The same answer whether the number is unknown or the e-mail does not match.
        form.form_errors.append(_("No order matches that number and e-mail."))
        status = 404
    elif request.method == "POST":
        status = 422
    return render_shop("orders/lookup.html", form=form), status


@bp.get("/account/orders")
def my_orders():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return render_shop("orders/my_orders.html", orders=orders.orders_of_customer(current_user))


@bp.route("/account/wallet", methods=["GET", "POST"])
def wallet():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    shop = current_tenant()
    form = TopUpForm()
    form.payment_method.choices = [(m.name, m.label) for m in available_methods(shop)]
    if request.method == "GET" and form.payment_method.choices:
        form.payment_method.data = form.payment_method.choices[0][0]
    status = 200
    if form.validate_on_submit():
        with committing(form) as attempt:
            amount = parse_amount(form.amount.data, shop.currency, field="amount")
            placed = orders.create_topup(shop, current_user, amount, form.payment_method.data,
                                         ip=request.remote_addr or "")
        if attempt.failed:
            status = 422
        else:
            _remember(placed.order)
            return redirect(url_for(".pay", token=placed.token))
    elif request.method == "POST":
        status = 422
    account = ledger.buyer_wallet(current_user, shop.currency)
    points = ledger.buyer_points(current_user)
    db.session.commit()  # the accounts may have just been created
    return render_shop(
        "orders/wallet.html", form=form, account=account, points=points,
        history=ledger.statement(account, 50), points_history=ledger.statement(points, 20),
    ), status


@bp.get("/account/wallet.csv")
def wallet_csv():
    """The buyer's (or agent's) own wallet statement as CSV, within ?start=&end= (YYYY-MM-DD)."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    shop = current_tenant()
    period = reports.parse_range(request.args.get("start"), request.args.get("end"),
                                 default_days=90)
    account = ledger.buyer_wallet(current_user, shop.currency)
    db.session.commit()  # the account may have just been created
    body = reports.statement_csv(reports.statement_lines(account, period), shop.currency)
    return csv_response(body, f"wallet-{shop.slug}-{period.first}-{period.last}.csv")


@bp.post("/order/<token>/cancel")
def cancel(token: str):
    order = order_for_token(token)
    if EmptyForm().validate_on_submit() and order.status == "pending":
        orders.cancel_order(order, actor=order.email)
        db.session.commit()
        flash(_("The order was cancelled."))
    return redirect(url_for(".order_page", token=token))

