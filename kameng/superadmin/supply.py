"""The super-admin console's supply catalog: the categories and products the platform sells to
shops at cost. Their codes are managed on the `supply_codes` pages."""

from __future__ import annotations

from flask import (
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from sqlalchemy import func, select

from ..catalog import service as catalog
from ..catalog.models import DELIVERY_KINDS, Product, SupplyCategory, SupplyProduct
from ..delivery import suppliers
from ..errors import NotFound
from ..extensions import db
from ..forms import committing
from ..inventory.service import stock_summary
from ..money import decimal_string, format_money, parse_amount
from ..security.images import MAX_IMAGE_BYTES
from .console import platform_blueprint
from .supply_forms import SupplyCategoryEditForm, SupplyCategoryForm, SupplyProductForm

bp = platform_blueprint("supply", __name__)

NOTICES_NAMED = 5  # shops named in the flash after a cost rise; the rest are counted


@bp.context_processor
def _helpers():
    return {"format_money": format_money, "delivery_kinds": DELIVERY_KINDS,
            "codes_url": _codes_url}


def _codes_url(product: SupplyProduct) -> str | None:
    """The product's code inventory page, once the supply_codes pages exist."""
    if "supply_codes.codes" not in current_app.view_functions:
        return None
    return url_for("supply_codes.codes", product_id=product.id)


def _listing_counts() -> dict[int, int]:
    """How many shops list each supply product (the console is platform-wide: every shop)."""
    rows = db.session.execute(
        select(Product.supply_product_id, func.count())
        .where(Product.supply_product_id.is_not(None))
        .group_by(Product.supply_product_id)
    )
    return dict(rows.all())


# -- products --------------------------------------------------------------------------------


@bp.get("/")
def product_list():
    categories = catalog.list_supply_categories()
    products = catalog.list_supply_products()
    groups = [(c, [p for p in products if p.category_id == c.id]) for c in categories]
    loose = [p for p in products if p.category_id is None]
    if loose:
        groups.append((None, loose))
    return render_template(
        "supply/products.html",
        groups=groups,
        product_count=len(products),
        listings=_listing_counts(),
        stock=stock_summary(products),
    )


def _product_form(product: SupplyProduct | None) -> SupplyProductForm:
    if product is None or request.method == "POST":
        form = SupplyProductForm()
    else:
        form = SupplyProductForm(data={
            "name": product.name,
            "category_id": product.category_id or 0,
            "cost": decimal_string(product.cost, product.currency),
            "delivery_kind": product.delivery_kind,
            "description_html": product.description_html,
            # The platform's own secret, shown only to super-admins so they can edit it.
            "text_content": catalog.text_content(product),
            "input_fields": list(product.input_fields or []),
            "min_qty": product.min_qty,
            "max_qty": product.max_qty,
            "low_stock_threshold": product.low_stock_threshold,
            "active": product.active,
            "supplier_id": product.supplier_id or 0,
            "supplier_product": product.supplier_product,
        })
    form.set_categories(catalog.list_supply_categories())
    form.set_suppliers(suppliers.supplier_choices(None))
    return form


def _product_page(form: SupplyProductForm, product: SupplyProduct | None, status: int = 200):
    context = {"form": form, "product": product, "listings": 0, "stock": None}
    if product is not None:
        context["listings"] = _listing_counts().get(product.id, 0)
        context["stock"] = stock_summary([product])[product.id]
    return render_template("supply/product_form.html", **context), status


def _cost(form: SupplyProductForm) -> int:
    return parse_amount(form.cost.data, current_app.config["CURRENCY"], field="cost")


def _image(form: SupplyProductForm) -> bytes | None:
    upload = form.image.data
    if not upload:
        return None
    # One byte more than allowed is enough for the size check to refuse it.
    return upload.read(MAX_IMAGE_BYTES + 1)


def _details(form: SupplyProductForm) -> dict:
    kind = form.delivery_kind.data
    return {
        "description_html": form.description_html.data or "",
        "delivery_kind": kind,
        # Fixed content belongs to `text` products only; switching kind clears it.
        "text_content": (form.text_content.data or "") if kind == "text" else "",
        "input_fields": form.buyer_input_fields(),
        "min_qty": form.min_qty.data,
        "max_qty": form.max_qty.data,
        "low_stock_threshold": form.low_stock_threshold.data or 0,
        "active": form.active.data,
        "image": _image(form),
        "supplier_id": form.supplier_id.data or None,
        "supplier_product": form.supplier_product.data or "",
    }


def _told(notices: list[str]) -> str:
    named = ", ".join(n if len(n) <= 80 else n[:79] + "…" for n in notices[:NOTICES_NAMED])
    more = len(notices) - NOTICES_NAMED
    if more > 0:
        named = _("%(names)s and %(more)s more", names=named, more=more)
    return ngettext("%(num)d shop was told that the new cost is above prices they had set, "
                    "which now stay at cost: %(names)s.",
                    "%(num)d shops were told that the new cost is above prices they had set, "
                    "which now stay at cost: %(names)s.", len(notices), names=named)


@bp.route("/products/new", methods=["GET", "POST"])
def product_new():
    form = _product_form(None)
    if not form.validate_on_submit():
        return _product_page(form, None, 422 if request.method == "POST" else 200)
    with committing(form) as attempt:
        product = catalog.create_supply_product(
            name=form.name.data, cost=_cost(form), category_id=form.category_id.data or None,
            **_details(form),
        )
    if attempt.failed:
        return _product_page(form, None, 422)
    flash(_("Supply product '%(name)s' created. New shops list it as they open.",
            name=product.name))
    return redirect(url_for(".product_edit", product_id=product.id))


@bp.route("/products/<int:product_id>", methods=["GET", "POST"])
def product_edit(product_id: int):
    product = catalog.get_supply_product(product_id)
    form = _product_form(product)
    if not form.validate_on_submit():
        return _product_page(form, product, 422 if request.method == "POST" else 200)
    with committing(form) as attempt:
        notices = catalog.update_supply_product(
            product, name=form.name.data, cost=_cost(form),
            category_id=form.category_id.data or None, **_details(form),
        )
    if attempt.failed:
        return _product_page(form, product, 422)
    flash(_("Supply product '%(name)s' saved.", name=product.name))
    if notices:
        flash(_told(notices))
    return redirect(url_for(".product_edit", product_id=product.id))


@bp.get("/products/<int:product_id>/image")
def product_image(product_id: int):
    product = catalog.get_supply_product(product_id)
    if not product.image_type or not product.image_data:
        raise NotFound(_l("This product has no image."))
    response = make_response(product.image_data)
    response.headers["Content-Type"] = product.image_type
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


# -- categories ------------------------------------------------------------------------------


def _category_or_404(category_id: int) -> SupplyCategory:
    category = db.session.get(SupplyCategory, category_id)
    if category is None:
        raise NotFound(_l("No such supply category."))
    return category


def _product_counts() -> dict[int, int]:
    rows = db.session.execute(
        select(SupplyProduct.category_id, func.count()).group_by(SupplyProduct.category_id)
    )
    return dict(rows.all())


@bp.route("/categories", methods=["GET", "POST"])
def category_list():
    form = SupplyCategoryForm()
    if form.validate_on_submit():
        with committing(form) as attempt:
            category = catalog.create_supply_category(form.name.data, form.sort.data or 0)
        if not attempt.failed:
            flash(_("Supply category '%(name)s' created.", name=category.name))
            return redirect(url_for(".category_list"))
    return render_template(
        "supply/categories.html",
        categories=catalog.list_supply_categories(),
        product_counts=_product_counts(),
        form=form,
    ), 422 if request.method == "POST" else 200


@bp.route("/categories/<int:category_id>", methods=["GET", "POST"])
def category_edit(category_id: int):
    category = _category_or_404(category_id)
    form = SupplyCategoryEditForm(obj=category if request.method == "GET" else None)
    if form.validate_on_submit():
        with committing(form) as attempt:
            catalog.update_supply_category(category, name=form.name.data,
                                           sort=form.sort.data or 0, active=form.active.data)
        if not attempt.failed:
            flash(_("Supply category '%(name)s' saved.", name=category.name))
            return redirect(url_for(".category_list"))
    return render_template(
        "supply/category_form.html",
        category=category,
        products=catalog.list_supply_products(category.id),
        form=form,
    ), 422 if request.method == "POST" else 200
