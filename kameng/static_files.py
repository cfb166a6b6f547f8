"""Static files — the consoles' kameng/static and each theme's static/ — under versioned URLs.

`url_for()` adds `?v=<hash>` (the first 12 hex digits of the file's SHA-256) to every link to a
static file. A request carrying the file's current hash may be cached for good
(`public, max-age=31536000, immutable`): new content gets a new URL. Any other request — no
`v`, or the hash of an older content (a page cached before a deploy) — is still answered, with
a short cache and revalidation (ETag, Last-Modified), so hand-typed links keep working.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache

from flask import Flask, current_app, request, send_from_directory
from werkzeug.security import safe_join

from .themes import theme_static_path

IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=300"  # unversioned: browsers check again after five minutes
YEAR = 31536000
SHORT_SECONDS = 300
VERSION_LENGTH = 12


@lru_cache(maxsize=4096)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            sha.update(chunk)
    return sha.hexdigest()[:VERSION_LENGTH]


def file_version(path: str | None) -> str | None:
    """The content hash of a file (re-read only when its size or mtime changes); None when it
    does not exist."""
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _digest(path, stat.st_mtime_ns, stat.st_size)


def send_versioned(directory: str, filename: str):
    """Send a static file, cached for good when the request names its current version."""
    version = file_version(safe_join(directory, filename))
    current = version is not None and request.args.get("v") == version
    response = send_from_directory(directory, filename,
                                   max_age=YEAR if current else SHORT_SECONDS)
    response.headers["Cache-Control"] = IMMUTABLE if current else SHORT
    return response


def app_static(filename: str):
    """The consoles' own files (kameng/static), on every kind of site."""
    return send_versioned(current_app.static_folder, filename)


def _static_path(endpoint: str, values: dict) -> str | None:
    filename = values.get("filename")
    if not filename:
        return None
    if endpoint == "static":
        return safe_join(current_app.static_folder, filename)
    found = theme_static_path(values.get("theme") or "", filename)
    return safe_join(*found) if found else None


def init_app(app: Flask) -> None:
    @app.url_defaults
    def _version_static_links(endpoint: str, values: dict) -> None:
        if endpoint not in ("static", "storefront.theme_static") or "v" in values:
            return
        version = file_version(_static_path(endpoint, values))
        if version is not None:
            values["v"] = version
