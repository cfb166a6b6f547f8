"""The mail pages of both consoles: a shop's own mails (and whether its delivery mail carries the
codes), and every mail of the platform for its staff.

Without MAIL_SERVER mails are kept here rather than sent (status "kept"): this is where they are
read in development. A mail body can hold what a buyer bought (when the shop puts the codes in
its delivery mail), so in the shop console only the owner sees bodies; other staff see headers.

Registered by create_app() (kameng/__init__.py, _register_blueprints): `shop_mail` under /admin
on shop hosts, `platform_mail` under /mail on the admin host.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from wtforms import BooleanField

from ..audit.service import record
from ..errors import DomainError
from ..extensions import db
from ..forms import Form
from ..merchant.console import console_blueprint, guard_blueprint, staff_actor
from ..rows import row_by_id
from ..superadmin.console import platform_blueprint
from ..tenants import service as tenants
from ..tenants.hosts import current_tenant
from ..tenants.models import Tenant
from .models import MailMessage

bp = console_blueprint("shop_mail", __name__)
guard_blueprint(bp, read="mail.view", write="mail.manage")
platform_bp = platform_blueprint("platform_mail", __name__)

PAGE_SIZE = 50
MOST_SHOWN = 1000


class MailSettingsForm(Form):
    mail_codes = BooleanField(_l("Put the codes in the delivery mail"))


def _shown() -> int:
    return min(max(request.args.get("shown", PAGE_SIZE, type=int), PAGE_SIZE), MOST_SHOWN)


def _newest(query, shown: int, *, of_one_shop: bool) -> tuple[list[MailMessage], bool]:
    """The newest `shown` messages of a query, and whether there are more to show. One shop's
    follow its (tenant_id, created_at) index; all of them, the primary key."""
    order = ((MailMessage.created_at.desc(), MailMessage.id.desc()) if of_one_shop
             else (MailMessage.id.desc(),))
    found = list(db.session.scalars(query.order_by(*order).limit(shown + 1)))
    return found[:shown], len(found) > shown and shown < MOST_SHOWN


# -- the shop console: /admin/mail --------------------------------------------------------------


def _shop_list_page(form: MailSettingsForm | None = None, status: int = 200):
    shop = current_tenant()
    shown = _shown()
    messages, more = _newest(select(MailMessage).where(MailMessage.tenant_id == shop.id), shown,
                             of_one_shop=True)
    if form is None:
        form = MailSettingsForm(formdata=None, data={
            "mail_codes": bool((shop.settings or {}).get("mail_codes"))})
    return render_template("mail/shop_list.html", messages=messages, more=more, shown=shown,
                           next_shown=min(shown + PAGE_SIZE, MOST_SHOWN), form=form), status


@bp.route("/mail", methods=["GET", "POST"])
def message_list():
    """The shop's own mails, newest first; a POST saves whether delivery mails carry codes."""
    if request.method == "GET":
        return _shop_list_page()
    form = MailSettingsForm()
    if not form.validate_on_submit():
        return _shop_list_page(form, 422)
    shop = db.session.get(Tenant, current_tenant().id)
    # A new dict: SQLAlchemy notices a JSON column change only when it is assigned.
    shop.settings = {**(shop.settings or {}), "mail_codes": form.mail_codes.data}
    record(staff_actor(), "mail.codes_in_mail_changed", tenant_id=shop.id,
           mail_codes=form.mail_codes.data)
    db.session.commit()
    flash(_("Delivery mails now carry the codes.") if form.mail_codes.data
          else _("Delivery mails now carry the order link only, not the codes."))
    return redirect(url_for(".message_list"))


@bp.get("/mail/<int:message_id>")
def message_detail(message_id: int):
    """One mail; its body for the owner only (it may hold the codes a buyer bought)."""
    message = row_by_id(MailMessage, message_id)
    if message is None or message.tenant_id != current_tenant().id:
        abort(404)  # mails are not tenant-scoped rows: the shop is checked here
    return render_template("mail/shop_detail.html", message=message,
                           show_body=current_user.is_owner)


# -- the super-admin console: /mail -------------------------------------------------------------


@platform_bp.get("/", endpoint="message_list")
def platform_message_list():
    """Every mail, newest first, or one shop's (?shop=<address>)."""
    slug = request.args.get("shop", "").strip()[:64]
    query = select(MailMessage)
    if slug:
        try:
            query = query.where(MailMessage.tenant_id == tenants.get_tenant(slug).id)
        except DomainError as error:
            flash(error.message, "error")
            return redirect(url_for(".message_list"))
    shown = _shown()
    messages, more = _newest(query, shown, of_one_shop=bool(slug))
    ids = {m.tenant_id for m in messages if m.tenant_id is not None}
    slugs = dict(db.session.execute(select(Tenant.id, Tenant.slug).where(Tenant.id.in_(ids))).all()
                 ) if ids else {}
    return render_template("mail/platform_list.html", messages=messages, slugs=slugs, slug=slug,
                           more=more, shown=shown, next_shown=min(shown + PAGE_SIZE, MOST_SHOWN))


@platform_bp.get("/<int:message_id>", endpoint="message_detail")
def platform_message_detail(message_id: int):
    message = row_by_id(MailMessage, message_id)
    if message is None:
        abort(404)
    shop = db.session.get(Tenant, message.tenant_id) if message.tenant_id else None
    return render_template("mail/platform_detail.html", message=message, tenant=shop)
