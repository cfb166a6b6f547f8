"""The shop console's code inventory pages: stock, import, void, delete, audited export.

The same pages serve the platform's supply products on the admin host (`supply_bp`): one set
of handlers and one template macro, given the product, the actor and the page to extend.
Code content never appears on a page; the CSV export is the one way out, and it is audited.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_wtf.file import FileField
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import HiddenField, TextAreaField

from ..audit.service import Actor
from ..catalog import service as catalog
from ..catalog.forms import IdListField
from ..catalog.models import DELIVERY_KINDS, Product, SupplyProduct
from ..errors import DomainError
from ..forms import EmptyForm, Form, committing
from ..merchant.console import console_blueprint, guard_blueprint, require_staff, staff_actor
from ..pages import render_error
from ..superadmin.console import platform_actor, platform_blueprint, require_platform_staff
from .models import CODE_STATUSES
from .service import (
    available_stock,
    delete_codes,
    export_unsold,
    import_codes,
    lines_of_text,
    lines_of_upload,
    list_codes,
    stock_counts,
    void_codes,
)

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
UPLOAD_SUFFIXES = (".txt", ".csv")
TOO_LARGE = ("What you sent is too large. Upload files of up to 64 MB, and paste at most "
             "about 500 KB of text; split bigger batches into several files.")

bp = console_blueprint("shop_codes", __name__)
guard_blueprint(bp, read="catalog.view", write="catalog.edit", codes_export="codes.export")

# The same pages for the platform's supply codes, on the admin host under /supply.
supply_bp = platform_blueprint("supply_codes", __name__)


class CodeImportForm(Form):
    codes = TextAreaField(_l("Paste codes, one per line"))
    file = FileField(_l("Or upload a .txt file (one code per line) or a .csv file (a “code” "
                        "column, or one code per row), UTF-8"))


class CodeSelectionForm(Form):
    """The ticked code rows, or every unsold code when `scope` is "all"."""

    code_ids = IdListField(_l("Codes"))
    scope = HiddenField(default="selected")


# -- one set of handlers for both kinds of stock ---------------------------------------------------


def _lines_to_import(form: CodeImportForm) -> Iterator[str]:
    """The pasted lines, then the uploaded file's; a DomainError for what cannot be read."""
    sources = []
    pasted = form.codes.data or ""
    if pasted.strip():
        sources.append(lines_of_text(pasted))
    upload = form.file.data
    if upload is not None:
        name = upload.filename or ""
        if not name.lower().endswith(UPLOAD_SUFFIXES):
            raise DomainError(_l("Upload a .txt or .csv file."), field="file")
        data = upload.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise DomainError(_l("The file is larger than 64 MB; split it into smaller files."),
                              field="file")
        if not data.strip():
            raise DomainError(_l("The file is empty."), field="file")
        sources.append(lines_of_upload(name, data))
    if not sources:
        raise DomainError(_l("Paste codes or choose a file."), field="codes")
    return itertools.chain(*sources)


def _holds_codes(target) -> bool:
    return isinstance(target, SupplyProduct) or not target.is_supply


def _codes_url(target) -> str:
    return url_for(".codes", product_id=target.id)


def _render(target, template: str, *, import_form: CodeImportForm | None = None,
            status: int = 200, **context):
    holds = _holds_codes(target)
    shown = request.args.get("status", "")
    shown = shown if shown in CODE_STATUSES else ""
    counts = stock_counts(target) if holds else None
    threshold = target.low_stock_threshold or 0
    page = render_template(
        template,
        target=target,
        holds_codes=holds,
        is_card=target.delivery_kind == "card",
        counts=counts,
        low=counts is not None and threshold > 0 and counts["available"] < threshold,
        codes=list_codes(target, status=shown or None) if holds else [],
        shown=shown,
        statuses=CODE_STATUSES,
        delivery_kinds=DELIVERY_KINDS,
        import_form=import_form or CodeImportForm(formdata=None),
        selection=CodeSelectionForm(formdata=None),
        action=EmptyForm(formdata=None),
        urls={name: url_for(f".codes_{name}", product_id=target.id)
              for name in ("import", "void", "delete", "export")} | {"page": _codes_url(target)},
        **context,
    )
    return page, status


def _import(target, actor: Actor, render: Callable):
    form = CodeImportForm()
    if form.validate_on_submit():
        with committing(form) as attempt:
            report = import_codes(target, _lines_to_import(form), actor=actor)
            if report.total == 0:
                raise DomainError(_l("No codes were found in what you sent."), field="codes")
        if not attempt.failed:
            flash(_("Import finished: %(summary)s.", summary=report.summary()))
            return redirect(_codes_url(target))
    return render(target, import_form=form, status=422)


def _change(target, actor: Actor, change: Callable, done: str):
    """Void or delete the ticked codes, or all of them (the service spares sold codes)."""
    form = CodeSelectionForm()
    if not form.validate_on_submit():
        flash(" ".join(form.code_ids.errors) or _("The form has expired; try again."), "error")
        return redirect(_codes_url(target))
    code_ids = None if form.scope.data == "all" else form.code_ids.data
    if code_ids is not None and not code_ids:
        flash(_("Tick the codes first."), "error")
        return redirect(_codes_url(target))
    with committing() as attempt:
        count = change(target, code_ids, actor=actor)
    if not attempt.failed:
        if done == "voided":
            flash(ngettext("%(num)d code voided.", "%(num)d codes voided.", count))
        else:
            flash(ngettext("%(num)d code deleted.", "%(num)d codes deleted.", count))
    return redirect(_codes_url(target))


def _export(target, actor: Actor):
    if not EmptyForm().validate_on_submit():
        abort(400)
    with committing() as attempt:  # commits the audit event of the export
        body = export_unsold(target, actor=actor)
    if attempt.failed:
        return redirect(_codes_url(target))
    kind = "supply-product" if isinstance(target, SupplyProduct) else "product"
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="unsold-codes-{kind}-{target.id}.csv"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    })


def _too_large_handler(guard: Callable, load: Callable, render: Callable):
    """A too-large import shows the import form with the reason; other pages the 413 page.

    Werkzeug refuses the body before any view runs (even before the CSRF check), so the
    login guard runs here first and nothing is changed."""

    def handle(error):
        # The refused body must not be read again: every form on the page would try.
        request.form = request.files = ImmutableMultiDict()
        if not (request.endpoint or "").endswith(".codes_import"):
            return render_error(413)
        refused = guard()
        if refused is not None:
            return refused
        try:
            target = load((request.view_args or {}).get("product_id", 0))
        except DomainError as missing:
            return render_error(missing.status_code, missing.message)
        form = CodeImportForm(formdata=None)
        form.form_errors.append(TOO_LARGE)
        return render(target, import_form=form, status=413)

    return handle


# -- a shop's own products ---------------------------------------------------------------------


def _shop_page(product: Product, **kwargs):
    return _render(product, "inventory/shop_codes.html",
                   listing_stock=available_stock([product])[product.id]
                   if product.is_supply else None, **kwargs)


@bp.get("/products/<int:product_id>/codes")
def codes(product_id: int):
    return _shop_page(catalog.get_product(product_id))


@bp.post("/products/<int:product_id>/codes/import")
def codes_import(product_id: int):
    return _import(catalog.get_product(product_id), staff_actor(), _shop_page)


@bp.post("/products/<int:product_id>/codes/void")
def codes_void(product_id: int):
    return _change(catalog.get_product(product_id), staff_actor(), void_codes, "voided")


@bp.post("/products/<int:product_id>/codes/delete")
def codes_delete(product_id: int):
    return _change(catalog.get_product(product_id), staff_actor(), delete_codes, "deleted")


@bp.post("/products/<int:product_id>/codes/export")
def codes_export(product_id: int):
    return _export(catalog.get_product(product_id), staff_actor())


bp.register_error_handler(
    RequestEntityTooLarge, _too_large_handler(require_staff, catalog.get_product, _shop_page))


# -- the platform's supply products ---------------------------------------------------------------


def _supply_page(product: SupplyProduct, **kwargs):
    return _render(product, "inventory/supply_codes.html", **kwargs)


@supply_bp.get("/products/<int:product_id>/codes", endpoint="codes")
def supply_codes(product_id: int):
    return _supply_page(catalog.get_supply_product(product_id))


@supply_bp.post("/products/<int:product_id>/codes/import", endpoint="codes_import")
def supply_codes_import(product_id: int):
    return _import(catalog.get_supply_product(product_id), platform_actor(), _supply_page)


@supply_bp.post("/products/<int:product_id>/codes/void", endpoint="codes_void")
def supply_codes_void(product_id: int):
    return _change(catalog.get_supply_product(product_id), platform_actor(), void_codes, "voided")


@supply_bp.post("/products/<int:product_id>/codes/delete", endpoint="codes_delete")
def supply_codes_delete(product_id: int):
    return _change(catalog.get_supply_product(product_id), platform_actor(), delete_codes,
                   "deleted")


@supply_bp.post("/products/<int:product_id>/codes/export", endpoint="codes_export")
def supply_codes_export(product_id: int):
    return _export(catalog.get_supply_product(product_id), platform_actor())


supply_bp.register_error_handler(
    RequestEntityTooLarge,
    _too_large_handler(require_platform_staff, catalog.get_supply_product, _supply_page))
