"""A shop's look: its theme, the theme's settings, logo and banner, notice, footer links and
contacts — read for every shop page, changed from the shop console's Appearance page.

Where things live:
- the theme's name in `tenant.theme`;
- a theme's settings schema in `themes/<name>/theme.json` ("settings": key -> {type, label,
  default, …}); the values a shop gave in `tenant.settings["theme_settings"][<theme>]`, per
  theme, so switching themes and back keeps each theme's colours;
- the notice (announcement, sanitised HTML), footer links and contacts in `tenant.settings`,
  shared by every theme;
- the logo and banner images in `shop_assets` (one row per kind; a removed image keeps its
  row, emptied, so the next upload gets a new version and a new URL). Their current versions
  are mirrored in `tenant.settings["assets"]` in the same transaction, so a shop page links
  them without reading the table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import undefer

from ..errors import DomainError
from ..extensions import db
from ..security.images import checked_image
from ..security.sanitize import clean_html
from ..tenants.models import Tenant
from ..themes import DEFAULT_THEME, THEME_NAME, available_themes, themes_dir
from .models import ASSET_KINDS, ShopAsset

SETTING_TYPES = ("color", "text", "boolean", "choice", "image")
COLOR = re.compile(r"#[0-9a-fA-F]{6}")
CSS_VAR = re.compile(r"--[a-z][a-z0-9-]{0,30}")
SETTING_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
# Names the Appearance form uses for its own fields: a theme cannot declare settings with them.
RESERVED_KEYS = frozenset({"name", "notice", "links", "theme", "csrf_token", "submit"})
TEXT_CAP = 200
NAME_MAX = 120
NOTICE_MAX = 5000
MAX_FOOTER_LINKS = 6
LINK_LABEL_MAX = 40
LINK_URL_MAX = 300
CONTACT_KEYS = ("email", "qq", "telegram", "wechat")
QQ = re.compile(r"[1-9][0-9]{4,11}")
TELEGRAM = re.compile(r"[A-Za-z][A-Za-z0-9_]{4,31}")
WECHAT = re.compile(r"[A-Za-z][A-Za-z0-9_-]{5,19}")


# -- theme schemas ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting a theme offers (from its theme.json)."""

    key: str
    type: str  # one of SETTING_TYPES
    label: str
    default: Any = None
    help: str = ""
    css: str | None = None  # color: the CSS custom property it sets
    contrast_css: str | None = None  # color: a property set to black or white text on it
    max_length: int = TEXT_CAP  # text
    choices: tuple[tuple[str, str], ...] = ()  # choice: (value, label)


def _setting(key: str, spec: Any) -> Setting | None:
    """A checked Setting, or None for an entry this version cannot use (it is skipped)."""
    if not (isinstance(spec, dict) and SETTING_KEY.fullmatch(key) and key not in RESERVED_KEYS
            and not key.startswith(("remove_", "contact_"))):
        return None
    kind = spec.get("type")
    # Lazy: the labels are cached with the theme and shown in each visitor's language (the
    # catalog has them through kameng/i18n_extract.py).
    label = _l(str(spec.get("label") or key.replace("_", " ").capitalize())[:80])
    help_text = str(spec.get("help") or "")[:300]
    help_text = _l(help_text) if help_text else ""
    if kind == "color":
        default = str(spec.get("default") or "")
        css = spec.get("css")
        contrast = spec.get("contrast_css")
        if not COLOR.fullmatch(default):
            return None
        return Setting(key, kind, label, default.lower(), help_text,
                       css=css if isinstance(css, str) and CSS_VAR.fullmatch(css) else None,
                       contrast_css=(contrast if isinstance(contrast, str)
                                     and CSS_VAR.fullmatch(contrast) else None))
    if kind == "text":
        cap = spec.get("max_length")
        cap = min(cap, TEXT_CAP) if isinstance(cap, int) and cap > 0 else TEXT_CAP
        return Setting(key, kind, label, str(spec.get("default") or "")[:cap], help_text,
                       max_length=cap)
    if kind == "boolean":
        return Setting(key, kind, label, bool(spec.get("default")), help_text)
    if kind == "choice":
        raw = spec.get("choices")
        pairs = raw.items() if isinstance(raw, dict) else (raw or [])
        choices = tuple((str(v), _l(str(lbl))) for v, lbl in
                        ((p[0], p[1]) if isinstance(p, list | tuple) and len(p) == 2 else (p, p)
                         for p in pairs))
        values = [v for v, _ in choices]
        if not choices:
            return None
        default = spec.get("default")
        return Setting(key, kind, label, default if default in values else values[0], help_text,
                       choices=choices)
    if kind == "image":
        return Setting(key, kind, label, None, help_text) if key in ASSET_KINDS else None
    return None


_SCHEMAS: dict[str, tuple[dict, list[Setting]]] = {}


def effective_theme(name: str | None) -> str:
    """`name` when that theme is installed, else the default theme."""
    return name if name in available_themes() else DEFAULT_THEME


def theme_schema(theme: str | None) -> list[Setting]:
    """The settings a theme declares, in its theme.json order (malformed entries skipped)."""
    found = available_themes().get(effective_theme(theme))
    if found is None:
        return []
    cached = _SCHEMAS.get(found.name)
    if cached is not None and cached[0] is found.settings:
        return cached[1]
    raw = found.settings if isinstance(found.settings, dict) else {}
    schema = [s for s in (_setting(k, v) for k, v in raw.items()) if s is not None]
    _SCHEMAS[found.name] = (found.settings, schema)
    return schema


@lru_cache(maxsize=32)
def _manifest(path: str, mtime: float) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class ThemeCard:
    """A theme as the Appearance page offers it."""

    name: str
    title: str
    description: str
    preview: str | None  # a file under the theme's static/ folder


def theme_cards() -> list[ThemeCard]:
    """Every installed theme, the default one first."""
    cards = []
    for name, theme in available_themes().items():
        manifest = themes_dir() / name / "theme.json"
        data = _manifest(str(manifest), manifest.stat().st_mtime) if manifest.is_file() else {}
        preview = data.get("preview")
        if not (isinstance(preview, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", preview)):
            preview = None
        cards.append(ThemeCard(name, _(theme.title), _(theme.description) if theme.description
                               else "", preview))
    return sorted(cards, key=lambda c: (c.name != DEFAULT_THEME, c.title.lower()))


# -- checking values ---------------------------------------------------------------------------


def check_setting(setting: Setting, value: Any) -> Any:
    """The value a shop may store for `setting`, or a DomainError naming the setting."""
    if setting.type == "color":
        text = str(value or "").strip()
        if not COLOR.fullmatch(text):
            raise DomainError(_l("%(label)s: enter a colour as #rrggbb.",
                                 label=setting.label), field=setting.key)
        return text.lower()
    if setting.type == "text":
        text = " ".join(str(value or "").split())
        if len(text) > setting.max_length:
            raise DomainError(_l("%(label)s: at most %(max_length)s characters.",
                                 label=setting.label, max_length=setting.max_length),
                              field=setting.key)
        return text
    if setting.type == "boolean":
        return bool(value)
    if setting.type == "choice":
        if value not in [v for v, _ in setting.choices]:
            raise DomainError(_l("%(label)s: choose one of the options.",
                                 label=setting.label), field=setting.key)
        return value
    raise DomainError(_l("%(label)s cannot be set here.", label=setting.label), field=setting.key)


def check_settings(theme: str, values: dict) -> dict:
    """Every non-image setting of `theme` from `values` (a missing one keeps its default)."""
    checked = {}
    for setting in theme_schema(theme):
        if setting.type == "image":
            continue
        value = values.get(setting.key, setting.default)
        checked[setting.key] = check_setting(setting, value)
    return checked


def check_shop_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name or len(name) > NAME_MAX:
        raise DomainError(_l("The shop needs a name of at most %(name_max)s characters.",
                             name_max=NAME_MAX),
                          field="name")
    return name


def check_notice(html: str) -> str:
    """The announcement as safe HTML (nh3: no scripts, styles or event handlers)."""
    if len(html or "") > NOTICE_MAX:
        raise DomainError(_l("The announcement may be at most %(notice_max)s characters.",
                             notice_max=NOTICE_MAX),
                          field="notice")
    return clean_html(html)


def check_footer_links(pairs: list[tuple[str, str]]) -> list[dict]:
    """Up to six links (label, http(s) address); empty rows are dropped."""
    links = []
    for label, url in pairs:
        label, url = " ".join((label or "").split()), (url or "").strip()
        if not label and not url:
            continue
        if not label or len(label) > LINK_LABEL_MAX:
            raise DomainError(_l("Each footer link needs a label of at most %(link_label_max)s "
                                 "characters.", link_label_max=LINK_LABEL_MAX), field="links")
        if (len(url) > LINK_URL_MAX or not re.fullmatch(r"https?://[^\s<>\"'\\]+", url, re.I)
                or url.lower().split("://", 1)[1].startswith(("/", "@"))):
            raise DomainError(_l("Footer link addresses must start with http:// or https://."),
                              field="links")
        links.append({"label": label, "url": url})
    if len(links) > MAX_FOOTER_LINKS:
        raise DomainError(_l("At most %(max_footer_links)s footer links.",
                             max_footer_links=MAX_FOOTER_LINKS), field="links")
    return links


def check_contacts(values: dict) -> dict:
    """E-mail, QQ number, Telegram user name and WeChat id; empty ones are left out."""
    contacts = {}
    email = (values.get("email") or "").strip()
    if email:
        try:
            email = validate_email(email, check_deliverability=False,
                                   test_environment=True).normalized
        except EmailNotValidError:
            raise DomainError(_l("Enter a valid contact e-mail address."),
                              field="contact_email") from None
        contacts["email"] = email
    qq = (values.get("qq") or "").strip()
    if qq:
        if not QQ.fullmatch(qq):
            raise DomainError(_l("A QQ number has 5 to 12 digits."), field="contact_qq")
        contacts["qq"] = qq
    telegram = (values.get("telegram") or "").strip().removeprefix("@")
    if telegram:
        if not TELEGRAM.fullmatch(telegram):
            raise DomainError(_l("A Telegram user name has 5 to 32 letters, digits or _."),
                              field="contact_telegram")
        contacts["telegram"] = telegram
    wechat = (values.get("wechat") or "").strip()
    if wechat:
        if not WECHAT.fullmatch(wechat):
            raise DomainError(_l("A WeChat id has 6 to 20 letters, digits, _ or -, starting with "
                                 "a letter."), field="contact_wechat")
        contacts["wechat"] = wechat
    return contacts


# -- what a shop page shows ---------------------------------------------------------------------


def _luminance(color: str) -> float:
    def channel(hex_pair: str) -> float:
        c = int(hex_pair, 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(color[i:i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_text(color: str) -> str:
    """Black or white, whichever reads better on `color`."""
    return "#000000" if _luminance(color) > 0.179 else "#ffffff"


@dataclass(frozen=True)
class Look:
    """Everything a shop page needs to look like the shop."""

    theme: str
    settings: dict  # the theme's settings: theme.json defaults, then the shop's values
    css_vars: list[tuple[str, str]]  # (custom property, #rrggbb) from the colour settings
    assets: dict[str, int]  # kind -> version of each image the theme shows and the shop has
    notice: Markup
    footer_links: list[dict]
    contacts: dict
    images: dict[str, str] = field(default_factory=dict)  # kind -> data: URL (previews only)


@dataclass
class Draft:
    """Unsaved changes to show in the Appearance page's preview (None: as saved)."""

    theme: str | None = None
    settings: dict | None = None
    name: str | None = None
    notice: str | None = None
    footer_links: list[dict] | None = None
    contacts: dict | None = None
    images: dict[str, bytes | None] = field(default_factory=dict)  # kind -> data (None: removed)


def saved_settings(tenant: Tenant, theme: str) -> dict:
    """The values the shop stored for `theme` (unchecked: read through theme_settings)."""
    stored = ((tenant.settings or {}).get("theme_settings") or {}).get(theme)
    return stored if isinstance(stored, dict) else {}


def theme_settings(tenant: Tenant, theme: str | None = None, values: dict | None = None) -> dict:
    """The settings of `theme` (default: the shop's) for this shop: the theme's defaults, then
    the shop's stored values (or `values`); a value that no longer fits keeps the default."""
    theme = effective_theme(theme or tenant.theme)
    settings = tenant.settings or {}
    given = saved_settings(tenant, theme) if values is None else values
    merged: dict[str, Any] = {}
    for setting in theme_schema(theme):
        if setting.type == "image":
            continue
        value = given.get(setting.key, setting.default)
        if setting.key == "show_stock_numbers" and setting.key not in given:
            value = settings.get("show_stock_numbers", setting.default)  # set before themes
        try:
            merged[setting.key] = check_setting(setting, value)
        except DomainError:
            merged[setting.key] = setting.default
    merged.setdefault("show_stock_numbers", bool(settings.get("show_stock_numbers", True)))
    return merged


def notice_html(tenant: Tenant) -> Markup:
    """The announcement, sanitised when saved and again here (it is rendered as HTML)."""
    return Markup(clean_html((tenant.settings or {}).get("notice") or ""))  # noqa: S704


def footer_links(tenant: Tenant) -> list[dict]:
    links = (tenant.settings or {}).get("footer_links") or []
    return [link for link in links if isinstance(link, dict)][:MAX_FOOTER_LINKS]


def contacts(tenant: Tenant) -> dict:
    stored = (tenant.settings or {}).get("contacts") or {}
    return {k: stored[k] for k in CONTACT_KEYS if isinstance(stored, dict) and stored.get(k)}


def asset_versions(tenant: Tenant) -> dict[str, int]:
    """kind -> version of the images the shop has now (mirrored from shop_assets)."""
    stored = (tenant.settings or {}).get("assets") or {}
    return {k: int(v) for k, v in stored.items() if k in ASSET_KINDS and isinstance(v, int)}


def look_for(tenant: Tenant, draft: Draft | None = None) -> Look:
    """The shop's look as saved, or with a draft's unsaved changes on top (for the preview)."""
    draft = draft or Draft()
    theme = effective_theme(draft.theme or tenant.theme)
    settings = theme_settings(tenant, theme, draft.settings)
    schema = theme_schema(theme)
    css_vars = []
    for setting in schema:
        if setting.type == "color" and setting.css:
            color = settings[setting.key]
            css_vars.append((setting.css, color))
            if setting.contrast_css:
                css_vars.append((setting.contrast_css, contrast_text(color)))
    shown = {s.key for s in schema if s.type == "image"}
    assets = {k: v for k, v in asset_versions(tenant).items() if k in shown}
    images = {}
    for kind, data in draft.images.items():
        assets.pop(kind, None)
        if data is not None and kind in shown:
            images[kind] = _data_url(data)
    notice = (Markup(clean_html(draft.notice)) if draft.notice is not None  # noqa: S704
              else notice_html(tenant))
    return Look(
        theme=theme, settings=settings, css_vars=css_vars, assets=assets, notice=notice,
        footer_links=draft.footer_links if draft.footer_links is not None else footer_links(tenant),
        contacts=draft.contacts if draft.contacts is not None else contacts(tenant),
        images=images,
    )


def _data_url(data: bytes) -> str:
    import base64

    data, content_type = checked_image(data)
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


# -- changing the look ----------------------------------------------------------------------


@dataclass
class AppearanceChanges:
    """What the Appearance form sends (unchecked)."""

    name: str
    settings: dict
    notice: str = ""
    locale: str = ""  # the shop's default language ("": unchanged)
    footer_links: list[tuple[str, str]] = field(default_factory=list)
    contacts: dict = field(default_factory=dict)


def check_locale(locale: str) -> str:
    from ..i18n import LANGUAGES

    if locale and locale not in LANGUAGES:
        raise DomainError(_l("Choose one of the languages offered."), field="locale")
    return locale


def check_changes(theme: str, changes: AppearanceChanges) -> dict:
    """Every value of the form, checked: the first problem raises a DomainError."""
    return {
        "name": check_shop_name(changes.name),
        "locale": check_locale(changes.locale),
        "settings": check_settings(theme, changes.settings),
        "notice": check_notice(changes.notice),
        "footer_links": check_footer_links(changes.footer_links),
        "contacts": check_contacts(changes.contacts),
    }


def save_appearance(tenant: Tenant, changes: AppearanceChanges) -> list[str]:
    """Store the shop's name and look for its current theme; returns what changed."""
    theme = effective_theme(tenant.theme)
    checked = check_changes(theme, changes)
    changed = []
    if checked["name"] != tenant.name:
        tenant.name = checked["name"]
        changed.append("name")
    if changes.locale and changes.locale != tenant.locale:
        tenant.locale = changes.locale
        changed.append("locale")
    old = dict(tenant.settings or {})
    new = dict(old)
    all_themes = dict(old.get("theme_settings") or {})
    if all_themes.get(theme) != checked["settings"]:
        changed.append("theme_settings")
    all_themes[theme] = checked["settings"]
    new["theme_settings"] = all_themes
    for key in ("notice", "footer_links", "contacts"):
        if old.get(key, "" if key == "notice" else None) != checked[key]:
            changed.append(key)
        new[key] = checked[key]
    # A new dict: SQLAlchemy notices a change of a JSON column only when it is assigned.
    tenant.settings = new
    db.session.flush()
    return changed


def choose_theme(tenant: Tenant, theme: str) -> None:
    if not (THEME_NAME.fullmatch(theme or "") and theme in available_themes()):
        raise DomainError(_l("No such theme."), field="theme")
    tenant.theme = theme
    db.session.flush()


def get_asset(kind: str) -> ShopAsset | None:
    """The bound shop's image of this kind with its bytes (None: none, or removed)."""
    if kind not in ASSET_KINDS:
        return None
    asset = db.session.scalar(select(ShopAsset).options(undefer(ShopAsset.data))
                              .where(ShopAsset.kind == kind))
    if asset is None or not asset.data:
        return None
    return asset


def _asset_row(kind: str) -> ShopAsset | None:
    return db.session.scalar(select(ShopAsset).where(ShopAsset.kind == kind))


def _mirror_assets(tenant: Tenant, kind: str, version: int | None) -> None:
    settings = dict(tenant.settings or {})
    assets = dict(settings.get("assets") or {})
    if version is None:
        assets.pop(kind, None)
    else:
        assets[kind] = version
    settings["assets"] = assets
    tenant.settings = settings


def store_asset(tenant: Tenant, kind: str, data: bytes) -> ShopAsset:
    """Keep an uploaded logo or banner (PNG, JPEG, GIF or WebP, at most 2 MB)."""
    if kind not in ASSET_KINDS:
        raise DomainError(_l("No such image."), field=kind)
    try:
        data, content_type = checked_image(data)
    except DomainError as error:
        raise DomainError(error.message, field=kind) from None
    asset = _asset_row(kind)
    if asset is None:
        asset = ShopAsset(tenant_id=tenant.id, kind=kind, content_type=content_type, data=data,
                          version=1)
        db.session.add(asset)
    else:
        asset.content_type = content_type
        asset.data = data
        asset.version = (asset.version or 0) + 1  # a new URL: the old one may be cached forever
    db.session.flush()
    _mirror_assets(tenant, kind, asset.version)
    db.session.flush()
    return asset


def remove_asset(tenant: Tenant, kind: str) -> bool:
    """Stop showing the logo or banner; False when there was none. The row stays, emptied,
    so a later upload gets a version (and URL) that was never used."""
    asset = _asset_row(kind)
    had = kind in asset_versions(tenant)
    if asset is not None:
        asset.data = b""
        asset.content_type = ""
    _mirror_assets(tenant, kind, None)
    db.session.flush()
    return had
