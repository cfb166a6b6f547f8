"""The shop console's Appearance page (/admin/appearance): pick a theme, fill its settings,
upload a logo and banner, set the shop's name, announcement, footer links and contacts, and
see the shop's home page with the unsaved changes before saving them.

The preview needs no script: the form's "Preview" button posts the same form to
/admin/appearance/preview with `formtarget` naming the page's <iframe>, which shows the themed
home page rendered from the posted values (nothing is saved).

Registered by create_app() (kameng/__init__.py, _register_blueprints) under /admin on shop
hosts.
"""

from __future__ import annotations

from contextlib import suppress

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import AnonymousUserMixin

from ..audit.service import record
from ..errors import DomainError
from ..extensions import db
from ..forms import EmptyForm, committing
from ..merchant.console import console_blueprint, guard_blueprint, staff_actor
from ..storefront.views import home_page
from ..tenants.hosts import current_tenant
from ..tenants.models import Tenant
from . import service as appearance
from .forms import appearance_form
from .service import Draft, effective_theme, theme_schema

bp = console_blueprint("shop_appearance", __name__)
guard_blueprint(bp, read="appearance.edit", write="appearance.edit")


class ShopPreview:
    """The shop as a preview shows it: its unsaved name over the stored row (never written)."""

    def __init__(self, shop: Tenant, name: str):
        self._shop = shop
        self.name = name

    def __getattr__(self, attr):
        return getattr(self._shop, attr)


def _shop() -> Tenant:
    return db.session.get(Tenant, current_tenant().id)


def _saved_form(shop: Tenant):
    settings = shop.settings or {}
    links = appearance.footer_links(shop)
    contacts = appearance.contacts(shop)
    data = {
        "name": shop.name,
        "locale": shop.locale,
        "notice": settings.get("notice") or "",
        "links": [*links, *({"label": "", "url": ""} for _ in range(6 - len(links)))],
        **{f"contact_{key}": contacts.get(key, "") for key in appearance.CONTACT_KEYS},
        **appearance.theme_settings(shop),
    }
    return appearance_form(theme_schema(shop.theme), formdata=None, data=data)


def _page(form=None, status: int = 200):
    shop = current_tenant()
    return render_template(
        "appearance/page.html",
        form=form or _saved_form(shop),
        cards=appearance.theme_cards(),
        current=effective_theme(shop.theme),
        choose_form=EmptyForm(formdata=None),
        assets=appearance.asset_versions(shop),
    ), status


@bp.get("/appearance")
def page():
    return _page()


@bp.post("/appearance")
def save():
    shop = _shop()
    form = appearance_form(theme_schema(shop.theme))
    if not form.validate_on_submit():
        return _page(form, 422)
    with committing(form) as attempt:
        changed = appearance.save_appearance(shop, form.changes())
        for kind, data in form.uploads().items():
            if data is None:
                if appearance.remove_asset(shop, kind):
                    changed.append(f"{kind} removed")
            else:
                appearance.store_asset(shop, kind, data)
                changed.append(kind)
        record(staff_actor(), "appearance.saved", tenant_id=shop.id, theme=shop.theme,
               changed=changed)
    if attempt.failed:
        return _page(form, 422)
    flash(_("Appearance saved."))
    return redirect(url_for(".page"))


@bp.post("/appearance/theme")
def choose_theme():
    if not EmptyForm().validate_on_submit():
        abort(400)
    shop = _shop()
    before = shop.theme
    with committing() as attempt:
        appearance.choose_theme(shop, request.form.get("theme", ""))
        record(staff_actor(), "appearance.theme_changed", tenant_id=shop.id, before=before,
               after=shop.theme)
    if attempt.failed:
        return redirect(url_for(".page"))
    flash(_("Theme changed. Its settings are below."))
    return redirect(url_for(".page"))


@bp.route("/appearance/preview", methods=["GET", "POST"])
def preview():
    """The shop's home page as a visitor would see it: GET with the saved look (of ?theme=, to
    try another theme), POST with the Appearance form's unsaved values."""
    shop = current_tenant()
    name = shop.name
    if request.method == "GET":
        draft = Draft(theme=effective_theme(request.args.get("theme") or shop.theme))
    else:
        draft, name = _draft(shop)
    look = appearance.look_for(shop, draft)
    body = home_page(shop=ShopPreview(shop, name), look=look, buyer=AnonymousUserMixin())
    return body, 200, {"Cache-Control": "no-store"}


def _draft(shop: Tenant) -> tuple[Draft, str]:
    """The posted values that are valid (an invalid one shows as saved) and the posted name."""
    form = appearance_form(theme_schema(shop.theme))
    form.validate_on_submit()  # field errors are simply not previewed
    changes = form.changes()
    settings = dict(appearance.theme_settings(shop))
    for setting in form.schema:
        if setting.type == "image" or setting.key not in changes.settings:
            continue
        with suppress(DomainError):
            settings[setting.key] = appearance.check_setting(setting, changes.settings[setting.key])
    draft = Draft(theme=effective_theme(shop.theme), settings=settings)
    for attr, check, raw in (
        ("notice", appearance.check_notice, changes.notice),
        ("footer_links", appearance.check_footer_links, changes.footer_links),
        ("contacts", appearance.check_contacts, changes.contacts),
    ):
        with suppress(DomainError):
            setattr(draft, attr, check(raw))
    for kind, data in form.uploads().items():
        if data is None:
            draft.images[kind] = None
            continue
        try:
            appearance.checked_image(data)
        except DomainError:
            continue
        draft.images[kind] = data
    try:
        name = appearance.check_shop_name(changes.name)
    except DomainError:
        name = shop.name
    return draft, name
