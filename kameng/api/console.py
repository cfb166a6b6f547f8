"""Console pages of the API: a shop's API keys (/admin/api-keys: keys of staff members and of
agent buyers — created with their scopes, shown once, revoked, last use) and its upstream
Kameng shops (/admin/upstream: browse, import, sync now); the platform's super-admin keys
(/api-keys on the admin host).

Only a shop's owner and managers manage keys and imports. A secret is shown on the page that
created it and never again (the page is not cached)."""

from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import SelectChoice, SelectField, SelectMultipleField, StringField
from wtforms.validators import Length
from wtforms.widgets import CheckboxInput, ListWidget

from ..audit.service import record
from ..errors import DomainError
from ..extensions import db
from ..forms import EmptyForm, Form, committing
from ..merchant.console import console_blueprint, staff_actor
from ..merchant.models import StaffUser
from ..superadmin.console import platform_actor, platform_blueprint
from ..tenants.hosts import current_tenant
from . import service as keys
from . import upstream
from .models import ApiKey

shop_bp = console_blueprint("shop_api", __name__)
platform_bp = platform_blueprint("platform_api_keys", __name__)

MANAGERS = ("owner", "manager")


class ScopesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _scope_choices(scopes: dict[str, str]) -> list[SelectChoice]:
    return [SelectChoice(name, _l("%(scope)s: %(what)s", scope=name, what=what))
            for name, what in scopes.items()]


class StaffKeyForm(Form):
    owner = SelectField(_l("Staff member"), coerce=int, validate_choice=False)
    name = StringField(_l("Name (what uses it)"), validators=[Length(max=80)])
    scopes = ScopesField(_l("Scopes"), choices=_scope_choices(keys.STAFF_SCOPES))


class BuyerKeyForm(Form):
    owner = SelectField(_l("Agent buyer"), coerce=int, validate_choice=False)
    name = StringField(_l("Name (what uses it)"), validators=[Length(max=80)])
    scopes = ScopesField(_l("Scopes"), choices=_scope_choices(keys.BUYER_SCOPES))


class PlatformKeyForm(Form):
    name = StringField(_l("Name (what uses it)"), validators=[Length(max=80)])


@shop_bp.before_request
def _managers_only():
    if current_user.is_authenticated and getattr(current_user, "role", "") not in MANAGERS:
        abort(403)


def _confirm_button() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)


def _secret_page(template: str, key: ApiKey, secret: str, **context):
    response = make_response(render_template(template, key=key, secret=secret, **context))
    response.headers["Cache-Control"] = "no-store"
    return response


# -- a shop's keys ----------------------------------------------------------------------------


def _staff_choices() -> list[SelectChoice]:
    from sqlalchemy import select

    return [SelectChoice(s.id, f"{s.email} ({s.role})") for s in db.session.scalars(
        select(StaffUser).where(StaffUser.active.is_(True)).order_by(StaffUser.email))]


def _keys_page(staff_form=None, buyer_form=None, status: int = 200):
    shop = current_tenant()
    staff_form = staff_form or StaffKeyForm(formdata=None, data={"scopes": ["catalog"]})
    buyer_form = buyer_form or BuyerKeyForm(formdata=None,
                                            data={"scopes": ["catalog", "orders"]})
    staff_form.owner.choices = _staff_choices()
    agents = keys.agent_customers()
    buyer_form.owner.choices = [SelectChoice(c.id, c.email) for c in agents]
    rows = keys.list_keys(shop.id)
    return render_template(
        "api/keys.html", keys=rows, owners=keys.owner_labels(rows), staff_form=staff_form,
        buyer_form=buyer_form, action=EmptyForm(formdata=None),
        agent_level=keys.agent_level(), agent_name=keys.AGENT_LEVEL_NAME,
        staff_scopes=keys.STAFF_SCOPES, buyer_scopes=keys.BUYER_SCOPES), status


@shop_bp.get("/api-keys")
def key_list():
    return _keys_page()


def _create(form, create, kind: str):
    shop = current_tenant()
    forms = {"staff": (form, None), "customer": (None, form)}[kind]
    if not form.validate_on_submit():
        return _keys_page(*forms, status=422)
    with committing(form) as attempt:
        new = create(shop.id, form.owner.data, scopes=form.scopes.data, name=form.name.data)
        record(staff_actor(), "api_key.created", tenant_id=shop.id, target=new.key.key_id,
               owner_kind=kind, owner_id=new.key.owner_id, scopes=new.key.scopes)
    if attempt.failed:
        return _keys_page(*forms, status=422)
    return _secret_page("api/key_created.html", new.key, new.secret,
                        owner=keys.owner_labels([new.key])[new.key.id],
                        back=url_for(".key_list"))


@shop_bp.post("/api-keys/staff")
def key_create_staff():
    return _create(StaffKeyForm(), keys.create_staff_key, "staff")


@shop_bp.post("/api-keys/buyer")
def key_create_buyer():
    return _create(BuyerKeyForm(), keys.create_buyer_key, "customer")


@shop_bp.post("/api-keys/<int:key_pk>/revoke")
def key_revoke(key_pk: int):
    _confirm_button()
    shop = current_tenant()
    try:
        key = keys.get_key(shop.id, key_pk)
    except DomainError:
        abort(404)
    if keys.revoke_key(key):
        record(staff_actor(), "api_key.revoked", tenant_id=shop.id, target=key.key_id)
        flash(_("Key %(key_id)s is revoked: requests signed with it are refused from now on.",
                key_id=key.key_id))
    db.session.commit()
    return redirect(url_for(".key_list"))


# -- upstream Kameng shops ------------------------------------------------------------------


@shop_bp.get("/upstream")
def upstream_list():
    shop = current_tenant()
    suppliers = upstream.kameng_suppliers(shop.id)
    return render_template("api/upstream.html", suppliers=suppliers,
                           products=upstream.imported_products(),
                           names={s.id: s.name for s in suppliers}, action=EmptyForm())


@shop_bp.get("/upstream/<int:supplier_id>")
def upstream_browse(supplier_id: int):
    shop = current_tenant()
    supplier = _kameng_supplier_or_404(supplier_id)
    offers, problem = [], ""
    try:
        offers = sorted(upstream.fetch_offers(supplier).values(), key=lambda o: o.id)
    except DomainError as error:
        problem = error.message
    db.session.rollback()
    imported = {p.supplier_product: p for p in upstream.imported_products(supplier.id)}
    return render_template("api/upstream_browse.html", supplier=supplier, offers=offers,
                           problem=problem, imported=imported, action=EmptyForm(),
                           currency=shop.currency)


def _kameng_supplier_or_404(supplier_id: int):
    from ..delivery.suppliers import get_supplier

    try:
        supplier = get_supplier(current_tenant().id, supplier_id)
    except DomainError:
        abort(404)
    if supplier.adapter != "kameng":
        abort(404)
    return supplier


@shop_bp.post("/upstream/<int:supplier_id>/import")
def upstream_import(supplier_id: int):
    _confirm_button()
    shop = current_tenant()
    supplier = _kameng_supplier_or_404(supplier_id)
    with committing() as attempt:
        products = upstream.import_products(shop, supplier.id, request.form.getlist("products"))
        record(staff_actor(), "upstream.imported", tenant_id=shop.id, target=supplier.name,
               products=[p.supplier_product for p in products])
    if attempt.failed:
        return redirect(url_for(".upstream_browse", supplier_id=supplier.id))
    flash(_("%(count)s product(s) imported from %(name)s. Your markup rules price "
            "them; set a product rule under Pricing to change one.",
            count=len(products), name=supplier.name))
    return redirect(url_for(".upstream_list"))


@shop_bp.post("/upstream/<int:supplier_id>/sync")
def upstream_sync(supplier_id: int):
    _confirm_button()
    shop = current_tenant()
    supplier = _kameng_supplier_or_404(supplier_id)
    with committing() as attempt:
        report = upstream.sync_supplier(shop, supplier)
    if attempt.failed:
        return redirect(url_for(".upstream_list"))
    flash(_("Synced %(updated)s product(s) from %(name)s: %(repriced)s new "
            "price(s), %(gone)s no longer offered.",
            updated=report.updated, name=supplier.name, repriced=report.repriced, gone=report.gone))
    return redirect(url_for(".upstream_list"))


# -- the platform's keys -----------------------------------------------------------------------


def _platform_page(form=None, status: int = 200):
    rows = keys.list_keys(None)
    return render_template("api/platform_keys.html", keys=rows,
                           form=form or PlatformKeyForm(formdata=None),
                           action=EmptyForm(formdata=None),
                           owners=_platform_owner_labels(rows)), status


def _platform_owner_labels(rows: list[ApiKey]) -> dict[int, str]:
    from ..superadmin.models import PlatformUser

    users = {u.id: u.email for u in db.session.query(PlatformUser).all()} if rows else {}
    return {k.id: users.get(k.owner_id, f"#{k.owner_id} (gone)") for k in rows}


@platform_bp.route("/", methods=["GET", "POST"], endpoint="key_list")
def platform_key_list():
    if request.method == "GET":
        return _platform_page()
    form = PlatformKeyForm()
    if not form.validate_on_submit():
        return _platform_page(form, 422)
    with committing(form) as attempt:
        new = keys.create_platform_key(current_user.id, name=form.name.data)
        record(platform_actor(), "api_key.created", tenant_id=None, target=new.key.key_id,
               owner_kind="platform")
    if attempt.failed:
        return _platform_page(form, 422)
    return _secret_page("api/platform_key_created.html", new.key, new.secret,
                        owner=current_user.email, back=url_for(".key_list"))


@platform_bp.post("/<int:key_pk>/revoke")
def key_revoke_platform(key_pk: int):
    _confirm_button()
    try:
        key = keys.get_key(None, key_pk)
    except DomainError:
        abort(404)
    if keys.revoke_key(key):
        record(platform_actor(), "api_key.revoked", tenant_id=None, target=key.key_id)
        flash(_("Key %(key_id)s is revoked.", key_id=key.key_id))
    db.session.commit()
    return redirect(url_for(".key_list"))

