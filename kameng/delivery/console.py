"""Upstream suppliers in both consoles: a shop's own (/admin/suppliers on the shop host, for its
own top-up products) and the platform's (/suppliers on the admin host, for supply products).

The two consoles share these views; each passes its owner (the shop's id, or None for the
platform). Credentials are write-only: secrets are shown masked, an empty input keeps the
stored value, and the audit log names the fields typed in, never their values.

Registered by create_app() (kameng/__init__.py, _register_blueprints): `shop_suppliers` under
/admin on shop hosts, `platform_suppliers` under /suppliers on the admin host.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext

from ..audit.service import Actor, record
from ..errors import DomainError
from ..extensions import db
from ..forms import EmptyForm, committing
from ..merchant.console import console_blueprint, guard_blueprint, staff_actor
from ..superadmin.console import platform_actor, platform_blueprint
from ..tenants.hosts import current_tenant
from . import suppliers
from .adapters import ADAPTERS
from .forms import SupplierForm, supplier_form_data
from .models import Supplier

log = logging.getLogger(__name__)

shop_bp = console_blueprint("shop_suppliers", __name__)
guard_blueprint(shop_bp, read="suppliers.manage", write="suppliers.manage")
platform_bp = platform_blueprint("platform_suppliers", __name__)


@dataclass(frozen=True)
class Console:
    """Whose suppliers a page shows, and in which console's clothes."""

    owner: int | None  # the shop's id; None: the platform's
    endpoint: str  # blueprint name
    templates: str  # template name prefix
    actor: Actor


def _shop() -> Console:
    return Console(current_tenant().id, "shop_suppliers", "suppliers/shop_", staff_actor())


def _platform() -> Console:
    return Console(None, "platform_suppliers", "suppliers/platform_", platform_actor())


def _confirm_button() -> None:
    """A plain POST button: CSRFProtect has checked the token; this keeps the habit explicit."""
    if not EmptyForm().validate_on_submit():
        abort(400)


def _status(form) -> int:
    return 422 if form.is_submitted() else 200


def _blank_form() -> SupplierForm:
    return SupplierForm(formdata=None, data=supplier_form_data())


def _edit_form(supplier: Supplier, *, bind: bool) -> SupplierForm:
    if bind and request.method == "POST":
        return SupplierForm()
    data = supplier_form_data(supplier)
    data["cred_key_id"] = suppliers.masked_credentials(supplier, "kameng").get("key_id", "")
    return SupplierForm(formdata=None, data=data)


def _save(console: Console, supplier: Supplier | None, form: SupplierForm) -> Supplier:
    saved = suppliers.save_supplier(
        console.owner, supplier, name=form.name.data, adapter=form.adapter.data,
        base_url=form.base_url.data, settings=form.settings_values(),
        credentials=form.credential_values(), active=form.active.data)
    record(console.actor, "supplier.created" if supplier is None else "supplier.changed",
           tenant_id=console.owner, target=f"supplier:{saved.id}",
           adapter=saved.adapter, credentials_typed=form.typed_credentials(),
           active=saved.active)
    return saved


def _list_page(console: Console, form: SupplierForm | None = None):
    form = form or _blank_form()
    rows = [(s, suppliers.products_using(s)) for s in suppliers.list_suppliers(console.owner)]
    return render_template(f"{console.templates}list.html", rows=rows, form=form,
                           adapters=ADAPTERS, endpoint=console.endpoint), _status(form)


def _list(console: Console):
    if request.method == "GET":
        return _list_page(console)
    form = SupplierForm()
    if form.validate_on_submit():
        with committing(form) as attempt:
            supplier = _save(console, None, form)
        if not attempt.failed:
            flash(_("Supplier '%(name)s' created.", name=supplier.name))
            return redirect(url_for(f"{console.endpoint}.supplier_edit",
                                    supplier_id=supplier.id))
    return _list_page(console, form)


def _edit(console: Console, supplier_id: int):
    supplier = suppliers.get_supplier(console.owner, supplier_id)  # another owner's: 404
    form = _edit_form(supplier, bind=True)
    if form.validate_on_submit():
        with committing(form) as attempt:
            _save(console, supplier, form)
        if not attempt.failed:
            flash(_("Supplier '%(name)s' saved.", name=supplier.name))
            return redirect(url_for(f"{console.endpoint}.supplier_edit",
                                    supplier_id=supplier.id))
    return render_template(
        f"{console.templates}edit.html", supplier=supplier, form=form,
        shown=suppliers.masked_credentials(supplier), used=suppliers.products_using(supplier),
        adapters=ADAPTERS, endpoint=console.endpoint, action=EmptyForm(formdata=None),
    ), _status(form)


def _test(console: Console, supplier_id: int):
    supplier = suppliers.get_supplier(console.owner, supplier_id)
    _confirm_button()
    try:
        message = suppliers.connection_check(supplier)
    except DomainError as error:
        flash(error.message, "error")
    except Exception as error:  # never a 500 for a supplier's misbehaviour
        log.exception("supplier %s: connection test failed", supplier.id)
        flash(_("The test failed (%(name)s). Check the settings and try again.",
                name=type(error).__name__),
              "error")
    else:
        flash(message)
    finally:
        db.session.rollback()  # a test changes nothing
    return redirect(url_for(f"{console.endpoint}.supplier_edit", supplier_id=supplier_id))


def _delete(console: Console, supplier_id: int):
    supplier = suppliers.get_supplier(console.owner, supplier_id)
    _confirm_button()
    name = supplier.name
    unlinked = suppliers.delete_supplier(supplier)
    record(console.actor, "supplier.deleted", tenant_id=console.owner,
           target=f"supplier:{supplier_id}", products_unlinked=unlinked)
    db.session.commit()
    if unlinked:
        flash(ngettext("Supplier '%(name)s' deleted. %(num)d product no longer names a supplier.",
                       "Supplier '%(name)s' deleted. %(num)d products no longer name a supplier.",
                       unlinked, name=name))
    else:
        flash(_("Supplier '%(name)s' deleted.", name=name))
    return redirect(url_for(f"{console.endpoint}.supplier_list"))


# -- the shop console: /admin/suppliers ------------------------------------------------------


@shop_bp.route("/suppliers", methods=["GET", "POST"], endpoint="supplier_list")
def shop_supplier_list():
    return _list(_shop())


@shop_bp.route("/suppliers/<int:supplier_id>", methods=["GET", "POST"],
               endpoint="supplier_edit")
def shop_supplier_edit(supplier_id: int):
    return _edit(_shop(), supplier_id)


@shop_bp.post("/suppliers/<int:supplier_id>/test", endpoint="supplier_test")
def shop_supplier_test(supplier_id: int):
    return _test(_shop(), supplier_id)


@shop_bp.post("/suppliers/<int:supplier_id>/delete", endpoint="supplier_delete")
def shop_supplier_delete(supplier_id: int):
    return _delete(_shop(), supplier_id)


# -- the super-admin console: /suppliers -------------------------------------------------------


@platform_bp.route("/", methods=["GET", "POST"], endpoint="supplier_list")
def platform_supplier_list():
    return _list(_platform())


@platform_bp.route("/<int:supplier_id>", methods=["GET", "POST"], endpoint="supplier_edit")
def platform_supplier_edit(supplier_id: int):
    return _edit(_platform(), supplier_id)


@platform_bp.post("/<int:supplier_id>/test", endpoint="supplier_test")
def platform_supplier_test(supplier_id: int):
    return _test(_platform(), supplier_id)


@platform_bp.post("/<int:supplier_id>/delete", endpoint="supplier_delete")
def platform_supplier_delete(supplier_id: int):
    return _delete(_platform(), supplier_id)
