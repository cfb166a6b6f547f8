"""The REST API v1 blueprints: the shop API (every shop host, /api/v1) and the super-admin API
(the admin host, /api/v1/platform, in kameng/api/platform.py).

Each view declares its `Operation` with `@operation(...)`: that one declaration is the OpenAPI
document's entry (kameng/api/openapi.py), and the wrapper it puts around the view enforces it —
signature (kameng/api/auth.py), kind of key and scope, the rate limit of the key, and the query
parameters and JSON body (unknown fields refused). Views stay thin: they call the services and
turn rows into JSON (kameng/api/present.py). Every error is the one JSON shape
(kameng/api/errors.py); the API is exempt from CSRF (it uses no cookies).

Scopes: `catalog` (products), `orders` (orders; buyers also place them), `manage` (webhooks,
the shop's wallet). Staff keys read products at the guest price (what a visitor sees); an agent
buyer's key reads them at its level's price and buys at that price from its wallet. Staff keys
do not place orders (403 buyer_key_required): an order needs a buyer's wallet to pay from.
"""

from __future__ import annotations

import json
import re
from functools import wraps

from flask import Blueprint, current_app, g, jsonify, make_response, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..audit.service import Actor, record
from ..catalog import service as catalog
from ..errors import DomainError
from ..extensions import db, limiter
from ..ledger import service as ledger
from ..ledger.models import LedgerPosting, LedgerTransaction
from ..orders import service as orders
from ..orders.models import Order
from ..payments import service as payments
from ..storefront import service as storefront
from ..tenants.hosts import current_tenant
from ..tenants.scoping import enter_platform_scope
from ..webhooks import service as webhooks
from ..webhooks.models import WebhookEndpoint
from ..workers.outbox import after_payment
from . import openapi, present
from . import service as keys
from .auth import Caller, authenticate, current_caller, rate_limit_key
from .errors import ERROR_CODES, ApiError, english, error_response, from_domain_error
from .openapi import ID, LIMIT, ORDER_STATUSES, WEBHOOK_EVENT_NAMES, Operation, text

shop_api = Blueprint("api", __name__, template_folder="templates")
platform_api = Blueprint("platform_api", __name__, template_folder="templates")

MAX_BODY = 64 * 1024
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,100}")
DEFAULT_RATE_LIMIT = "120 per minute"


def _rate() -> str:
    return current_app.config.get("API_RATE_LIMIT") or DEFAULT_RATE_LIMIT


@shop_api.errorhandler(ApiError)
@platform_api.errorhandler(ApiError)
def _api_error(error: ApiError):
    db.session.rollback()
    return error_response(error)


@platform_api.before_request
def _platform_wide():
    # The super-admin API sees every shop: the explicit opt-out of tenant scoping.
    enter_platform_scope()


# -- the declaration that is both the document and the guard -------------------------------


def _allowed(operation: Operation, caller: Caller) -> None:
    if operation.auth == "staff" and caller.kind != "staff":
        raise ApiError("staff_key_required")
    if operation.auth == "buyer" and caller.kind != "customer":
        raise ApiError("buyer_key_required")
    if operation.scope and operation.scope not in caller.scopes:
        raise ApiError("insufficient_scope", f"This needs a key with the "
                                             f"'{operation.scope}' scope.")


def _json_body(operation: Operation) -> dict:
    if (request.content_length or 0) > MAX_BODY:
        raise ApiError("too_large", f"The body may be at most {MAX_BODY} bytes.")
    if request.mimetype != "application/json":
        raise ApiError("unsupported_media_type")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY:
        raise ApiError("too_large", f"The body may be at most {MAX_BODY} bytes.")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError("invalid_json") from None
    problems = openapi.validate(operation.body, body)
    if problems:
        raise ApiError("validation_failed", fields=problems)
    return body


def operation(site: str, method: str, path: str, operation_id: str, summary: str, *,
              tag: str, auth: str, scope: str | None = None, description: str = "",
              path_params: dict | None = None, query: dict | None = None,
              headers: dict | None = None, body: dict | None = None,
              responses: dict, public_doc: bool = False):
    """Declare a view's operation (for the OpenAPI document) and guard the view with it."""
    declared = openapi.register(Operation(
        site=site, method=method, path=path, operation_id=operation_id, summary=summary,
        tag=tag, auth=auth, scope=scope, description=description,
        path_params=path_params or {}, query=query or {}, headers=headers or {}, body=body,
        responses=responses, public_doc=public_doc))

    def decorate(view):
        def checked(**kwargs):
            _allowed(declared, g.api_caller)
            return _validated(view, kwargs)

        checked.__name__ = checked.__qualname__ = f"api_{operation_id}"
        limited = limiter.shared_limit(_rate, scope="api", key_func=rate_limit_key)(checked)

        @wraps(view)
        def run(**kwargs) -> ResponseReturnValue:
            if declared.auth == "public":
                return _validated(view, kwargs)
            tenant = current_tenant() if site == "shop" else None
            authenticate(tenant)
            return limited(**kwargs)

        def _validated(view_fn, kwargs):
            values, problems = openapi.parse_query(declared, request.args)
            if problems:
                raise ApiError("validation_failed", fields=problems)
            g.api_query = values
            g.api_body = _json_body(declared) if declared.body is not None else None
            return view_fn(**kwargs)

        return run

    return decorate


def caller() -> Caller:
    return current_caller()


def query(name: str, default=None):
    return g.api_query.get(name, default)


def body() -> dict:
    return g.api_body


def _json(data: dict, status: int = 200):
    response = jsonify(data)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def api_actor() -> Actor:
    """The key, for the audit log."""
    key = caller().key
    return Actor(kind="api", id=key.id, email=f"API key {key.key_id}",
                 ip=request.remote_addr or "")


# -- the document and the reference page ----------------------------------------------------


def _server_url() -> str:
    return f"{request.scheme}://{request.host}"  # the paths carry /api/v1


def _document(site: str) -> dict:
    title = "Kameng shop API" if site == "shop" else "Kameng super-admin API"
    return openapi.document(site, _server_url(), title)


def _docs_page(site: str):
    doc = _document(site)
    ops = openapi.operations(site)
    tags: dict[str, list[Operation]] = {}
    for op in ops:
        if not op.public_doc:
            tags.setdefault(op.tag, []).append(op)
    schemas = doc["components"]["schemas"]
    response = make_response(render_template(
        "api/docs.html", doc=doc, tags=tags, schemas=schemas, site=site,
        error_codes=sorted(ERROR_CODES.items(), key=lambda e: (e[1][0], e[0])),
        field_rows=openapi.field_rows, schema_type=openapi.schema_type,
        staff_scopes=keys.STAFF_SCOPES, buyer_scopes=keys.BUYER_SCOPES,
        agent_level=keys.AGENT_LEVEL_NAME, rate=_rate(), host=request.host))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@shop_api.get("/openapi.json")
@operation("shop", "GET", "/openapi.json", "getOpenApi", "This OpenAPI 3.1 document",
           tag="Reference", auth="public", public_doc=True,
           responses={200: ("The document", "document")})
def shop_document():
    return _json(_document("shop"))


@shop_api.get("/docs")
@operation("shop", "GET", "/docs", "getDocs", "The reference page (HTML)", tag="Reference",
           auth="public", public_doc=True, responses={200: ("The page", "html")})
def shop_docs():
    return _docs_page("shop")


@platform_api.get("/openapi.json")
@operation("platform", "GET", "/openapi.json", "platformOpenApi", "This OpenAPI 3.1 document",
           tag="Reference", auth="public", public_doc=True,
           responses={200: ("The document", "document")})
def platform_document():
    return _json(_document("platform"))


@platform_api.get("/docs")
@operation("platform", "GET", "/docs", "platformDocs", "The reference page (HTML)",
           tag="Reference", auth="public", public_doc=True,
           responses={200: ("The page", "html")})
def platform_docs():
    return _docs_page("platform")


# -- the key itself ----------------------------------------------------------------------------


@shop_api.get("/key")
@operation("shop", "GET", "/key", "getKey", "The key that signed this request",
           tag="Keys", auth="any", responses={200: ("The key", "KeyInfo")},
           description="Its id, kind, scopes and, for a buyer key, the level it buys at. "
                       "Handy to check a key and its signing code.")
def key_info():
    who = caller()
    level = catalog.level_for(who.customer) if who.customer is not None else None
    return _json({"key": {"id": who.key.key_id, "kind": who.kind, "name": who.key.name or "",
                          "scopes": sorted(who.scopes), "shop": who.tenant.slug,
                          "level": level.name if level is not None else None}})


# -- products ---------------------------------------------------------------------------------


def _level_of(who: Caller):
    """The price level the caller buys at: an agent's own; staff see the guest price."""
    return catalog.level_for(who.customer if who.kind == "customer" else None)


def _shelf_products() -> list:
    active = {c.id for c in catalog.list_categories(active_only=True)}
    return [p for p in catalog.list_products(on_sale_only=True)
            if p.category_id is None or p.category_id in active]


@shop_api.get("/products")
@operation("shop", "GET", "/products", "listProducts", "List the products on sale",
           tag="Products", auth="any", scope="catalog",
           description="Products on the shop's shelf, by id, with the caller's price (one "
                       "unit at the minimum quantity), bulk price breaks and stock.",
           query={"limit": LIMIT, "after": {**ID, "minimum": 0, "description": "return "
                                            "products with a larger id (paging)"},
                  "category_id": {**ID, "description": "only this category"}},
           responses={200: ("A page of products", "ProductList")})
def list_products():
    tenant, who = current_tenant(), caller()
    limit, after = query("limit", 50), query("after", 0)
    category_id = query("category_id")
    products = sorted((p for p in _shelf_products()
                       if p.id > after and (category_id is None or p.category_id == category_id)),
                      key=lambda p: p.id)
    page = products[:limit]
    level = _level_of(who)
    items = storefront.shelf(tenant, level, page)
    return _json({"products": [present.product(tenant, item, level) for item in items],
                  "next_after": page[-1].id if len(products) > limit else None})


def _product_or_404(product_id: int):
    active = catalog.list_categories(active_only=True)
    try:
        return storefront.shelf_product(product_id, active)
    except DomainError:
        raise ApiError("not_found", "No such product.") from None


@shop_api.get("/products/<int:product_id>")
@operation("shop", "GET", "/products/{product_id}", "getProduct", "One product",
           tag="Products", auth="any", scope="catalog", path_params={"product_id": ID},
           responses={200: ("The product", "ProductEnvelope")})
def get_product(product_id: int):
    tenant, who = current_tenant(), caller()
    product = _product_or_404(product_id)
    level = _level_of(who)
    item = storefront.shelf(tenant, level, [product])[0]
    return _json({"product": present.product(tenant, item, level)})


# -- orders -------------------------------------------------------------------------------------

ORDER_BODY = openapi.obj({
    "product_id": ID,
    "quantity": {"type": "integer", "minimum": 1, "maximum": 10_000},
    "inputs": {"type": "object", "maxProperties": 10,
               "additionalProperties": text(200),
               "description": "answers to the product's input fields, by name"},
}, required=["product_id", "quantity"])


def _order_answer(order: Order, who: Caller, status: int = 200, **headers):
    delivered = None
    if who.kind == "customer" and order.customer_id == who.customer.id:
        delivered = present.delivered(orders.delivered_items(order)) \
            if order.status == "delivered" else []
    response = _json({"order": present.order(order, delivered)}, status)
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _replay(row, who: Caller):
    """The answer to a retried request: the same order, as it is now."""
    if not row.status_code:
        raise ApiError("idempotency_in_progress")
    order = db.session.get(Order, (row.response or {}).get("order_id"))
    if order is None:
        raise ApiError("not_found", "The order of this Idempotency-Key no longer exists.")
    return _order_answer(order, who, row.status_code, Idempotent_Replayed="true")


def _idempotency_key() -> str | None:
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise ApiError("validation_failed", fields={
            "Idempotency-Key": "1 to 100 printable ASCII characters, no spaces"})
    return value


def _checked_inputs(product, given: dict) -> dict:
    names = {spec["name"] for spec in product.fields}
    unknown = {f"inputs.{name}": "is not an input of this product"
               for name in given if name not in names}
    if unknown:
        raise ApiError("validation_failed", fields=unknown)
    return given


@shop_api.post("/orders")
@operation(
    "shop", "POST", "/orders", "createOrder", "Place an order, paid from the wallet",
    tag="Orders", auth="buyer", scope="orders", body=ORDER_BODY,
    headers={"Idempotency-Key": {"type": "string", "pattern": r"^[\x21-\x7e]{1,100}$",
                                 "description": "retry-safe: the same key with the same body "
                                                "answers the same order; with another body, "
                                                "409 idempotency_key_reused"}},
    description="Priced by the shop's one price function for the buyer's level, paid at once "
                "from the buyer's wallet, then delivered (the answer shows the status reached; "
                "poll GET /orders/{order_id} until `delivered`).",
    responses={201: ("The order (also on a retry with the same Idempotency-Key)",
                     "OrderEnvelope")})
def create_order():
    tenant, who, data = current_tenant(), caller(), body()
    idempotency = _idempotency_key()
    fingerprint = keys.request_fingerprint("POST", "/api/v1/orders", data)
    claim = None
    if idempotency is not None:
        try:
            earlier = keys.earlier_answer(who.key_id, idempotency, fingerprint)
            if earlier is not None:
                return _replay(earlier, who)
            claim = keys.claim_idempotency_key(who.key_id, idempotency, fingerprint)
        except keys.IdempotencyMismatch as error:
            raise ApiError("idempotency_key_reused", english(error)) from None
        except IntegrityError:  # the same key, at the same moment: the first one won
            db.session.rollback()
            earlier = keys.earlier_answer(who.key_id, idempotency, fingerprint)
            if earlier is None:
                raise ApiError("idempotency_in_progress") from None
            return _replay(earlier, who)
    try:
        product = _product_or_404(data["product_id"])
    except ApiError:
        raise ApiError("validation_failed", fields={"product_id": "no such product"}) from None
    inputs = _checked_inputs(product, data.get("inputs") or {})
    input_names = tuple(spec["name"] for spec in product.fields)
    try:
        placed = orders.checkout(tenant, orders.CheckoutRequest(
            product_id=product.id, qty=data["quantity"], email=who.customer.email,
            payment_method="balance", inputs=inputs, customer=who.customer,
            ip=request.remote_addr or ""))
        payments.pay_with_balance(tenant, placed.order, who.customer)
    except DomainError as error:
        db.session.rollback()
        if isinstance(error, orders.ShopWalletShort):
            error.tell_shop()
            db.session.commit()
            raise ApiError("conflict", english(error)) from None
        raise from_domain_error(error, input_names=input_names) from None
    order_id = placed.order.id
    if claim is not None:
        claim.status_code = 201
        claim.response = {"order_id": order_id}
    db.session.commit()
    after_payment(order_id)  # delivery: inline, or handed to the queue
    db.session.rollback()
    order = db.session.get(Order, order_id, populate_existing=True)
    return _order_answer(order, who, 201)


def _order_or_404(order_id: int, who: Caller) -> Order:
    order = db.session.get(Order, order_id)  # the shop is bound: another shop's is None
    if order is None or (who.kind == "customer" and order.customer_id != who.customer.id):
        raise ApiError("not_found", "No such order.")
    return order


@shop_api.get("/orders")
@operation("shop", "GET", "/orders", "listOrders", "List orders, newest first",
           tag="Orders", auth="any", scope="orders",
           description="A buyer key sees its buyer's orders; a staff key every order of the "
                       "shop (without delivered content).",
           query={"limit": LIMIT, "before": {**ID, "description": "orders with a smaller id "
                                             "(paging)"},
                  "status": {"type": "string", "enum": ORDER_STATUSES}},
           responses={200: ("A page of orders", "OrderList")})
def list_orders():
    who = caller()
    limit = query("limit", 50)
    select_orders = select(Order).order_by(Order.id.desc()).limit(limit + 1)
    if who.kind == "customer":
        select_orders = select_orders.where(Order.customer_id == who.customer.id)
    if query("before") is not None:
        select_orders = select_orders.where(Order.id < query("before"))
    if query("status"):
        select_orders = select_orders.where(Order.status == query("status"))
    rows = list(db.session.scalars(select_orders))
    page = rows[:limit]
    answers = []
    for row in page:
        delivered = None
        if who.kind == "customer":
            delivered = present.delivered(orders.delivered_items(row)) \
                if row.status == "delivered" else []
        answers.append(present.order(row, delivered))
    return _json({"orders": answers, "next_before": page[-1].id if len(rows) > limit else None})


@shop_api.get("/orders/<int:order_id>")
@operation("shop", "GET", "/orders/{order_id}", "getOrder", "One order",
           tag="Orders", auth="any", scope="orders", path_params={"order_id": ID},
           description="For the buyer who bought it, `delivered` holds the codes or content "
                       "once the order is delivered.",
           responses={200: ("The order", "OrderEnvelope")})
def get_order(order_id: int):
    who = caller()
    return _order_answer(_order_or_404(order_id, who), who)


@shop_api.get("/orders/<int:order_id>/delivery")
@operation("shop", "GET", "/orders/{order_id}/delivery", "getDelivery",
           "What an order delivered (codes, content)", tag="Orders", auth="buyer",
           scope="orders", path_params={"order_id": ID},
           description="Only the buyer who bought the order sees it; empty until delivered.",
           responses={200: ("The delivered content", "Delivery")})
def get_delivery(order_id: int):
    who = caller()
    order = _order_or_404(order_id, who)
    items = present.delivered(orders.delivered_items(order)) \
        if order.status == "delivered" else []
    return _json({"order_id": order.id, "status": order.status, "delivered": items})


# -- wallet ----------------------------------------------------------------------------------


def _wallet_of(who: Caller):
    """A buyer key: the buyer's wallet at the shop. A staff key with `manage`: the shop's
    wallet at the platform."""
    tenant = who.tenant
    if who.kind == "customer":
        return ledger.buyer_wallet(who.customer, tenant.currency), "buyer"
    if "manage" not in who.scopes:
        raise ApiError("insufficient_scope", "A staff key needs the 'manage' scope to read "
                                             "the shop's wallet.")
    return ledger.shop_wallet(tenant.id, tenant.currency), "shop"


@shop_api.get("/wallet")
@operation("shop", "GET", "/wallet", "getWallet", "Wallet balance", tag="Wallet", auth="any",
           description="A buyer key: the buyer's wallet at this shop (what orders are paid "
                       "from). A staff key with the manage scope: the shop's wallet at the "
                       "platform.",
           responses={200: ("The wallet", "Wallet")})
def get_wallet():
    account, owner = _wallet_of(caller())
    db.session.commit()  # the account may have just been created
    return _json(present.wallet(account, owner))


@shop_api.get("/wallet/transactions")
@operation("shop", "GET", "/wallet/transactions", "listWalletTransactions",
           "Wallet history, newest first", tag="Wallet", auth="any",
           query={"limit": LIMIT, "before": {**ID, "description": "entries with a smaller id "
                                             "(paging)"}},
           responses={200: ("A page of entries", "TransactionList")})
def list_transactions():
    account, _owner = _wallet_of(caller())
    limit = query("limit", 50)
    rows_query = (select(LedgerPosting, LedgerTransaction)
                  .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
                  .where(LedgerPosting.account_id == account.id)
                  .order_by(LedgerPosting.id.desc()).limit(limit + 1))
    if query("before") is not None:
        rows_query = rows_query.where(LedgerPosting.id < query("before"))
    rows = db.session.execute(rows_query).all()
    page = rows[:limit]
    db.session.commit()
    return _json({"transactions": [present.transaction(p, t) for p, t in page],
                  "next_before": page[-1][0].id if len(rows) > limit else None})


# -- webhooks ---------------------------------------------------------------------------------

EVENTS = {"type": "array", "minItems": 1, "maxItems": len(WEBHOOK_EVENT_NAMES),
          "uniqueItems": True, "items": {"type": "string", "enum": WEBHOOK_EVENT_NAMES}}
WEBHOOK_BODY = openapi.obj({"url": text(500, 1, description="https:// URL on a public "
                                                            "address"),
                            "events": EVENTS})
WEBHOOK_PATCH = openapi.obj({"url": text(500, 1), "events": EVENTS,
                             "active": {"type": "boolean"}}, required=[])


def _webhook_or_404(webhook_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, webhook_id)  # another shop's: None
    if endpoint is None:
        raise ApiError("not_found", "No such webhook.")
    return endpoint


def _webhook_error(error: DomainError) -> ApiError:
    db.session.rollback()
    return from_domain_error(error)


@shop_api.get("/webhooks")
@operation("shop", "GET", "/webhooks", "listWebhooks", "List webhook endpoints",
           tag="Webhooks", auth="staff", scope="manage",
           responses={200: ("The endpoints", "WebhookList")})
def list_webhooks():
    return _json({"webhooks": [present.webhook(e) for e in webhooks.list_endpoints()]})


@shop_api.post("/webhooks")
@operation("shop", "POST", "/webhooks", "createWebhook", "Add a webhook endpoint",
           tag="Webhooks", auth="staff", scope="manage", body=WEBHOOK_BODY,
           description="The answer holds the endpoint's signing secret, shown this once.",
           responses={201: ("The endpoint and its signing secret", "WebhookCreated")})
def create_webhook():
    tenant, data = current_tenant(), body()
    try:
        endpoint, secret = webhooks.create_endpoint(tenant.id, url=data["url"],
                                                    events=data["events"])
        record(api_actor(), "webhook.endpoint_created", tenant_id=tenant.id,
               target=endpoint.url, events=endpoint.events)
    except DomainError as error:
        raise _webhook_error(error) from None
    db.session.commit()
    return _json({"webhook": present.webhook(endpoint), "secret": secret}, 201)


@shop_api.get("/webhooks/<int:webhook_id>")
@operation("shop", "GET", "/webhooks/{webhook_id}", "getWebhook", "One webhook endpoint",
           tag="Webhooks", auth="staff", scope="manage", path_params={"webhook_id": ID},
           responses={200: ("The endpoint", "WebhookEnvelope")})
def get_webhook(webhook_id: int):
    return _json({"webhook": present.webhook(_webhook_or_404(webhook_id))})


@shop_api.patch("/webhooks/<int:webhook_id>")
@operation("shop", "PATCH", "/webhooks/{webhook_id}", "updateWebhook",
           "Change a webhook endpoint", tag="Webhooks", auth="staff", scope="manage",
           path_params={"webhook_id": ID}, body=WEBHOOK_PATCH,
           description="Any of url, events, active; fields left out keep their value.",
           responses={200: ("The endpoint", "WebhookEnvelope")})
def update_webhook(webhook_id: int):
    endpoint, data = _webhook_or_404(webhook_id), body()
    try:
        changed = webhooks.update_endpoint(
            endpoint, url=data.get("url", endpoint.url),
            events=data.get("events", endpoint.events),
            active=data.get("active", endpoint.active))
        if changed:
            record(api_actor(), "webhook.endpoint_changed", tenant_id=endpoint.tenant_id,
                   target=endpoint.url, fields=changed)
    except DomainError as error:
        raise _webhook_error(error) from None
    db.session.commit()
    return _json({"webhook": present.webhook(endpoint)})


@shop_api.delete("/webhooks/<int:webhook_id>")
@operation("shop", "DELETE", "/webhooks/{webhook_id}", "deleteWebhook",
           "Remove a webhook endpoint and its deliveries", tag="Webhooks", auth="staff",
           scope="manage", path_params={"webhook_id": ID},
           responses={204: ("Removed", None)})
def delete_webhook(webhook_id: int):
    endpoint = _webhook_or_404(webhook_id)
    url = endpoint.url
    webhooks.delete_endpoint(endpoint)
    record(api_actor(), "webhook.endpoint_deleted", tenant_id=current_tenant().id, target=url)
    db.session.commit()
    return "", 204
