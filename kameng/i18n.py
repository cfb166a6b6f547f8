"""Languages: Simplified Chinese and English through Flask-Babel.

The language of a page is the visitor's own choice (a link in every footer, remembered in
their session), else — on a shop — the shop's default language, else the browser's preference
between the two. Message catalogs live in kameng/translations (.po in git; the .mo files are
compiled by `make install`, or at start-up when missing). The Chinese catalog's folder is
`zh_Hans_CN`: Babel reads the language code zh_CN as zh_Hans_CN and looks for that folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from babel.dates import get_datetime_format
from flask import Flask, current_app, g, has_request_context, redirect, request, session
from flask_babel import format_date, format_time, get_locale

from .extensions import babel

log = logging.getLogger(__name__)

LANGUAGES = {"zh_CN": "简体中文", "en": "English"}
DEFAULT_LANGUAGE = "zh_CN"
LANGUAGE_COOKIE = "km_lang"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"

def select_locale() -> str:
    if not has_request_context():  # a job or a command: mails say it in the default language
        return current_app.config.get("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    chosen = request.cookies.get(LANGUAGE_COOKIE) or session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    shop = g.get("_kameng_tenant") or g.get("_kameng_front")  # the row, or its cached front
    if shop is not None and shop.locale in LANGUAGES:
        return shop.locale
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"]) if request else None
    if best is None:
        return current_app.config.get("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    return "en" if best == "en" else "zh_CN"


def html_lang() -> str:
    """The language of this page for <html lang>: "zh-CN" or "en" (the visitor's choice).

    Built from language and territory: Babel reads "zh_CN" as "zh_Hans_CN", and the page
    names its language as the language switch does ("zh-CN")."""
    locale = get_locale()
    if locale is None:
        return DEFAULT_LANGUAGE.replace("_", "-")
    return f"{locale.language}-{locale.territory}" if locale.territory else locale.language


def here() -> str:
    """This page's path and query, to come back to after switching language (the path alone
    when the query is unreasonably long, e.g. a pasted 5,000-character search)."""
    full = request.full_path.rstrip("?")
    return full if len(full) <= 300 else request.path


def date_text(value) -> str:
    """A day for people, in the page's language: "2026年11月26日" or "Nov 26, 2026"."""
    return format_date(value, "medium") if value is not None else ""


def time_text(value) -> str:
    """A time of day for people, in the page's language: "15:30" or "3:30 PM"."""
    return format_time(value, "short") if value is not None else ""


def datetime_text(value) -> str:
    """A moment for people, to the minute, in the page's language (times in UTC, the
    platform's clock): "2026年11月26日 15:30" or "Nov 26, 2026, 3:30 PM"."""
    if value is None:
        return ""
    pattern = get_datetime_format("medium", locale=get_locale() or DEFAULT_LANGUAGE)
    return (str(pattern).replace("{1}", format_date(value, "medium"))
            .replace("{0}", format_time(value, "short")))


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    _compile_if_missing()
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["LANGUAGES"] = LANGUAGES
    app.add_template_global(html_lang)
    app.add_template_global(here)
    app.add_template_filter(date_text, "date")
    app.add_template_filter(datetime_text, "datetime")
    app.add_template_filter(time_text, "time")
    from .orders.labels import movement_label, order_status_label

    app.add_template_global(order_status_label)
    app.add_template_global(movement_label)
    from .billing.service import billing_status_label

    app.add_template_global(billing_status_label)


def _compile_if_missing() -> None:
    """Compile the .po catalogs whose .mo is missing or older (a checkout without
    `make install`); silently skipped when the package folder is read-only."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in TRANSLATIONS.glob("*/LC_MESSAGES/*.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        try:
            with po.open("rb") as source:
                catalog = read_po(source)
            with mo.open("wb") as target:
                write_mo(target, catalog)
        except OSError as error:
            log.warning("cannot compile %s: %s", po, error)


def choose_language(code: str):
    """Remember the visitor's language and go back to where they were."""
    target = request.args.get("next", "/")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        target = "/"
    response = redirect(target)
    if code in LANGUAGES:
        # A cookie of its own, not the session: the shop, its console and the buyer's account
        # keep separate sessions on one host, and the choice holds for all of them.
        response.set_cookie(LANGUAGE_COOKIE, code, max_age=365 * 24 * 3600, httponly=True,
                            samesite="Lax",
                            secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")))
    return response
