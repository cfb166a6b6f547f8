"""The shop console's domains page (/admin/domains): add the shop's own domain, see how to
point it here and prove it with a TXT record, verify, remove."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from ..extensions import db
from ..forms import EmptyForm, Form, committing
from ..merchant.console import console_blueprint, guard_blueprint, staff_actor
from . import domains as service
from .hosts import current_tenant

bp = console_blueprint("shop_domains", __name__)
guard_blueprint(bp, read="domains.manage", write="domains.manage")


class DomainForm(Form):
    host = StringField(_l("Domain"), validators=[DataRequired(), Length(max=253)])


def _page(form: DomainForm | None = None, status: int = 200):
    shop = current_tenant()
    return render_template(
        "domains/list.html",
        domains=service.custom_domains(shop),
        subdomains=[d for d in shop.domains if d.kind == "subdomain"],
        allowed=service.custom_domain_allowed(shop),
        form=form or DomainForm(formdata=None),
        action=EmptyForm(formdata=None),
        target=service.target_host(shop),
        platform_ip=current_app.config.get("PLATFORM_IP") or "",
        challenge_name=service.challenge_name,
        challenge_value=service.challenge_value,
    ), status


def _confirm_button() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)


@bp.get("/domains")
def domain_list():
    return _page()


@bp.post("/domains")
def domain_add():
    form = DomainForm()
    if not form.validate_on_submit():
        return _page(form, 422)
    with committing(form) as attempt:
        domain = service.add_domain(current_tenant(), form.host.data, actor=staff_actor())
    if attempt.failed:
        return _page(form, 422)
    flash(_("%(host)s added. Create the DNS records below, then press Verify.",
            host=domain.host))
    return redirect(url_for(".domain_list") + f"#domain-{domain.id}")


@bp.post("/domains/<int:domain_id>/verify")
def domain_verify(domain_id: int):
    domain = service.get_custom_domain(current_tenant(), domain_id)
    _confirm_button()
    with committing() as attempt:
        service.verify_domain(domain, actor=staff_actor())
    if not attempt.failed:
        flash(_("%(host)s is verified: your shop now answers on it.", host=domain.host))
    return redirect(url_for(".domain_list") + f"#domain-{domain.id}")


@bp.post("/domains/<int:domain_id>/remove")
def domain_remove(domain_id: int):
    domain = service.get_custom_domain(current_tenant(), domain_id)
    _confirm_button()
    host = domain.host
    service.remove_domain(domain, actor=staff_actor())
    db.session.commit()
    flash(_("%(host)s removed; your shop no longer answers on it.", host=host))
    return redirect(url_for(".domain_list"))
