"""Checking uploaded images: size and type by their first bytes, never by the file name."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from ..errors import DomainError

MAX_IMAGE_BYTES = 2 * 1024 * 1024
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def checked_image(data: bytes) -> tuple[bytes, str]:
    """(data, content type) of a PNG, JPEG, GIF or WebP image up to 2 MB, else a DomainError."""
    if not data:
        raise DomainError(_l("The image file is empty."), field="image")
    if len(data) > MAX_IMAGE_BYTES:
        raise DomainError(_l("The image must be at most 2 MB."), field="image")
    for signature, content_type in SIGNATURES:
        if data.startswith(signature):
            return data, content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return data, "image/webp"
    raise DomainError(_l("The image must be a PNG, JPEG, GIF or WebP file."), field="image")
