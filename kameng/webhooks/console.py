"""The shop console's webhook pages: endpoints (URL, events, on/off), their signing secrets
(shown once, when created or rotated), and every delivery with what the receiver answered.

Registered by create_app() under /admin on shop hosts (kameng/__init__.py, _register_blueprints).
A secret is never shown again after the page that created it: it is stored encrypted, and the
pages that show it are not cached. How receivers verify a delivery: kameng/webhooks/service.py.
"""

from __future__ import annotations

import json

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, SelectChoice, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from ..audit.service import record
from ..extensions import db
from ..forms import EmptyForm, Form, committing
from ..merchant.console import console_blueprint, guard_blueprint, staff_actor
from ..rows import row_by_id
from ..tenants.hosts import current_tenant
from . import service as webhooks
from .models import WEBHOOK_EVENTS, WebhookDelivery, WebhookEndpoint

bp = console_blueprint("shop_webhooks", __name__)
guard_blueprint(bp, read="webhooks.manage", write="webhooks.manage")

DELIVERIES_SHOWN = 50


class EventsField(SelectMultipleField):
    """The events as a list of checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class EndpointForm(Form):
    url = StringField(_l("URL"), validators=[DataRequired(), Length(max=500)])
    events = EventsField(_l("Events"), choices=[SelectChoice(event, label)
                                            for event, label in WEBHOOK_EVENTS.items()])


class EndpointEditForm(EndpointForm):
    active = BooleanField(_l("On: send events to this URL"))


@bp.context_processor
def webhook_helpers() -> dict:
    return {"webhook_events": WEBHOOK_EVENTS, "max_attempts": webhooks.max_attempts(),
            "signature_header": webhooks.SIGNATURE_HEADER,
            "delivery_header": webhooks.DELIVERY_HEADER, "event_header": webhooks.EVENT_HEADER}


def _endpoint_or_404(endpoint_id: int) -> WebhookEndpoint:
    endpoint = row_by_id(WebhookEndpoint, endpoint_id)  # the shop is bound: others' are None
    if endpoint is None:
        abort(404)
    return endpoint


def _delivery_or_404(delivery_id: int) -> WebhookDelivery:
    delivery = row_by_id(WebhookDelivery, delivery_id)
    if delivery is None:
        abort(404)
    return delivery


def _confirm_button() -> None:
    """A plain POST button: CSRFProtect has checked the token; this keeps the habit explicit."""
    if not EmptyForm().validate_on_submit():
        abort(400)


def _secret_page(endpoint: WebhookEndpoint, secret: str, *, created: bool):
    """The one page that shows a signing secret; not cached anywhere."""
    response = make_response(render_template("webhooks/secret.html", endpoint=endpoint,
                                             secret=secret, created=created))
    response.headers["Cache-Control"] = "no-store"
    return response


# -- endpoints ---------------------------------------------------------------------------------


def _list_page(form: EndpointForm | None = None, status: int = 200):
    return render_template("webhooks/list.html", endpoints=webhooks.list_endpoints(),
                           form=form or EndpointForm(formdata=None)), status


@bp.route("/webhooks", methods=["GET", "POST"])
def endpoint_list():
    """The shop's endpoints; a POST adds one and shows its secret once."""
    if request.method == "GET":
        return _list_page()
    form = EndpointForm()
    if not form.validate_on_submit():
        return _list_page(form, 422)
    shop = current_tenant()
    with committing(form) as attempt:
        endpoint, secret = webhooks.create_endpoint(shop.id, url=form.url.data,
                                                    events=form.events.data)
        record(staff_actor(), "webhook.endpoint_created", tenant_id=shop.id,
               target=endpoint.url, events=endpoint.events)
    if attempt.failed:
        return _list_page(form, 422)
    return _secret_page(endpoint, secret, created=True)


def _detail_page(endpoint: WebhookEndpoint, form: EndpointEditForm | None = None,
                 status: int = 200):
    if form is None:
        form = EndpointEditForm(formdata=None, data={
            "url": endpoint.url, "events": endpoint.events, "active": endpoint.active})
    return render_template(
        "webhooks/detail.html", endpoint=endpoint, form=form,
        deliveries=webhooks.recent_deliveries(endpoint, DELIVERIES_SHOWN),
        shown=DELIVERIES_SHOWN, action=EmptyForm(formdata=None),
    ), status


@bp.route("/webhooks/<int:endpoint_id>", methods=["GET", "POST"])
def endpoint_detail(endpoint_id: int):
    """One endpoint and its recent deliveries; a POST saves its URL, events and on/off."""
    endpoint = _endpoint_or_404(endpoint_id)
    if request.method == "GET":
        return _detail_page(endpoint)
    form = EndpointEditForm()
    if not form.validate_on_submit():
        return _detail_page(endpoint, form, 422)
    with committing(form) as attempt:
        changed = webhooks.update_endpoint(endpoint, url=form.url.data, events=form.events.data,
                                           active=form.active.data)
        if changed:
            record(staff_actor(), "webhook.endpoint_changed", tenant_id=endpoint.tenant_id,
                   target=endpoint.url, fields=changed, events=endpoint.events,
                   active=endpoint.active)
    if attempt.failed:
        return _detail_page(_endpoint_or_404(endpoint_id), form, 422)
    flash(_("Webhook endpoint saved.") if changed else _("Nothing changed."))
    return redirect(url_for(".endpoint_detail", endpoint_id=endpoint.id))


@bp.post("/webhooks/<int:endpoint_id>/rotate")
def endpoint_rotate(endpoint_id: int):
    """A new signing secret, shown once; the old one stops working at once."""
    endpoint = _endpoint_or_404(endpoint_id)
    _confirm_button()
    secret = webhooks.rotate_secret(endpoint)
    record(staff_actor(), "webhook.secret_rotated", tenant_id=endpoint.tenant_id,
           target=endpoint.url)
    db.session.commit()
    return _secret_page(endpoint, secret, created=False)


@bp.post("/webhooks/<int:endpoint_id>/delete")
def endpoint_delete(endpoint_id: int):
    endpoint = _endpoint_or_404(endpoint_id)
    _confirm_button()
    url = endpoint.url
    webhooks.delete_endpoint(endpoint)
    record(staff_actor(), "webhook.endpoint_deleted", tenant_id=current_tenant().id, target=url)
    db.session.commit()
    flash(_("Webhook endpoint %(url)s deleted, with its deliveries.", url=url))
    return redirect(url_for(".endpoint_list"))


def _flash_outcome(delivery_pk: int, what: str) -> None:
    """After the deliveries were handed on: say where the delivery stands."""
    db.session.rollback()
    delivery = db.session.get(WebhookDelivery, delivery_pk, populate_existing=True)
    if delivery is None or (delivery.status == "pending" and not delivery.attempts):
        flash(_("%(what)s queued; it is sent within a few seconds.", what=what))
    elif delivery.status == "delivered":
        flash(_("%(what)s delivered (HTTP %(response_status)s).",
                what=what, response_status=delivery.response_status))
    else:
        answer = (f"HTTP {delivery.response_status}" if delivery.response_status
                  else delivery.response_body[:200])
        if delivery.status == "pending":
            flash(_("%(what)s was not accepted: %(answer)s. It is retried with backoff.",
                    what=what, answer=answer), "error")
        else:
            flash(_("%(what)s was not accepted: %(answer)s.", what=what, answer=answer), "error")


@bp.post("/webhooks/<int:endpoint_id>/test")
def endpoint_test(endpoint_id: int):
    """Send a made-up paid order to this endpoint now."""
    endpoint = _endpoint_or_404(endpoint_id)
    _confirm_button()
    with committing() as attempt:
        delivery = webhooks.send_test(endpoint, current_tenant().currency)
        record(staff_actor(), "webhook.test_sent", tenant_id=endpoint.tenant_id,
               target=endpoint.url, delivery=delivery.delivery_id)
    if attempt.failed:
        return redirect(url_for(".endpoint_detail", endpoint_id=endpoint_id))
    webhooks.send_queued()
    _flash_outcome(delivery.id, _("The test event"))
    return redirect(url_for(".endpoint_detail", endpoint_id=endpoint_id))


# -- deliveries --------------------------------------------------------------------------------


@bp.get("/webhooks/deliveries/<int:delivery_id>")
def delivery_detail(delivery_id: int):
    """One delivery: the body sent, and what the receiver answered last."""
    delivery = _delivery_or_404(delivery_id)
    endpoint = _endpoint_or_404(delivery.endpoint_id)
    return render_template("webhooks/delivery.html", delivery=delivery, endpoint=endpoint,
                           body=json.dumps(delivery.payload, indent=2, ensure_ascii=False),
                           action=EmptyForm(formdata=None))


@bp.post("/webhooks/deliveries/<int:delivery_id>/resend")
def delivery_resend(delivery_id: int):
    """Send a delivery again: the same delivery id (receivers can tell a repeat), a fresh round
    of attempts."""
    delivery = _delivery_or_404(delivery_id)
    _confirm_button()
    back = (url_for(".delivery_detail", delivery_id=delivery.id)
            if request.form.get("back") == "delivery"
            else url_for(".endpoint_detail", endpoint_id=delivery.endpoint_id))
    if delivery.status == "pending" and not delivery.attempts:
        flash(_("This delivery is being sent already."), "error")
        return redirect(back)
    endpoint = _endpoint_or_404(delivery.endpoint_id)
    if not endpoint.active:
        flash(_("Turn the endpoint on to re-send its deliveries."), "error")
        return redirect(back)
    record(staff_actor(), "webhook.resent", tenant_id=delivery.tenant_id, target=endpoint.url,
           delivery=delivery.delivery_id, previous_status=delivery.status,
           previous_attempts=delivery.attempts)
    webhooks.resend(delivery)
    db.session.commit()
    webhooks.send_queued()
    _flash_outcome(delivery.id, _("Delivery %(id)s", id=delivery.delivery_id))
    return redirect(back)
