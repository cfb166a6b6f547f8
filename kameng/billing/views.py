"""Views shared by the billing pages: the platform's notify URL for shops' wallet top-ups (on
the bare platform domain, for gateways told a notify URL per payment: EPay; see
kameng.billing.topups), and the downloadable invoice of both consoles."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_babel import get_locale

from ..extensions import csrf
from ..payments import registry
from . import topups
from .service import invoice_kind_label

bp = Blueprint("billing_notify", __name__)


@bp.route("/pay/platform/topup-notify/<gateway>", methods=["GET", "POST"])
@csrf.exempt
def topup_notify(gateway: str):
    registry.load_gateways()
    kind = registry.GATEWAYS.get(gateway)
    if kind is None:
        abort(404)
    if request.method == "GET":
        if not kind.notify_by_get:
            abort(405)
        body, form = b"", request.args
    else:
        body, form = request.get_data(cache=True), request.form
    return topups.receive_topup_notification(gateway, body=body, headers=request.headers,
                                             form=form)


def invoice_file(invoice, tenant):
    """The invoice as one self-contained HTML file to keep or print (style inside)."""
    lang = "en" if str(get_locale() or "").startswith("en") else "zh-CN"
    body = render_template("billing/invoice_document.html", invoice=invoice, tenant=tenant,
                           kind_label=invoice_kind_label, lang=lang)
    return body, 200, {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Disposition": f'attachment; filename="invoice-{invoice.number}.html"',
        "Cache-Control": "private, no-store",
    }
