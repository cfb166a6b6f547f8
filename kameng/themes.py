"""Shop themes: folders of templates and static files under themes/, chosen per shop.

A shop page is rendered as `@theme/<theme>/<template>`. The loader looks in that theme's
templates, then in the default theme's, so a theme overrides only what it changes. The theme
name is part of the template name, so Jinja's template cache (keyed by name) can never hand
one shop's page to another shop with another theme. `{% extends "base.html" %}` inside a theme
template resolves within the same theme (see `ThemedEnvironment.join_path`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from flask import current_app, render_template
from flask.templating import Environment
from jinja2 import BaseLoader, TemplateNotFound
from werkzeug.security import safe_join

PREFIX = "@theme/"
DEFAULT_THEME = "default"
THEME_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


@dataclass(frozen=True)
class Theme:
    name: str
    title: str
    description: str = ""
    settings: dict = field(default_factory=dict)


def themes_dir() -> Path:
    return Path(current_app.config["THEMES_DIR"])


@lru_cache(maxsize=8)
def _read_themes(directory: str, mtime: float) -> dict[str, Theme]:
    themes: dict[str, Theme] = {}
    for child in sorted(Path(directory).iterdir()):
        manifest = child / "theme.json"
        if not (THEME_NAME.fullmatch(child.name) and manifest.is_file()):
            continue
        data = json.loads(manifest.read_text(encoding="utf-8"))
        themes[child.name] = Theme(
            name=child.name,
            title=data.get("name", child.name),
            description=data.get("description", ""),
            settings=data.get("settings", {}),
        )
    return themes


def available_themes() -> dict[str, Theme]:
    """The installed themes by folder name (re-read when the themes folder changes)."""
    directory = themes_dir()
    return _read_themes(str(directory), directory.stat().st_mtime)


class ThemeLoader(BaseLoader):
    """Loads `@theme/<name>/<path>` from themes/<name>/templates, else themes/default/templates."""

    def __init__(self, directory: str):
        self.directory = directory

    def get_source(self, environment, template):
        if not template.startswith(PREFIX):
            raise TemplateNotFound(template)
        theme, _, name = template[len(PREFIX):].partition("/")
        if not THEME_NAME.fullmatch(theme) or not name:
            raise TemplateNotFound(template)
        for candidate in dict.fromkeys((theme, DEFAULT_THEME)):
            path = safe_join(self.directory, candidate, "templates", name)
            if path and os.path.isfile(path):
                mtime = os.path.getmtime(path)
                with open(path, encoding="utf-8") as handle:
                    source = handle.read()
                return source, path, lambda p=path, m=mtime: os.path.getmtime(p) == m
        raise TemplateNotFound(template)


class ThemedEnvironment(Environment):
    """Resolves `extends`/`include` inside a theme template against the same theme."""

    def join_path(self, template: str, parent: str) -> str:
        if parent.startswith(PREFIX) and not template.startswith(PREFIX):
            theme = parent[len(PREFIX):].split("/", 1)[0]
            return f"{PREFIX}{theme}/{template}"
        return template


def theme_template(theme: str, template: str) -> str:
    if theme not in available_themes():
        theme = DEFAULT_THEME
    return f"{PREFIX}{theme}/{template}"


def render_themed(theme: str, template: str, **context) -> str:
    """Render a shop page with the given theme (falling back to the default theme)."""
    return render_template(theme_template(theme, template), **context)


def theme_static_path(theme: str, filename: str) -> tuple[str, str] | None:
    """(directory, filename) of a theme's static file, falling back to the default theme."""
    if not THEME_NAME.fullmatch(theme):
        return None
    root = themes_dir()
    for candidate in dict.fromkeys((theme, DEFAULT_THEME)):
        directory = root / candidate / "static"
        path = safe_join(str(directory), filename)
        if path and os.path.isfile(path):
            return str(directory), filename
    return None
