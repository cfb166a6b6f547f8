"""The shop console's catalog pages (/admin on the shop host): products, supply listings,
categories, markup rules, buyer levels, level and bulk prices, coupons, notices."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from sqlalchemy import func, select

from ..delivery import suppliers
from ..errors import DomainError
from ..extensions import db
from ..forms import EmptyForm, committing
from ..inventory.models import SupplyCode
from ..inventory.service import available_stock
from ..merchant.console import console_blueprint, guard_blueprint
from ..merchant.service import mark_notice_read
from ..money import ROUNDINGS, decimal_string, format_money, percent_string
from ..tenants.hosts import current_tenant
from . import service as catalog
from .forms import (
    BulkPricesForm,
    CategoryForm,
    CategoryRuleForm,
    CouponForm,
    LevelForm,
    ListingForm,
    MarkupForm,
    ProductForm,
    SupplyPickForm,
    level_prices_form,
    options,
)
from .models import DELIVERY_KINDS, Category, Coupon, Product, SupplyCategory
from .pricing import QuoteError, markup_rule_for, quote

bp = console_blueprint("shop_catalog", __name__)
guard_blueprint(bp, read="catalog.view", write="catalog.edit", notice_read="notices.read",
                coupon_batch_csv="catalog.edit")


@bp.app_template_filter("money")
def money_filter(minor: int | None, currency: str = "CNY") -> str:
    return format_money(minor, currency)


@bp.app_template_filter("percent")
def percent_filter(basis_points: int | None) -> str:
    return "" if basis_points is None else f"{percent_string(basis_points)}%"


def describe_rule(rule, currency: str) -> str:
    """'+15%, rounded to 0.01' — a markup rule in words."""
    if rule is None:
        return "none (sold at cost)"
    amount = percent_filter(rule.value) if rule.kind == "percent" else format_money(
        rule.value, currency)
    sign = "+" if rule.value >= 0 else ""
    return f"{sign}{amount}, rounded {ROUNDINGS.get(rule.rounding, rule.rounding)}"


@bp.context_processor
def catalog_helpers() -> dict:
    return {"describe_rule": describe_rule, "delivery_kinds": DELIVERY_KINDS}


def _status(form) -> int:
    """200 for a fresh form, 422 for a submitted one that is shown again (it failed)."""
    return 422 if form.is_submitted() else 200


def _unbound(form_class, **kwargs):
    """A form shown beside the one that was submitted: it must not read the request."""
    return form_class(formdata=None, **kwargs)


def _confirm_button() -> None:
    """A plain POST button: CSRFProtect has checked the token; this keeps the habit explicit."""
    if not EmptyForm().validate_on_submit():
        abort(400)


NO_CATEGORY = _l("— none —")


def _category_choices(form_field, categories, empty=NO_CATEGORY) -> None:
    form_field.choices = options([("", empty)] + [(c.id, c.name) for c in categories])


def _quote_or_none(shop, product, level, qty):
    try:
        return quote(shop, product, level, qty)
    except QuoteError:
        return None


def _guest_and_member(levels):
    guest = next((level for level in levels if level.is_guest), None)
    member = next((level for level in levels if level.is_default), None)
    return guest, member


# -- notices ------------------------------------------------------------------------------------


@bp.post("/notices/<int:notice_id>/read")
def notice_read(notice_id: int):
    _confirm_button()
    mark_notice_read(notice_id)  # another shop's notice is not found: 404
    db.session.commit()
    flash(_("Notice marked as read."))
    return redirect(url_for("merchant.dashboard"))


# -- products -----------------------------------------------------------------------------------


@dataclass
class ProductRow:
    product: Product
    category: str
    guest: object
    member: object
    stock: int | None

    @property
    def low_stock(self) -> bool:
        threshold = self.product.low_stock_threshold or 0
        return self.stock is not None and threshold > 0 and self.stock < threshold


@bp.get("/products")
def product_list():
    shop = current_tenant()
    categories = catalog.list_categories()
    names = {c.id: c.name for c in categories}
    category_id = request.args.get("category", type=int)
    if category_id not in names:
        category_id = None
    search = request.args.get("q", "").strip()[:100]
    products = catalog.list_products(category_id=category_id, search=search)
    stock = available_stock(products)
    guest, member = _guest_and_member(catalog.list_levels())
    rows = []
    for product in products:
        low = product.quantity_range[0]
        rows.append(ProductRow(
            product=product,
            category=names.get(product.category_id, ""),
            guest=_quote_or_none(shop, product, guest, low),
            member=_quote_or_none(shop, product, member, low),
            stock=stock[product.id],
        ))
    return render_template(
        "catalog/products.html", rows=rows, categories=categories, category_id=category_id,
        search=search, guest=guest, member=member,
    )


def _uploaded_image(field) -> bytes | None:
    from ..security.images import MAX_IMAGE_BYTES

    upload = field.data
    if upload is None:
        return None
    return upload.read(MAX_IMAGE_BYTES + 1)  # anything longer is refused by the service


def _own_details(form: ProductForm) -> dict:
    details = {
        "description_html": form.description_html.data or "",
        "delivery_kind": form.delivery_kind.data,
        "text_content": form.text_content.data or "",
        "input_fields": form.input_field_rows(),
        "min_qty": form.min_qty.data,
        "max_qty": form.max_qty.data,
        "low_stock_threshold": form.low_stock_threshold.data,
        "sort": form.sort.data,
        "active": form.active.data,
        "supplier_id": form.supplier_id.data,
        "supplier_product": form.supplier_product.data or "",
    }
    image = _uploaded_image(form.image)
    if image is not None:
        details["image"] = image
    return details


def _product_form(product: Product | None, shop, *, bind: bool = True):
    """The edit form of an own product or a listing, filled from the product unless bound."""
    kwargs = {"currency": shop.currency}
    if not bind:
        kwargs["formdata"] = None
    if product is not None and (not bind or request.method != "POST"):
        if product.is_supply:
            kwargs["data"] = {
                "name": product.name or "", "description_html": product.description_html or "",
                "category_id": product.category_id, "sort": product.sort,
                "active": product.active, "low_stock_threshold": product.low_stock_threshold,
            }
        else:
            kwargs["data"] = {
                "name": product.name, "price": decimal_string(product.price or 0, shop.currency),
                "category_id": product.category_id, "delivery_kind": product.delivery_kind,
                "description_html": product.description_html or "",
                "text_content": catalog.text_content(product),
                "input_fields": list(product.input_fields or []),
                "min_qty": product.min_qty, "max_qty": product.max_qty,
                "low_stock_threshold": product.low_stock_threshold, "sort": product.sort,
                "active": product.active, "supplier_id": product.supplier_id,
                "supplier_product": product.supplier_product,
            }
    form_class = ListingForm if product is not None and product.is_supply else ProductForm
    form = form_class(**kwargs)
    _category_choices(form.category_id, catalog.list_categories())
    if form_class is ProductForm:
        form.supplier_id.choices = options(
            [("", "— none —"), *suppliers.supplier_choices(shop.id)])
    return form


@bp.route("/products/new", methods=["GET", "POST"])
def product_new():
    shop = current_tenant()
    form = _product_form(None, shop)
    if form.validate_on_submit():
        with committing(form) as attempt:
            product = catalog.create_product(
                shop, name=form.name.data, price=form.price.amount,
                category_id=form.category_id.data, **_own_details(form),
            )
        if not attempt.failed:
            flash(_("Product '%(title)s' created.", title=product.title))
            return redirect(url_for(".product_edit", product_id=product.id))
    return render_template("catalog/product_new.html", form=form), _status(form)


def _product_rule(shop, product):
    return next((rule for rule in shop.markup_rules
                 if rule.scope == "product" and rule.product_id == product.id), None)


def _rule_data(rule, currency: str) -> dict:
    if rule is None:
        return {"kind": "percent", "value": "0", "rounding": "0.01"}
    value = percent_string(rule.value) if rule.kind == "percent" else decimal_string(
        rule.value, currency)
    return {"kind": rule.kind, "value": value, "rounding": rule.rounding}


def _price_preview(shop, product: Product, levels):
    """Quantities (the minimum, then each bulk break) and, per level, the quote at each."""
    low, high = product.quantity_range
    quantities = [low] + [b.min_qty for b in product.bulk_prices if low < b.min_qty <= high]
    return quantities, [
        (level, [_quote_or_none(shop, product, level, qty) for qty in quantities])
        for level in levels
    ]


def _product_page(product: Product, *, form=None, markup_form=None, prices_form=None,
                  bulk_form=None, status: int = 200):
    shop = current_tenant()
    levels = catalog.list_levels()
    currency = shop.currency
    rule = _product_rule(shop, product) if product.is_supply else None
    effective = markup_rule_for(shop.markup_rules, product) if product.is_supply else None
    if form is None:
        form = _product_form(product, shop, bind=False)
    if markup_form is None:
        markup_form = _unbound(MarkupForm, currency=currency, prefix="markup",
                               data=_rule_data(rule or effective, currency))
    if prices_form is None:
        prices_form = level_prices_form(
            levels, currency=currency, bind=False,
            data={f"level_{lp.level_id}": decimal_string(lp.price, currency)
                  for lp in product.level_prices},
        )
    if bulk_form is None:
        rows = [{"min_qty": b.min_qty, "unit_price": decimal_string(b.unit_price, currency)}
                for b in product.bulk_prices]
        bulk_form = _unbound(BulkPricesForm, currency=currency, data={"rows": rows})
        while len(bulk_form.rows) < len(rows) + 2 and len(bulk_form.rows) < 20:
            bulk_form.rows.append_entry()
    quantities, preview = _price_preview(shop, product, levels)
    return render_template(
        "catalog/product.html", product=product, form=form, markup_form=markup_form,
        prices_form=prices_form, bulk_form=bulk_form, levels=levels, rule=rule,
        effective_rule=effective, quantities=quantities, preview=preview,
        stock=available_stock([product])[product.id],
        action=EmptyForm(formdata=None),
    ), status


@bp.route("/products/<int:product_id>", methods=["GET", "POST"])
def product_edit(product_id: int):
    shop = current_tenant()
    product = catalog.get_product(product_id)
    form = _product_form(product, shop)
    if form.validate_on_submit():
        with committing(form) as attempt:
            if product.is_supply:
                catalog.update_product(
                    product, name=form.name.data, category_id=form.category_id.data,
                    sort=form.sort.data, description_html=form.description_html.data or "",
                    active=form.active.data, low_stock_threshold=form.low_stock_threshold.data,
                )
            else:
                details = _own_details(form)
                catalog.update_product(
                    product, name=form.name.data, price=form.price.amount,
                    category_id=form.category_id.data, sort=details.pop("sort"), **details,
                )
        if not attempt.failed:
            flash(_("Product saved."))
            return redirect(url_for(".product_edit", product_id=product.id))
    return _product_page(product, form=form, status=_status(form))


@bp.post("/products/<int:product_id>/markup")
def product_markup(product_id: int):
    shop = current_tenant()
    product = catalog.get_product(product_id)
    form = MarkupForm(currency=shop.currency, prefix="markup")
    if form.validate_on_submit():
        with committing(form) as attempt:
            catalog.set_markup_rule(shop, scope="product", product_id=product.id,
                                    kind=form.kind.data, value=form.units,
                                    rounding=form.rounding.data)
        if not attempt.failed:
            flash(_("Markup of this product saved."))
            return redirect(url_for(".product_edit", product_id=product.id) + "#markup")
    return _product_page(product, markup_form=form, status=422)


@bp.post("/products/<int:product_id>/markup/delete")
def product_markup_delete(product_id: int):
    shop = current_tenant()
    product = catalog.get_product(product_id)
    _confirm_button()
    rule = _product_rule(shop, product)
    if rule is None:
        flash(_("This product has no markup of its own."))
    else:
        catalog.delete_markup_rule(shop, rule)
        db.session.commit()
        flash(_("This product now follows its category's or the shop's markup."))
    return redirect(url_for(".product_edit", product_id=product.id) + "#markup")


@bp.post("/products/<int:product_id>/level-prices")
def product_level_prices(product_id: int):
    shop = current_tenant()
    product = catalog.get_product(product_id)
    levels = catalog.list_levels()
    form = level_prices_form(levels, currency=shop.currency)
    if form.validate_on_submit():
        failed = False
        for level in levels:
            field = form[f"level_{level.id}"]
            try:
                catalog.set_level_price(product, level, field.amount)
            except DomainError as error:
                field.errors.append(error.message)
                failed = True
        if not failed:
            db.session.commit()
            flash(_("Level prices saved."))
            return redirect(url_for(".product_edit", product_id=product.id) + "#level-prices")
        db.session.rollback()
    return _product_page(product, prices_form=form, status=422)


@bp.post("/products/<int:product_id>/bulk-prices")
def product_bulk_prices(product_id: int):
    shop = current_tenant()
    product = catalog.get_product(product_id)
    form = BulkPricesForm(currency=shop.currency)
    if form.validate_on_submit():
        with committing(form) as attempt:
            catalog.set_bulk_prices(product, form.price_breaks())
        if not attempt.failed:
            flash(_("Bulk prices saved."))
            return redirect(url_for(".product_edit", product_id=product.id) + "#bulk-prices")
    return _product_page(product, bulk_form=form, status=422)


# -- the supply catalog -------------------------------------------------------------------------


def _supply_stock(supply_ids: list[int]) -> dict[int, int]:
    """Available codes per supply product: the platform's stock, shown as counts only."""
    if not supply_ids:
        return {}
    return dict(db.session.execute(
        select(SupplyCode.product_id, func.count())
        .where(SupplyCode.product_id.in_(supply_ids), SupplyCode.status == "available")
        .group_by(SupplyCode.product_id)
    ).all())


@bp.get("/supply")
def supply_list():
    products = catalog.list_supply_products(active_only=True)
    listed = dict(db.session.execute(
        select(Product.supply_product_id, Product.id)
        .where(Product.supply_product_id.is_not(None))
    ).all())
    stock = _supply_stock([p.id for p in products if p.delivery_kind == "card"])
    groups = []
    for category in [*catalog.list_supply_categories(), None]:
        members = [p for p in products
                   if p.category_id == (category.id if category is not None else None)]
        if members:
            groups.append((category, members))
    unlisted = sum(1 for p in products if p.id not in listed)
    return render_template(
        "catalog/supply.html", groups=groups, listed=listed, stock=stock, unlisted=unlisted,
        pick=SupplyPickForm(formdata=None),
    )


def _picked(field):
    form = SupplyPickForm()
    if not form.validate_on_submit() or getattr(form, field).data is None:
        abort(400)
    return getattr(form, field).data


def _listed(done: str):
    db.session.commit()
    flash(done)
    return redirect(url_for(".supply_list"))


def _not_listed(error: DomainError):
    db.session.rollback()
    flash(error.message, "error")
    return redirect(url_for(".supply_list"))


@bp.post("/supply/list")
def supply_list_product():
    shop = current_tenant()
    supply = catalog.get_supply_product(_picked("supply_product_id"))
    try:
        product = catalog.list_supply_product(shop, supply)
    except DomainError as error:
        return _not_listed(error)
    return _listed(_("'%(title)s' is on your shelf.", title=product.title))


@bp.post("/supply/list-category")
def supply_list_category():
    shop = current_tenant()
    category = db.session.get(SupplyCategory, _picked("supply_category_id"))
    if category is None:
        abort(404)
    try:
        products = catalog.list_supply_category(shop, category)
    except DomainError as error:
        return _not_listed(error)
    return _listed(_("All %(count)s products of '%(name)s' are on your shelf.",
                     count=len(products), name=category.name))


@bp.post("/supply/list-all")
def supply_list_all():
    shop = current_tenant()
    _confirm_button()
    try:
        count = catalog.list_whole_supply_catalog(shop)
    except DomainError as error:
        return _not_listed(error)
    return _listed(ngettext("%(num)d new supply product listed.",
                            "%(num)d new supply products listed.", count))


# -- categories ---------------------------------------------------------------------------------


def _product_counts() -> dict[int | None, int]:
    return dict(db.session.execute(
        select(Product.category_id, func.count()).group_by(Product.category_id)).all())


@bp.route("/categories", methods=["GET", "POST"])
def category_list():
    shop = current_tenant()
    form = CategoryForm()
    if form.validate_on_submit():
        with committing(form) as attempt:
            category = catalog.create_category(shop, form.name.data, form.sort.data)
        if not attempt.failed:
            flash(_("Category '%(name)s' created.", name=category.name))
            return redirect(url_for(".category_list"))
    return render_template(
        "catalog/categories.html", categories=catalog.list_categories(), form=form,
        counts=_product_counts(),
    ), _status(form)


@bp.route("/categories/<int:category_id>", methods=["GET", "POST"])
def category_edit(category_id: int):
    category = catalog.get_category(category_id)
    data = None if request.method == "POST" else {
        "name": category.name, "sort": category.sort, "active": category.active}
    form = CategoryForm(data=data)
    if form.validate_on_submit():
        with committing(form) as attempt:
            catalog.update_category(category, name=form.name.data, sort=form.sort.data,
                                    active=form.active.data)
        if not attempt.failed:
            flash(_("Category saved."))
            return redirect(url_for(".category_list"))
    return render_template(
        "catalog/category.html", category=category, form=form, action=EmptyForm(formdata=None),
        count=_product_counts().get(category.id, 0),
    ), _status(form)


@bp.post("/categories/<int:category_id>/delete")
def category_delete(category_id: int):
    category = catalog.get_category(category_id)
    _confirm_button()
    name = category.name
    catalog.delete_category(category)
    db.session.commit()
    flash(_("Category '%(name)s' deleted; its products are now uncategorised.", name=name))
    return redirect(url_for(".category_list"))


# -- markup rules and buyer levels ---------------------------------------------------------------


def _pricing_page(*, shop_form=None, rule_form=None, level_form=None, status: int = 200):
    shop = current_tenant()
    currency = shop.currency
    rules = shop.markup_rules
    shop_rule = next((r for r in rules if r.scope == "shop"), None)
    categories = catalog.list_categories()
    names = {c.id: c.name for c in categories}
    category_rules = sorted((r for r in rules if r.scope == "category"),
                            key=lambda r: names.get(r.category_id, ""))
    if shop_form is None:
        shop_form = _unbound(MarkupForm, currency=currency, prefix="shop",
                             data=_rule_data(shop_rule, currency))
    if rule_form is None:
        chosen = request.args.get("category", type=int)
        existing = next((r for r in category_rules if r.category_id == chosen), None)
        rule_form = _unbound(CategoryRuleForm, currency=currency, prefix="rule",
                             data={**_rule_data(existing, currency),
                                   "category_id": chosen if chosen in names else None})
    rule_form.category_id.choices = options((c.id, c.name) for c in categories)
    if level_form is None:
        level_form = _unbound(LevelForm, currency=currency, prefix="level")
    return render_template(
        "catalog/pricing.html", shop_rule=shop_rule, category_rules=category_rules,
        category_names=names, shop_form=shop_form, rule_form=rule_form, level_form=level_form,
        levels=catalog.list_levels(), action=EmptyForm(formdata=None),
    ), status


@bp.route("/pricing", methods=["GET", "POST"])
def pricing():
    shop = current_tenant()
    if request.method == "GET":
        return _pricing_page()
    form = MarkupForm(currency=shop.currency, prefix="shop")
    if form.validate_on_submit():
        with committing(form) as attempt:
            catalog.set_markup_rule(shop, scope="shop", kind=form.kind.data, value=form.units,
                                    rounding=form.rounding.data)
        if not attempt.failed:
            flash(_("Shop markup saved."))
            return redirect(url_for(".pricing"))
    return _pricing_page(shop_form=form, status=422)


@bp.post("/pricing/rules")
def pricing_rule_save():
    shop = current_tenant()
    form = CategoryRuleForm(currency=shop.currency, prefix="rule")
    form.category_id.choices = options((c.id, c.name) for c in catalog.list_categories())
    if form.validate_on_submit():
        with committing(form) as attempt:
            catalog.set_markup_rule(shop, scope="category", category_id=form.category_id.data,
                                    kind=form.kind.data, value=form.units,
                                    rounding=form.rounding.data)
        if not attempt.failed:
            flash(_("Category markup saved."))
            return redirect(url_for(".pricing") + "#category-rules")
    return _pricing_page(rule_form=form, status=422)


@bp.post("/pricing/rules/<int:rule_id>/delete")
def pricing_rule_delete(rule_id: int):
    shop = current_tenant()
    rule = catalog.get_markup_rule(rule_id)
    _confirm_button()
    product_id = rule.product_id if rule.scope == "product" else None
    with committing() as attempt:
        catalog.delete_markup_rule(shop, rule)
    if not attempt.failed:
        flash(_("Markup rule removed."))
    if product_id is not None:
        return redirect(url_for(".product_edit", product_id=product_id) + "#markup")
    return redirect(url_for(".pricing") + "#category-rules")


def _save_level(shop, level, form: LevelForm):
    return catalog.save_level(shop, level, name=form.name.data, rank=form.rank.data,
                              discount_bp=form.discount.bp,
                              spend_threshold=form.spend_threshold.amount)


@bp.post("/levels")
def level_create():
    shop = current_tenant()
    form = LevelForm(currency=shop.currency, prefix="level")
    if form.validate_on_submit():
        with committing(form) as attempt:
            level = _save_level(shop, None, form)
        if not attempt.failed:
            flash(_("Buyer level '%(name)s' created.", name=level.name))
            return redirect(url_for(".pricing") + "#levels")
    return _pricing_page(level_form=form, status=422)


@bp.route("/levels/<int:level_id>", methods=["GET", "POST"])
def level_edit(level_id: int):
    shop = current_tenant()
    level = catalog.get_level(level_id)
    data = None if request.method == "POST" else {
        "name": level.name, "rank": level.rank, "discount": percent_string(level.discount_bp),
        "spend_threshold": decimal_string(level.spend_threshold, shop.currency)
        if level.spend_threshold is not None else "",
    }
    form = LevelForm(currency=shop.currency, data=data)
    if form.validate_on_submit():
        with committing(form) as attempt:
            _save_level(shop, level, form)
        if not attempt.failed:
            flash(_("Buyer level saved."))
            return redirect(url_for(".pricing") + "#levels")
    return render_template(
        "catalog/level.html", level=level, form=form, action=EmptyForm(formdata=None),
    ), _status(form)


@bp.post("/levels/<int:level_id>/delete")
def level_delete(level_id: int):
    level = catalog.get_level(level_id)
    _confirm_button()
    name = level.name
    with committing() as attempt:
        catalog.delete_level(level)
    if not attempt.failed:
        flash(_("Buyer level '%(name)s' deleted.", name=name))
    return redirect(url_for(".pricing") + "#levels")


# -- coupons -----------------------------------------------------------------------------------


def _coupon_form(shop, *, bind: bool = True) -> CouponForm:
    kwargs = {"currency": shop.currency}
    if not bind:
        kwargs["formdata"] = None
    form = CouponForm(**kwargs)
    _category_choices(form.category_id, catalog.list_categories())
    form.product_id.choices = options(
        [("", "— none —")] + [(p.id, p.title) for p in catalog.list_products()])
    form.allowed_level_ids.choices = options(
        (level.id, level.name) for level in catalog.list_levels())
    return form


def _batches():
    return db.session.execute(
        select(Coupon.batch, func.count(), func.min(Coupon.created_at))
        .where(Coupon.batch.is_not(None)).group_by(Coupon.batch)
        .order_by(func.min(Coupon.created_at).desc())
    ).all()


@bp.route("/coupons", methods=["GET", "POST"])
def coupon_list():
    shop = current_tenant()
    form = _coupon_form(shop)
    if form.validate_on_submit():
        with committing(form) as attempt:
            if form.generate.data:
                if form.count.data is None:
                    raise DomainError(_l("Say how many codes to generate."), field="count")
                coupons = catalog.generate_coupons(shop, form.count.data, form.prefix.data or "",
                                                   form.terms(), form.batch_label.data or "")
                done = _("Generated %(count)s coupon codes in batch '%(batch)s'.",
                         count=len(coupons), batch=coupons[0].batch)
                target = url_for(".coupon_list") + "#batches"
            else:
                coupon = catalog.create_coupon(shop, form.code.data or "", form.terms())
                done = _("Coupon %(code)s created.", code=coupon.code)
                target = url_for(".coupon_detail", coupon_id=coupon.id)
        if not attempt.failed:
            flash(done)
            return redirect(target)
    search = request.args.get("q", "").strip()[:40]
    return render_template(
        "catalog/coupons.html", form=form, coupons=catalog.list_coupons(search), search=search,
        batches=_batches(),
    ), _status(form)


def _csv_cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


def _coupon_value(coupon: Coupon, currency: str) -> str:
    if coupon.kind == "percent":
        return percent_filter(coupon.value)
    return decimal_string(coupon.value, currency)


@bp.get("/coupons/batch.csv")
def coupon_batch_csv():
    shop = current_tenant()
    label = request.args.get("batch", "").strip()[:60]
    coupons = list(db.session.scalars(
        select(Coupon).where(Coupon.batch == label).order_by(Coupon.id))) if label else []
    if not coupons:
        abort(404)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["code", "discount", "starts_at", "ends_at", "max_uses", "used", "active"])
    for c in coupons:
        writer.writerow([
            c.code, _coupon_value(c, shop.currency),
            c.starts_at.isoformat() if c.starts_at else "",
            c.ends_at.isoformat() if c.ends_at else "",
            c.max_uses or "", c.used_count, "yes" if c.active else "no",
        ])
    filename = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-") or "batch"
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="coupons-{filename}.csv"',
        "Cache-Control": "no-store",
    })


@bp.get("/coupons/<int:coupon_id>")
def coupon_detail(coupon_id: int):
    coupon = catalog.get_coupon(coupon_id)
    category = db.session.get(Category, coupon.category_id) if coupon.category_id else None
    product = db.session.get(Product, coupon.product_id) if coupon.product_id else None
    levels = {level.id: level.name for level in catalog.list_levels()}
    return render_template(
        "catalog/coupon.html", coupon=coupon, category=category, product=product,
        level_names=[levels.get(i, f"#{i} (deleted)") for i in coupon.allowed_level_ids or []],
        coupon_value=_coupon_value(coupon, current_tenant().currency),
        action=EmptyForm(formdata=None),
    )


def _set_coupon_active(coupon_id: int, active: bool):
    coupon = catalog.get_coupon(coupon_id)
    _confirm_button()
    catalog.set_coupon_active(coupon, active)
    db.session.commit()
    if active:
        flash(_("Coupon %(code)s activated.", code=coupon.code))
    else:
        flash(_("Coupon %(code)s deactivated.", code=coupon.code))
    return redirect(url_for(".coupon_detail", coupon_id=coupon.id))


@bp.post("/coupons/<int:coupon_id>/activate")
def coupon_activate(coupon_id: int):
    return _set_coupon_active(coupon_id, True)


@bp.post("/coupons/<int:coupon_id>/deactivate")
def coupon_deactivate(coupon_id: int):
    return _set_coupon_active(coupon_id, False)
