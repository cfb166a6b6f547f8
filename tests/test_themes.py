"""Themes: per-shop templates with fallback to the default theme, never mixed up by the cache."""

import shutil
from pathlib import Path

import pytest
from sqlalchemy import update

from kameng import create_app
from kameng.extensions import db
from kameng.tenants.models import Tenant

REPO_THEMES = Path(__file__).resolve().parent.parent / "themes"


@pytest.fixture
def themed_app(app, tmp_path):
    """A second app on the same database whose themes folder also has a 'dark' theme."""
    themes = tmp_path / "themes"
    shutil.copytree(REPO_THEMES, themes)
    dark = themes / "dark"
    (dark / "templates").mkdir(parents=True)
    (dark / "static").mkdir()
    (dark / "theme.json").write_text('{"name": "Dark", "description": "test theme"}')
    (dark / "templates" / "home.html").write_text(
        '{% extends "base.html" %}{% block content %}'
        '<h1 class="dark-home">DARK {{ shop.name }}</h1>{% endblock %}'
    )
    (dark / "static" / "style.css").write_text("body { background: #000; }")
    config = {
        key: app.config[key]
        for key in (
            "TESTING",
            "SQLALCHEMY_DATABASE_URI",
            "SECRET_KEY",
            "ENCRYPTION_KEYS",
            "ARGON2_TIME_COST",
            "ARGON2_MEMORY_KIB",
            "RATELIMIT_STORAGE_URI",
        )
    }
    config["THEMES_DIR"] = str(themes)
    other = create_app(config)
    yield other
    with other.app_context():
        db.engine.dispose()


def _set_theme(app, tenant, theme):
    with app.app_context():
        db.session.execute(update(Tenant).where(Tenant.id == tenant.id).values(theme=theme))
        db.session.commit()


def test_theme_overrides_only_what_it_changes(themed_app, create_tenant):
    dark, _light = create_tenant(slug="darkshop"), create_tenant(slug="lightshop")
    _set_theme(themed_app, dark, "dark")
    client = themed_app.test_client()
    # Render the dark shop first, then the light one: the cache must not hand out the dark page.
    dark_page = client.get("/", base_url="http://darkshop.localhost").get_data(as_text=True)
    light_page = client.get("/", base_url="http://lightshop.localhost").get_data(as_text=True)
    assert "DARK Shop darkshop" in dark_page
    assert "dark-home" not in light_page and "Shop lightshop" in light_page
    # The dark theme has no login page: it falls back to the default theme's, inside dark's base.
    login = client.get("/login", base_url="http://darkshop.localhost")
    assert login.status_code == 200 and "Log in" in login.get_data(as_text=True)
    assert "/theme/dark/style.css" in login.get_data(as_text=True)
    with client.get("/theme/dark/style.css", base_url="http://darkshop.localhost") as css:
        assert css.status_code == 200 and b"#000" in css.data


def test_theme_static_falls_back_and_refuses_traversal(create_tenant, client_for):
    shop = client_for(create_tenant(slug="shop1"))

    def status(path):
        with shop.get(path) as response:
            return response.status_code

    assert status("/theme/default/style.css") == 200
    assert status("/theme/nosuch/style.css") == 200  # the default theme's file
    assert status("/theme/default/../../setup.cfg") == 404
    assert status("/theme/default/%2e%2e/theme.json") == 404
    assert status("/theme/..%2f..%2fkameng/style.css") == 404


def test_unknown_theme_name_renders_default(app, create_tenant, client_for):
    shop = create_tenant(slug="shop2", name="Fallback Shop")
    _set_theme(app, shop, "gone")
    page = client_for(shop).get("/")
    assert page.status_code == 200 and "Fallback Shop" in page.get_data(as_text=True)


# -- the shipped themes ---------------------------------------------------------------------

SHIPPED = ("default", "neon", "minimal")


@pytest.mark.parametrize("theme", SHIPPED)
def test_each_shipped_theme_has_a_manifest_preview_and_stylesheet(theme):
    import json

    folder = REPO_THEMES / theme
    manifest = json.loads((folder / "theme.json").read_text(encoding="utf-8"))
    assert manifest["name"] and manifest["description"]
    preview = folder / "static" / manifest["preview"]
    assert preview.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert preview.stat().st_size < 100_000  # small enough to list three on one page
    assert (folder / "static" / "style.css").is_file()
    for key, spec in manifest["settings"].items():
        assert spec["type"] in ("color", "text", "boolean", "choice", "image"), key
        assert spec.get("label"), key


@pytest.mark.parametrize("theme", ("neon", "minimal"))
def test_a_theme_overrides_only_templates_the_default_theme_has(theme):
    default = REPO_THEMES / "default" / "templates"
    own = REPO_THEMES / theme / "templates"
    overrides = [p.relative_to(own) for p in own.rglob("*.html")]
    assert overrides, "a theme that changes no template"
    for path in overrides:
        assert (default / path).is_file(), f"{theme} has {path}, which the default lacks"
    # And much is left to the default theme.
    assert len(overrides) < len(list(default.rglob("*.html"))) / 2


def test_a_theme_without_settings_renders_with_defaults(themed_app, create_tenant):
    shop = create_tenant(slug="plainsettings")
    _set_theme(themed_app, shop, "dark")
    page = themed_app.test_client().get("/", base_url="http://plainsettings.localhost")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "DARK Shop plainsettings" in html
    assert "<style" not in html  # no colour settings, no inline style


def test_shipped_themes_render_their_own_stylesheet_over_the_default(app, create_tenant,
                                                                    client_for):
    shop = create_tenant(slug="layers")
    for theme in SHIPPED:
        _set_theme(app, shop, theme)
        html = client_for(shop).get("/").get_data(as_text=True)
        assert "/theme/default/style.css" in html
        assert ("/theme/neon/style.css" in html) == (theme == "neon")
        assert ("/theme/minimal/style.css" in html) == (theme == "minimal")
