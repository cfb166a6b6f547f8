"""Error pages and flash helpers shared by every site: themed on shops, plain on consoles."""

from __future__ import annotations

import logging

from flask import Flask, current_app, g, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .errors import DomainError
from .forms import EmptyForm
from .themes import render_themed

log = logging.getLogger(__name__)

TITLES = {
    400: _l("Bad request"),
    403: _l("Not allowed"),
    404: _l("Page not found"),
    405: _l("Method not allowed"),
    409: _l("Conflict"),
    413: _l("Too large"),
    429: _l("Too many attempts"),
    500: _l("Something went wrong"),
    503: _l("Temporarily closed"),
}

MESSAGES = {
    400: _l("The request could not be understood."),
    403: _l("You are not allowed to do this."),
    404: _l("There is nothing at this address."),
    405: _l("This page does not accept that kind of request."),
    413: _l("What you sent is too large."),
    429: _l("Too many attempts. Wait a minute and try again."),
    500: _l("An unexpected error happened on our side. Please try again in a moment."),
    503: _l("This shop is temporarily closed. Please come back later."),
}


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(DomainError, _domain_error)
    app.register_error_handler(Exception, _unexpected_error)
    # Log-out buttons are small forms, so they carry a CSRF token like any other form.
    app.add_template_global(EmptyForm, "logout_form")


def render_error(code: int, message: str | None = None, title: str | None = None):
    title = title or TITLES.get(code) or _("Error")
    message = message or MESSAGES.get(code, "")
    site = g.get("_kameng_site")
    shop = g.get("_kameng_tenant")
    try:
        if shop is None and g.get("_kameng_front") is not None:
            from .tenants.hosts import current_tenant

            shop = current_tenant()  # a buyer page that had not needed the shop's row yet
        if shop is not None and site.area == "storefront":
            from .storefront.views import shop_page_context

            page = shop_page_context(shop, buyer=current_user)
            body = render_themed(
                page["theme_name"], "errors/error.html", **page, code=code, title=title,
                message=message,
            )
        else:
            unknown_host = site is not None and site.kind == "shop" and shop is None
            body = render_template(
                "console/error.html", code=code, title=title, message=message,
                unknown_host=unknown_host, site=site,
            )
    except Exception:  # the error page itself failed: answer in plain text, never a traceback
        log.exception("error page %s failed to render", code)
        return f"{code} {title}\n", code, {"Content-Type": "text/plain; charset=utf-8"}
    return body, code


def _http_error(error: HTTPException):
    if error.code is None or error.code < 400:
        return error
    if _api_request():  # the REST API answers in its own JSON shape, never a page
        from .api.errors import http_error

        return http_error(error)
    message = None
    if isinstance(error, CSRFError):
        message = _(
            "This form has expired or did not come from this site. "
            "Go back, reload the page and try again."
        )
    elif error.code == 404 and error.description == "unknown-host":
        message = _("No shop lives at this address.")
    response = render_error(error.code, message)
    if error.code == 429:
        body, code = response[0], response[1]
        headers = {}
        retry = getattr(error, "retry_after", None)
        if retry:
            headers["Retry-After"] = str(retry)
        return body, code, headers
    if error.code == 405 and getattr(error, "valid_methods", None):
        return response[0], response[1], {"Allow": ", ".join(error.valid_methods)}
    return response


def _api_request() -> bool:
    from .api.errors import is_api_request

    return is_api_request()


def _domain_error(error: DomainError):
    if _api_request():
        from .api.errors import domain_error

        return domain_error(error)
    return render_error(error.status_code, error.message)


def _unexpected_error(error: Exception):
    if current_app.testing and not current_app.config.get("RENDER_500_IN_TESTS"):
        raise error  # let the failing test show the real traceback
    if _api_request():
        from .api.errors import unexpected_error

        return unexpected_error(error)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return render_error(500)
