"""Direct top-up (直充): a paid order line is bought from its product's upstream supplier.

`deliver_topup(order, line)` runs inside `deliver_order`'s transaction (the order is in
"delivering"). The supplier is the product's own (`Product.source`: a listing uses its supply
product's, i.e. the platform's supplier). The order is placed with the idempotency key
`kameng-line-<line id>` (a new suffix only after the supplier definitively refused it, so a
staff retry places a new order while a timed-out attempt is never bought twice), and every
answer goes into the order's timeline:

- success → "delivered", with the supplier's delivered text (or a short confirmation)
  encrypted on the line;
- pending → "awaiting"; `poll_line(line_id)` asks again later (a `poll_topup` job in queue
  mode, with backoff) until success, failure, or TOPUP_MAX_POLLS checks;
- failure (or HTTP 4xx) → DeliveryProblem: the order fails for staff with the message;
- no usable answer (timeout, 5xx, redirect, not JSON, unknown status) → the attempt is recorded
  in its own short transaction and UpstreamRetry is raised so the delivery job retries with
  backoff; the attempt that reaches TOPUP_MAX_ATTEMPTS fails the order instead;
- an address inside the network (UnsafeURL) is never called and never retried.

The line keeps the supplier's reference (`upstream_ref`), its last answer (`upstream_status`:
success, pending, failure, error, refused) and `upstream_attempts`: the calls made in the
current step — placing attempts, then (once the supplier has taken the order) status checks.

Settings (app config, read here with defaults): TOPUP_MAX_ATTEMPTS (5), TOPUP_MAX_POLLS (20),
TOPUP_POLL_DELAY (5 s, doubled per check), TOPUP_POLL_MAX_DELAY (300 s), TOPUP_TIMEOUT (10 s,
per call, in adapters).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from ..catalog.models import Product, ProductDetails, SupplyProduct
from ..extensions import db
from ..merchant.models import ShopNotice
from ..orders import events
from ..orders.models import Order, OrderEvent, OrderLine
from ..orders.states import note, transition
from ..rows import row_by_id
from ..security.crypto import keyring
from ..security.http import UnsafeURL
from ..tenants.scoping import platform_scope, tenant_scope
from .adapters import TopupLine, UpstreamResult, UpstreamRetry, adapter_for
from .models import Supplier
from .service import DeliveryProblem, _capture_supply_cost, fail_delivery
from .suppliers import supplier_credentials

log = logging.getLogger(__name__)

KEY_PREFIX = "kameng-line-"
STALL_GRACE = 120  # seconds past the longest poll delay before a poll counts as lost


def _setting(name: str, default: int) -> int:
    return int(current_app.config.get(name, default))


def max_attempts() -> int:
    return max(1, _setting("TOPUP_MAX_ATTEMPTS", 5))


def max_polls() -> int:
    return max(1, _setting("TOPUP_MAX_POLLS", 20))


def poll_delay(checks_done: int) -> int:
    """Seconds before the next status check: doubling from TOPUP_POLL_DELAY, capped."""
    cap = _setting("TOPUP_POLL_MAX_DELAY", 300)
    return min(cap, _setting("TOPUP_POLL_DELAY", 5) * 2 ** min(checks_done, 16))


# -- what to buy, from whom ---------------------------------------------------------------------


def _source_of(line: OrderLine) -> ProductDetails | None:
    product = row_by_id(Product, line.product_id) if line.product_id else None
    if product is not None:
        return product.source
    if line.supply_product_id:  # the listing was removed; its supply product still says
        return db.session.get(SupplyProduct, line.supply_product_id)
    return None


def _supplier_of(line: OrderLine) -> tuple[Supplier | None, str, str]:
    """(supplier, product code at the supplier, why it cannot be bought — "" when it can)."""
    source = _source_of(line)
    if source is None:
        return None, "", f"'{line.title}' no longer exists"
    whose = "the platform has" if isinstance(source, SupplyProduct) else "you have"
    supplier = db.session.get(Supplier, source.supplier_id) if source.supplier_id else None
    if supplier is None:
        return None, "", f"{whose} set no upstream supplier for '{line.title}'"
    owner = None if isinstance(source, SupplyProduct) else line.tenant_id
    if supplier.tenant_id != owner:  # never another owner's supplier, whatever the row says
        return None, "", f"the supplier of '{line.title}' does not belong to its owner"
    if not supplier.active:
        return None, "", f"the upstream supplier of '{line.title}' is switched off"
    if not source.supplier_product:
        return None, "", f"{whose} set no upstream product code for '{line.title}'"
    return supplier, source.supplier_product, ""


def _who(supplier: Supplier) -> str:
    """The supplier as the shop's timeline names it (the platform's stay unnamed)."""
    return "the platform's supplier" if supplier.tenant_id is None \
        else f"supplier '{supplier.name}'"


def _upstream_history(order_id: int) -> list[dict]:
    """What the timeline recorded of earlier supplier calls for this order, oldest first."""
    rows = db.session.scalars(select(OrderEvent.data).where(OrderEvent.order_id == order_id)
                              .order_by(OrderEvent.id))
    return [data["upstream"] for data in rows if isinstance(data, dict)
            and isinstance(data.get("upstream"), dict)]


def idempotency_key(line_id: int, history: list[dict]) -> str:
    """`kameng-line-<id>`, with `-<n>` once the supplier definitively refused n-1 orders."""
    refused = sum(1 for call in history if call.get("status") == "failure")
    return f"{KEY_PREFIX}{line_id}" + (f"-{refused + 1}" if refused else "")


def _confirmation(line: OrderLine, reference: str) -> str:
    account = ", ".join(str(v) for v in (line.buyer_input or {}).values()) or line.title
    return f"Topped up {account}" + (f" (supplier reference {reference})" if reference else "")


def _answer(result: UpstreamResult) -> str:
    text = result.status
    if result.reference:
        text += f", reference {result.reference}"
    if result.message:
        text += f": {result.message}"
    return text


def _call_data(supplier: Supplier, call: str, key: str, attempt: int, *, status: str,
               reference: str = "", http_status: int | None = None) -> dict:
    return {"upstream": {"supplier_id": supplier.id, "call": call, "key": key,
                         "attempt": attempt, "status": status, "reference": reference,
                         "http_status": http_status}}


def _record_failed_call(order_id: int, line_id: int, *, status: str, attempts: int, text: str,
                        data: dict, reference: str = "") -> None:
    """Keep a call that did not deliver, in its own transaction: the delivery's is rolled
    back (it raises next), but the count and the supplier's answer must stay."""
    db.session.rollback()
    line = db.session.get(OrderLine, line_id)
    line.upstream_status, line.upstream_attempts = status, attempts
    if reference:
        line.upstream_ref = reference[:128]
    note(db.session.get(Order, order_id), text, data=data)
    db.session.commit()


def _schedule_poll(line_id: int, delay: int) -> None:
    """A status check later (queue mode; inline, whoever runs the delivery polls)."""
    if current_app.config.get("DELIVERY_MODE") != "queue":
        return
    try:
        from ..workers.queues import enqueue

        enqueue("poll_topup", line_id, delay=delay)
    except Exception:  # Redis away: the reconciler finds lines whose poll was lost
        log.exception("top-up line %s: next status check not scheduled", line_id)


def _wait_for_staff(order: Order, reason: str) -> str:
    note(order, f"The top-up waits for staff: {reason}.",
         data={"upstream": {"call": "none", "status": "unconfigured"}})
    db.session.add(ShopNotice(tenant_id=order.tenant_id, kind="fulfil",
                              message=f"Order {order.number} is paid and waits for you: {reason}."))
    events.order_awaiting(order)
    return "awaiting"


# -- placing the order --------------------------------------------------------------------------


def deliver_topup(order: Order, line: OrderLine) -> str:
    """Buy `line` from its supplier: "delivered", "awaiting" (supplier pending, or nothing to
    buy from — staff then fulfil it), DeliveryProblem (refused), or UpstreamRetry (try later)."""
    supplier, product_code, missing = _supplier_of(line)
    if supplier is None:
        return _wait_for_staff(order, missing)
    limit = max_attempts()
    # Only an attempt that got no usable answer continues a count; anything else (a new line,
    # a staff retry after a refusal or after the last attempt) starts again at 1.
    continuing = line.upstream_status == "error" and line.upstream_attempts < limit
    attempt = line.upstream_attempts + 1 if continuing else 1
    key = idempotency_key(line.id, _upstream_history(order.id))
    request = TopupLine(line_id=line.id, order_number=order.number, product=product_code,
                        qty=line.qty, inputs=dict(line.buyer_input or {}))
    who, order_id, line_id = _who(supplier), order.id, line.id
    try:
        result = adapter_for(supplier.adapter).place(
            supplier, supplier_credentials(supplier), request, key)
    except UnsafeURL as refused:
        reason = f"{who} was not called: {refused.message}"
        _record_failed_call(order_id, line_id, status="refused", attempts=attempt, text=reason,
                            data=_call_data(supplier, "place", key, attempt, status="refused"))
        raise DeliveryProblem(reason) from None
    except UpstreamRetry as error:
        problem, http_status = error.message, error.http_status
    except Exception as error:  # a bug or a broken credential: counted like a failed call
        log.exception("top-up line %s: placing the order failed", line_id)
        problem, http_status = f"unexpected error ({type(error).__name__})", None
    else:
        return _placed(order, line, supplier, key, attempt, result)
    _record_failed_call(
        order_id, line_id, status="error", attempts=attempt,
        text=f"Sent to {who} (attempt {attempt} of {limit}): no usable answer — {problem}",
        data=_call_data(supplier, "place", key, attempt, status="error",
                        http_status=http_status))
    if attempt >= limit:
        raise DeliveryProblem(f"{who} gave no usable answer in {attempt} attempts "
                              f"(last: {problem})")
    raise UpstreamRetry(f"top-up line {line_id}, attempt {attempt} of {limit}: {problem}",
                        http_status=http_status)


def _placed(order: Order, line: OrderLine, supplier: Supplier, key: str, attempt: int,
            result: UpstreamResult) -> str:
    who = _who(supplier)
    data = _call_data(supplier, "place", key, attempt, status=result.status,
                      reference=result.reference, http_status=result.http_status)
    text = f"Sent to {who} (key {key}): {_answer(result)}"
    if result.status == "failure":
        _record_failed_call(order.id, line.id, status="failure", attempts=attempt, text=text,
                            data=data, reference=result.reference)
        raise DeliveryProblem(f"{who} refused it: {result.message or 'no reason given'}")
    line.upstream_ref = result.reference[:128]
    line.upstream_status = result.status
    note(order, text, data=data)
    if result.status == "success":
        line.upstream_attempts = attempt
        line.content = keyring().encrypt(
            result.content.strip() or _confirmation(line, result.reference))
        return "delivered"
    line.upstream_attempts = 0  # from now on: status checks
    _schedule_poll(line.id, poll_delay(0))
    return "awaiting"


# -- checking on a pending order ----------------------------------------------------------------


def poll_line(line_id: int) -> str:
    """Ask the supplier about a pending top-up; returns the order's status afterwards.

    Idempotent: an order no longer awaiting its supplier (delivered, failed, fulfilled by hand,
    refunded) is left alone. No transaction is held while the supplier answers; the answer is
    applied with compare-and-set, so two checks at once deliver once.
    """
    with platform_scope():
        row = db.session.execute(select(OrderLine.tenant_id, OrderLine.order_id)
                                 .where(OrderLine.id == line_id)).first()
    if row is None:
        db.session.rollback()
        return "missing"
    tenant_id, order_id = row
    with tenant_scope(tenant_id):
        # Never trust what this session may have loaded before (no expiry on commit).
        order = db.session.get(Order, order_id, populate_existing=True)
        line = db.session.get(OrderLine, line_id, populate_existing=True)
        if (order.status != "awaiting" or line.delivery_kind != "topup"
                or line.upstream_status != "pending"):
            status = order.status
            db.session.rollback()
            return status
        history = _upstream_history(order_id)
        placed = next((call for call in reversed(history)
                       if call.get("call") == "place" and call.get("status") == "pending"), {})
        supplier = row_by_id(Supplier, placed["supplier_id"]) if placed.get("supplier_id") \
            else _supplier_of(line)[0]
        if supplier is None:
            db.session.rollback()
            return fail_delivery(order_id, "its supplier was deleted before the top-up finished")
        key = placed.get("key") or idempotency_key(line_id, history)
        reference, check = line.upstream_ref, line.upstream_attempts + 1
        credentials = supplier_credentials(supplier)
        adapter = adapter_for(supplier.adapter)
        db.session.expunge(supplier)  # read while no transaction is open
        db.session.rollback()
        result, problem, http_status = None, "", None
        try:
            result = adapter.check(supplier, credentials, reference, key)
        except UnsafeURL as refused:
            return _check_refused(order_id, line_id, supplier, key, check, refused.message)
        except UpstreamRetry as error:
            problem, http_status = error.message, error.http_status
        except Exception as error:
            log.exception("top-up line %s: status check failed", line_id)
            problem = f"unexpected error ({type(error).__name__})"
        return _apply_check(order_id, line_id, supplier, key, check, result, problem,
                            http_status)


def _locked_awaiting(order_id: int, line_id: int) -> tuple[Order, OrderLine] | None:
    order = db.session.scalar(select(Order).where(Order.id == order_id).with_for_update()
                              .execution_options(populate_existing=True))
    line = db.session.get(OrderLine, line_id, populate_existing=True)
    if order.status != "awaiting" or line.upstream_status != "pending":
        return None  # someone else settled it meanwhile
    return order, line


def _check_refused(order_id: int, line_id: int, supplier: Supplier, key: str, check: int,
                   message: str) -> str:
    reason = f"{_who(supplier)} was not called: {message}"
    locked = _locked_awaiting(order_id, line_id)
    if locked is None:
        db.session.rollback()
        return db.session.get(Order, order_id).status
    order, line = locked
    line.upstream_status, line.upstream_attempts = "refused", check
    note(order, reason, data=_call_data(supplier, "check", key, check, status="refused"))
    db.session.commit()
    return fail_delivery(order_id, reason)


def _apply_check(order_id: int, line_id: int, supplier: Supplier, key: str, check: int,
                 result: UpstreamResult | None, problem: str, http_status: int | None) -> str:
    who = _who(supplier)
    locked = _locked_awaiting(order_id, line_id)
    if locked is None:
        status = db.session.get(Order, order_id).status
        db.session.rollback()
        return status
    order, line = locked
    line.upstream_attempts = check
    if result is None:
        limit = max_polls()
        note(order, f"Checked with {who} (check {check} of {limit}): no usable answer — "
                    f"{problem}",
             data=_call_data(supplier, "check", key, check, status="error",
                             http_status=http_status))
        return _pending_again(order_id, line_id, check, f"last: {problem}")
    data = _call_data(supplier, "check", key, check, status=result.status,
                      reference=result.reference or line.upstream_ref,
                      http_status=result.http_status)
    note(order, f"Checked with {who}: {_answer(result)}", data=data)
    if result.reference:
        line.upstream_ref = result.reference[:128]
    if result.status == "success":
        line.upstream_status = "success"
        line.content = keyring().encrypt(
            result.content.strip() or _confirmation(line, line.upstream_ref))
        if not transition(order, "delivered", from_status="awaiting"):
            db.session.rollback()
            return db.session.get(Order, order_id).status
        _capture_supply_cost(order)
        events.order_delivered(order)
        db.session.commit()
        return "delivered"
    if result.status == "failure":
        line.upstream_status = "failure"
        db.session.commit()
        return fail_delivery(order_id, f"{who} reports the top-up failed: "
                                       f"{result.message or 'no reason given'}")
    return _pending_again(order_id, line_id, check, f"last answer: {_answer(result)}")


def _pending_again(order_id: int, line_id: int, check: int, last: str) -> str:
    """Still not done: check again later, or give up for staff after TOPUP_MAX_POLLS."""
    db.session.commit()
    if check >= max_polls():
        return fail_delivery(order_id, f"the supplier had not finished after {check} status "
                                       f"checks ({last})")
    _schedule_poll(line_id, poll_delay(check))
    return "awaiting"


def stalled_lines(limit: int = 500) -> list[int]:
    """Top-up lines waiting on their supplier whose next check seems lost (the poll job
    vanished with Redis, say): nothing in their order's timeline for longer than the longest
    poll delay plus a grace period. The reconciler enqueues `poll_topup` for each."""
    cutoff = datetime.now(UTC) - timedelta(
        seconds=_setting("TOPUP_POLL_MAX_DELAY", 300) + STALL_GRACE)
    last_event = (select(func.max(OrderEvent.created_at))
                  .where(OrderEvent.order_id == Order.id).scalar_subquery())
    with platform_scope():
        ids = list(db.session.scalars(
            select(OrderLine.id).join(Order, Order.id == OrderLine.order_id)
            .where(Order.status == "awaiting", OrderLine.delivery_kind == "topup",
                   OrderLine.upstream_status == "pending", last_event < cutoff)
            .order_by(OrderLine.id).limit(limit)))
    db.session.rollback()
    return ids
